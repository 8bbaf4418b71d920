"""The config file: every class of mistake an officer can make is reported
with the file, the line and what is expected, all at once; what is valid
loads into the settings the commands use."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from helpers import run_cli

from mailbackup.config import DEFAULT_MAX_CONNECTIONS_PER_SERVER, load_account, load_sweep, read_config
from mailbackup.config.keys import ACCOUNT_KEYS, ENTRY_KEYS, SWEEP_KEYS
from mailbackup.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yaml"


def write(tmp_path: Path, text: str, name: str = "unit.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    return caught.value.message


# One case per class of mistake: (file text, line, what the message must say).
MISTAKES = {
    "yaml syntax": ("defaults:\n  server: [imap.mail.go.th\naccounts:\n", 3, "not valid YAML"),
    "tab indentation": ("defaults:\n\tserver: x\n", 2, "indent with spaces, not tabs"),
    "top level not a mapping": ("- a@coj.go.th\n", 1, "expected a mapping with `defaults:` and `accounts:`"),
    "unknown top-level key": ("defaults: {}\nacounts:\n  - a@coj.go.th\n", 2,
                              "unknown key 'acounts' at the top; did you mean accounts?"),
    "defaults not a mapping": ("defaults: imap.mail.go.th\n", 1, "defaults must be a mapping"),
    "accounts not a list": ("accounts:\n  account: a@coj.go.th\n", 2, "accounts must be a list"),
    "entry neither mapping nor name": ("accounts:\n  - [a, b]\n", 2, "an account entry must be a mapping"),
    "unknown key in defaults": ("defaults:\n  exlude: [Trash]\n", 2,
                                "unknown key 'exlude' in defaults; did you mean exclude? (expected one of"),
    "unknown key in an entry": ("accounts:\n  - account: a@coj.go.th\n    colour: blue\n", 3,
                                "unknown key 'colour' in an account entry"),
    "password": ("accounts:\n  - account: a@coj.go.th\n    password: hunter2\n", 3,
                 "passwords do not belong in the config"),
    "sweep key in an entry": ("accounts:\n  - account: a@coj.go.th\n    jobs: 8\n", 3,
                              "jobs applies to the whole sweep: put it under `defaults:`"),
    "entry key in defaults": ("defaults:\n  surname: ใจดี\n", 2, "surname belongs to one account"),
    "wrong type": ("defaults:\n  starttls: sometimes\n", 2, "starttls must be true or false, not 'sometimes'"),
    "no value": ("defaults:\n  server:\n", 2, "server has no value (expected HOST or HOST:PORT"),
    "bad server": ("defaults:\n  server: imap.mail.go.th:99999\n", 2, "server must be HOST or HOST:PORT"),
    "bad format": ("defaults:\n  format: maildri\n", 2, "format must be maildir or mbox, not 'maildri'"),
    "bad timeout": ("defaults:\n  timeout: -5\n", 2, "timeout must be a number of seconds above 0, not -5"),
    "bad jobs": ("defaults:\n  jobs: 0\n", 2, "jobs must be a whole number of accounts at once, 1 or more, not 0"),
    "bad connections": ("defaults:\n  max_connections_per_server: 2.5\n", 2,
                        "max_connections_per_server must be a whole number, 1 or more, not 2.5"),
    "bad bandwidth": ("defaults:\n  max_bytes_per_second: fast\n", 2,
                      "max_bytes_per_second must be a whole number of bytes per second"),
    "bad deadline": ("defaults:\n  deadline: 25/06/2569\n", 2, "deadline must be a date YYYY-MM-DD"),
    "bad globs": ("defaults:\n  exclude: [Trash, 7]\n", 2, "exclude must be a folder glob or a list of them"),
    "empty glob list": ("defaults:\n  include: []\n", 2, "include must be a folder glob or a list of them"),
    "account with a space": ("accounts:\n  - account: somchai j@coj.go.th\n", 2,
                             "account must be the IMAP login"),
    "number as staff text": ("accounts:\n  - account: a@coj.go.th\n    position: 7\n", 3,
                             "position must be text (quote numbers), not 7"),
    "missing cafile": ("defaults:\n  cafile: no-such-ca.pem\n", 2, "no-such-ca.pem does not exist"),
    "key twice": ("defaults:\n  dest: /a\n  format: mbox\n  dest: /b\n", 4, "dest given twice in one mapping "
                                                                            "(first on line 2)"),
    "account twice": ("accounts:\n  - account: a@coj.go.th\n  - A@COJ.go.th\n", 3,
                      "account A@COJ.go.th listed twice (first on line 2)"),
    "entry without account": ("accounts:\n  - name: สมชาย\n", 2, "account entry without `account:`"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_each_mistake_names_file_line_and_expectation(case: str, tmp_path: Path) -> None:
    text, line, expected = MISTAKES[case]
    path = write(tmp_path, text)
    message = problems(path)
    assert f"{path}:{line}: " in message, message
    assert expected in message, message


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "tis620.yaml"
    path.write_bytes(b"defaults:\n  dest: /srv\naccounts:\n  - account: a@coj.go.th\n    name: "
                     + "สมชาย\n".encode("tis-620"))
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert f"{path}:5: not UTF-8 text" in str(caught.value) and "save the file as UTF-8" in str(caught.value)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot read config" in problems(tmp_path)  # a directory


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  colour: blue\n  jobs: many\naccounts:\n  - account: a@coj.go.th\n"
                           "    password: x\n  - account: a@coj.go.th\n")
    message = problems(path)
    lines = message.splitlines()
    assert lines[0] == "4 problems in the config:"
    assert [int(re.match(rf"{re.escape(str(path))}:(\d+):", line).group(1)) for line in lines[1:]] == [2, 3, 6, 7]


def test_no_accounts_is_an_error_for_a_sweep(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  dest: /srv/mail-backup\n")
    with pytest.raises(ConfigError, match="no accounts to work on"):
        load_sweep(path)


def test_the_cli_exits_2_and_prints_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  format: maildri\naccounts:\n  - account: a@coj.go.th\n    exlcude: x\n")
    done = run_cli(["sweep", str(path)])
    assert done.returncode == ExitCode.USAGE
    assert f"{path}:2: format must be maildir or mbox" in done.stderr
    assert f"{path}:5: unknown key 'exlcude' in an account entry; did you mean exclude?" in done.stderr


def test_a_sweep_config_loads_with_inheritance_and_staff_details(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("x")
    path = write(tmp_path, """\
