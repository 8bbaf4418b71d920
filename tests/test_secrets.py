"""Secrets: every command, run at -vv debug level with a known password, and
the password appears nowhere it could be read later: not in any output, log
file, report, state file, export or error message, in any spelling (as is,
in AUTHENTICATE PLAIN's base64, JSON-escaped, Python-escaped).  And what an
archive holds is for its owner only: directories 0700, files 0600."""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from pathlib import Path

import pytest
import sample_mail
from conftest import ImapUser, new_user
from dovecot_server import DovecotServer
from fakeserver import Certs, Conn, FakeImapServer, Run, Script, make_certs

from mailbackup.archive import account_dir
from mailbackup.errors import ExitCode

SOURCE_PASSWORD = "ลับมาก-Source-7f3a9c"
TARGET_PASSWORD = "ลับมาก-Target-51e0b2"


def spellings(user: str, password: str) -> dict[str, bytes]:
    plain = f"\0{user}\0{password}".encode()
    return {
        "as is": password.encode(),
        "AUTHENTICATE PLAIN": base64.b64encode(plain),
        "base64 of the password": base64.b64encode(password.encode()).rstrip(b"="),
        "JSON-escaped": json.dumps(password)[1:-1].encode(),
        "Python-escaped": ascii(password)[1:-1].encode(),
        "ASCII part": password.split("-", 1)[1].encode(),  # what survives a mangled decode
    }


def leaks(data: bytes, secrets: dict[str, bytes]) -> list[str]:
    return [name for name, secret in secrets.items() if secret in data]


def user_with(server: DovecotServer, password: str) -> ImapUser:
    name = f"secret-{uuid.uuid4().hex[:12]}@coj.go.th"
    server.add_user(name, password)
    return ImapUser(name, password, server.server_arg, server.cafile, server.maildir(name), server)