defaults:
  server: imap.example.go.th
  cafile: certs/ca.pem
  dest: backups
  exclude: Junk
  deadline: 2026-06-25
  unit: ศาลแพ่ง
  jobs: 6
  max_bytes_per_second: 500000
  password_command: cat /secrets/{account}
accounts:
  - account: somchai.j@coj.go.th
    title: นาย
    name: สมชาย
    surname: ใจดี
    position: นิติกร
    starttls: true
    exclude: [Trash, Junk]
  - malee.s@coj.go.th
""")
    settings = load_sweep(path)
    assert (settings.jobs, settings.max_bytes_per_second) == (6, 500000)
    assert settings.max_connections_per_server == DEFAULT_MAX_CONNECTIONS_PER_SERVER
    assert settings.dest == tmp_path.resolve() / "backups"  # relative to the file, not the working directory
    first, second = settings.accounts
    assert str(first.connection.server) == "imap.example.go.th:143" and first.connection.tls_mode.value == "starttls"
    assert str(second.connection.server) == "imap.example.go.th:993"
    assert first.connection.cafile == str(tmp_path.resolve() / "certs" / "ca.pem")
    assert first.exclude == ("Trash", "Junk") and second.exclude == ("Junk",)
    assert first.deadline == dt.date(2026, 6, 25)
    assert first.metadata == {"unit": "ศาลแพ่ง", "title": "นาย", "name": "สมชาย", "surname": "ใจดี",
                              "position": "นิติกร"}
    assert second.metadata == {"unit": "ศาลแพ่ง"}
    assert second.password_command == "cat /secrets/malee.s@coj.go.th"


def test_load_account_finds_the_entry_whatever_the_case_and_the_command_line_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  format: mbox\naccounts:\n  - account: Somchai.J@coj.go.th\n"
                           "    dest: /srv/a\n    name: สมชาย\n  - malee.s@coj.go.th\n")
    # Every entry is a mapping for the callers, the shorthand too (cli/report.py relies on it).
    assert read_config(path)["accounts"][1] == {"account": "malee.s@coj.go.th"}
    settings = load_account(path, "somchai.j@coj.go.th", {"format": "maildir", "include": ()})
    assert settings.dest == Path("/srv/a") and settings.format == "maildir"
    assert settings.metadata == {"name": "สมชาย"}
    assert load_account(path, "other@coj.go.th", {}).dest == Path("mail-backup")  # the defaults only


def test_the_example_config_loads_and_documents_every_key() -> None:
    settings = load_sweep(EXAMPLE)
    assert len(settings.accounts) == 5 and settings.accounts[0].metadata["name"] == "สมชาย"
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in [*ACCOUNT_KEYS, *SWEEP_KEYS, *ENTRY_KEYS]:
        assert re.search(rf"^\s*(?:#\s*|-\s*)?{key}:", text, re.M), f"{key} is not documented in example.yaml"