def test_no_command_leaks_the_password(dovecot_server, imap_client_factory, tmp_path):
    source = user_with(dovecot_server, SOURCE_PASSWORD)
    target, migrated = user_with(dovecot_server, TARGET_PASSWORD), user_with(dovecot_server, TARGET_PASSWORD)
    letters = [sample_mail.thai_letter(n, sample_mail._DEFAULT_DATE) for n in range(5)]
    sample_mail.fill_mailbox(imap_client_factory(source), {"INBOX": letters, "งานคดี": letters[:2]})
    dest, out, reports = tmp_path / "dest", tmp_path / "export", tmp_path / "reports"
    password_file = tmp_path / "secret" / "pw"
    password_file.parent.mkdir()
    password_file.write_text(SOURCE_PASSWORD + "\n", encoding="utf-8")
    config = tmp_path / "sweep.yaml"
    config.write_text(f"defaults:\n  server: {source.server_arg}\n  cafile: {source.cafile}\n  dest: {dest}\n"
                      f"  password_command: cat {password_file}\naccounts:\n  - {source.name}\n", encoding="utf-8")
    server = ["--server", source.server_arg, "--cafile", str(source.cafile)]
    target_env = {"MAILBACKUP_TARGET_PASSWORD": TARGET_PASSWORD}
    commands: list[tuple[list[str], str | None, dict[str, str] | None]] = [
        (["auth", "test", source.name, *server], SOURCE_PASSWORD, None),
        (["folders", source.name, *server], SOURCE_PASSWORD, None),
        (["backup", source.name, *server, "--dest", str(dest)], SOURCE_PASSWORD, None),
        (["verify", source.name, *server, "--dest", str(dest), "--report-dir", str(reports)], SOURCE_PASSWORD, None),
        (["verify", source.name, "--offline", "--dest", str(dest)], SOURCE_PASSWORD, None),
        (["report", "--dest", str(dest), "--report-dir", str(reports)], None, None),
        (["export", source.name, "--dest", str(dest), "--mbox", str(out)], None, None),
        (["restore", source.name, "--dest", str(dest), "--to", target.name, "--to-server", target.server_arg,
          "--to-cafile", str(target.cafile)], None, target_env),
        (["migrate", source.name, *server, "--dest", str(tmp_path / "migrate"), "--to", migrated.name,
          "--to-server", migrated.server_arg, "--to-cafile", str(migrated.cafile)], SOURCE_PASSWORD, target_env),
        (["check", str(config), "--csv", str(tmp_path / "check.csv")], None, None),
        (["sweep", str(config), "--log-file", str(tmp_path / "sweep.log")], None, None),
        (["auth", "test", source.name, *server], "wrong-" + SOURCE_PASSWORD, None),  # a refused login
    ]
    secrets = {f"{kind} ({who})": value for who, user, password in
               (("source", source.name, SOURCE_PASSWORD), ("target", target.name, TARGET_PASSWORD),
                ("migrated", migrated.name, TARGET_PASSWORD))
               for kind, value in spellings(user, password).items()}

    found = []
    for args, password, env in commands:
        run = Run([*args, "-vv"], password, env=env)
        expected = 0 if "wrong-" not in (password or "") else 3
        assert run.code == expected, (args, run.stdout, run.stderr)
        found += [f"{args[0]} output: {name}" for name in leaks((run.stdout + run.stderr).encode(), secrets)]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != password_file and path != config:
            found += [f"{path.relative_to(tmp_path)}: {name}" for name in leaks(path.read_bytes(), secrets)]
    assert not found, found

    if os.name == "posix":
        for path in [dest, *dest.rglob("*"), *(tmp_path / "migrate").rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


class Echoes(Script):
    """A server that repeats the credentials it was given in its refusal."""

    def authenticate(self, conn: Conn, tag: bytes, user: str, password: str) -> None:
        echoed = base64.b64encode(f"\0{user}\0{password}".encode())
        conn.send(tag + b" NO [AUTHENTICATIONFAILED] rejected " + echoed + b" for " + password.encode() + b"\r\n")


def test_a_server_that_echoes_the_credentials_does_not_get_them_printed(certs, tmp_path):
    with FakeImapServer(certs=certs, script=Echoes()) as server:
        run = Run(["auth", "test", server.user, "--server", server.address, "--cafile", str(certs.ca), "-vv"],
                  server.password)
        user, password = server.user, server.password

    assert run.code == 3, run.stderr
    line = run.error_line()  # the response code and our own words: none of the server's, which echo the password
    assert "[AUTHENTICATIONFAILED] the server did not accept the user name and password" in line
    assert "rejected" not in line
    assert not leaks((run.stdout + run.stderr).encode(), spellings(user, password))


def test_archive_directories_are_private_even_under_a_permissive_umask(dovecot_server, imap_client_factory,
                                                                      tmp_path):
    user = new_user(dovecot_server)
    sample_mail.fill_mailbox(imap_client_factory(user), {"INBOX": [b"Subject: a\r\n\r\nb\r\n"]})
    old = os.umask(0o000)
    try:
        run = Run(["backup", user.name, "--server", user.server_arg, "--cafile", str(user.cafile),
                   "--dest", str(tmp_path / "dest"), "--format", "mbox"], user.password)
    finally:
        os.umask(old)
    assert run.code == 0, run.stderr
    root = account_dir(tmp_path / "dest", user.name)
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert not (Path(root) / "state.sqlite3").stat().st_mode & 0o077


# -- a server that echoes the password after login, in the form it was sent (issue 14, item 5) --
class EchoesInList(Script):
    """Logs in, then refuses LIST repeating the password in one of its forms
    after `filler` characters: placed so that it straddles the 300-character
    cut of a server's reply."""

    def __init__(self, form: str, filler: int, logins: bool = False) -> None:
        self.form, self.filler = form, filler
        if logins:
            self.capabilities = b"IMAP4rev1"  # no AUTH=PLAIN: the password goes out in LOGIN, quoted

    def do_list(self, conn: Conn, tag: bytes, args: bytes) -> None:
        user, password = conn.server.user, conn.server.password
        forms = {"MARK": "MARK", "as is": password, "LOGIN-quoted": password.replace("\\", "\\\\").replace('"', '\\"'),
                 "AUTHENTICATE PLAIN": base64.b64encode(f"\0{user}\0{password}".encode()).decode()}
        echo = ("." * self.filler + forms[self.form] + " and more words after it" * 20).encode()
        conn.send(tag + b" NO [SERVERBUG] " + echo + b"\r\n")


def folders_run(server: FakeImapServer, certs: Certs) -> Run:
    return Run(["folders", server.user, "--server", server.address, "--cafile", str(certs.ca), "-vv"],
               server.password)


def fragments(secret: str) -> list[str]:
    """Every piece of `secret` of four characters or more that a cut could leave at either edge."""
    return [secret[:end] for end in range(4, len(secret) + 1)] + [secret[start:] for start in range(len(secret) - 3)]


@pytest.mark.parametrize("form,password,logins", [
    ("as is", "ลับ-Edge-of-300-ตัว", False),  # imapclient shows only "-Edge-of-300-" of it
    ("AUTHENTICATE PLAIN", "ลับ-Edge-of-300-ตัว", False),
    ("as is", 'Quote"and\\Back-2567', True),
    ("LOGIN-quoted", 'Quote"and\\Back-2567', True),
])
def test_an_echoed_password_cut_at_the_edge_leaves_no_fragment(certs, form, password, logins):
    with FakeImapServer(certs=certs, script=EchoesInList("MARK", 0, logins), password=password) as server:
        calibration = folders_run(server, certs)
    line = calibration.error_line()
    room = len(line) - line.index("MARK")  # what is left of the server's words after the cut
    assert room < 300, line
    sent = {"as is": password, "LOGIN-quoted": password.replace("\\", "\\\\").replace('"', '\\"'),
            "AUTHENTICATE PLAIN": base64.b64encode(f"\0clerk@coj.go.th\0{password}".encode()).decode()}[form]
    sent = sent.encode("ascii", "ignore").decode()  # what of it the server's words keep

    with FakeImapServer(certs=certs, script=EchoesInList(form, room - len(sent) // 2, logins),
                        password=password) as server:
        run = folders_run(server, certs)
        credentials = list(server.credentials)

    assert credentials == [(server.user, password, True)]
    assert run.code == ExitCode.PROTOCOL, run.stderr
    assert "[SERVERBUG] ....." in run.error_line()
    output = run.stdout + run.stderr
    assert not [piece for piece in fragments(sent) + fragments(password) if piece in output], output
    assert "***" in output  # masked, not withheld: the rest of the server's words are still there
    assert not leaks(output.encode(), spellings(server.user, password))


def test_a_one_character_password_is_never_pointed_at(certs):
    """Masking ``x`` inside the server's words turned ``t@x`` into ``t@***``."""
    user, password = "t@x", "x"
    with FakeImapServer(certs=certs, script=Echoes(), user=user, password=password) as server:
        refused = Run(["auth", "test", user, "--server", server.address, "--cafile", str(certs.ca)], "wrong")
    with FakeImapServer(certs=certs, script=EchoesInList("as is", 10), user=user, password=password) as server:
        echoed = folders_run(server, certs)

    assert refused.code == ExitCode.AUTH, refused.stderr
    assert f"login refused for {user} on " in refused.error_line()
    assert echoed.code == ExitCode.PROTOCOL, echoed.stderr
    line = echoed.error_line()
    assert "the server's words are not shown: they may hold the password" in line
    assert "..........x" not in line and "***" not in refused.stderr + echoed.stderr
