"""What `schedule` prints is run by someone else's machinery: no path may
change its meaning there.

Windows: no Windows machine runs here, so the printed `schtasks` line goes
through a model of the two parsers that read it, written from their
documentation: cmd.exe's (percent expansion, then `"` toggles quoting and,
outside quotes, `^` escapes and `& | < >` split or redirect; a backslash is
nothing special) and CommandLineToArgvW's (the C runtime's: 2n backslashes
before `"` are n and the quote toggles, 2n+1 are n and a literal quote; the
program name ends at the next quote when quoted).  schtasks reads its /TR
value with the second; the task's program reads /TR with it again.  The
round trip must give back the sweep's argv exactly; a path cmd.exe would
split or expand is refused.

Everywhere: a control character in a path would end a cron entry or a
systemd directive and start the attacker's own; it is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_cli
from hypothesis import given
from hypothesis import strategies as st

from mailbackup.errors import ExitCode, UsageError
from mailbackup.sweep.schedule import WINDOWS_SPECIAL, ScheduleSpec, crontab_line, schtasks_command, systemd_units

CMD_OPERATORS = "&|<>"


def cmd_exe(line: str) -> tuple[str, list[str]]:
    """The command line cmd.exe hands to the program, and what in the typed
    line it would act on (an operator outside quotes, a %VAR% expansion)."""
    acted_on = [f"expansion {match}" for match in re.findall(r"%[^%]*%", line)]
    out, quoted, index = [], False, 0
    while index < len(line):
        char = line[index]
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "^":
            index += 1  # the escaped character is taken literally; the caret goes
            char = line[index] if index < len(line) else ""
            acted_on.append("caret")
        elif not quoted and char in CMD_OPERATORS:
            acted_on.append(f"operator {char}")
        out.append(char)
        index += 1
    return "".join(out), acted_on


def command_line_to_argv(line: str) -> list[str]:
    """CommandLineToArgvW, as documented (the program name first, then the C runtime's rules)."""
    argv: list[str] = []
    index = 0
    if line.startswith('"'):  # the program name: up to the next quote, backslashes literal
        end = line.index('"', 1)
        argv.append(line[1:end])
        index = end + 1
    else:
        end = len(line) if re.search(r"[ \t]", line) is None else re.search(r"[ \t]", line).start()  # type: ignore[union-attr]
        argv.append(line[:end])
        index = end
    word: list[str] | None = None
    quoted = False
    while index < len(line):
        char = line[index]
        if char in " \t" and not quoted:
            if word is not None:
                argv.append("".join(word))
                word = None
            index += 1
            continue
        word = word if word is not None else []
        if char == "\\":
            run = len(line[index:]) - len(line[index:].lstrip("\\"))
            index += run
            if index < len(line) and line[index] == '"':
                word.append("\\" * (run // 2))
                if run % 2:
                    word.append('"')
                    index += 1
            else:
                word.append("\\" * run)
            continue
        if char == '"':
            if quoted and line[index + 1:index + 2] == '"':  # "" inside quotes: a literal quote
                word.append('"')
                index += 2
                continue
            quoted = not quoted
        else:
            word.append(char)
        index += 1
    if word is not None:
        argv.append("".join(word))
    return argv


def spec_with(python: str, config: str, log_file: str) -> ScheduleSpec:
    return ScheduleSpec(python=python, config=Path(config), hour=1, minute=30,
                        sweep_args=("--log-file", log_file, "--quiet"))


def run_on_windows(spec: ScheduleSpec) -> list[str]:
    """What the scheduled program receives as its argv, after cmd.exe, schtasks and the task start."""
    typed = schtasks_command(spec)
    passed, acted_on = cmd_exe(typed)
    assert not acted_on and passed == typed, acted_on
    schtasks_argv = command_line_to_argv(passed)
    task_run = schtasks_argv[schtasks_argv.index("/TR") + 1]
    return command_line_to_argv(task_run)


def test_the_models_read_the_documented_examples() -> None:
    # Microsoft's table for the C runtime / CommandLineToArgvW.
    assert command_line_to_argv('p "abc" d e') == ["p", "abc", "d", "e"]
    assert command_line_to_argv(r'p a\\\b d"e f"g h') == ["p", r"a\\\b", "de fg", "h"]
    assert command_line_to_argv(r'p a\\\"b c d') == ["p", r'a\"b', "c", "d"]
    assert command_line_to_argv(r'p a\\\\"b c" d e') == ["p", r"a\\b c", "d", "e"]
    assert command_line_to_argv(r'"C:\Program Files\x.exe" a') == [r"C:\Program Files\x.exe", "a"]
    # cmd.exe: \" is no escape, so what follows it is outside quotes and the & splits.
    assert cmd_exe(r'x /TR "\"C:\a&b\" c"')[1] == ["operator &"]
    assert cmd_exe('x "a&b" ^&')[1] == ["caret"]
    assert cmd_exe('x "%PATH%"')[1] == ["expansion %PATH%"]


WINDOWS_PATHS = [
    (r"C:\Program Files\Python311\python.exe", r"C:\Users\Somchai Jaidee\mail\unit.yaml", r"D:\logs\sweep.log"),
    (r"C:\Python\python.exe", r"\\fileserver\share\ศาล (ภาค 7)\unit config.yaml", "D:\\logs with space\\"),
    (r"C:\py\python.exe", r"C:\it's; a=b,c!\unit.yaml", "D:\\trailing\\\\"),
]


@pytest.mark.parametrize(("python", "config", "log_file"), WINDOWS_PATHS)
def test_windows_paths_reach_the_program_unchanged(python: str, config: str, log_file: str) -> None:
    spec = spec_with(python, config, log_file)
    assert run_on_windows(spec) == [python, "-m", "mailbackup", "sweep", str(Path(config)), "--log-file", log_file,
                                    "--quiet"]


windows_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                                     blacklist_characters=WINDOWS_SPECIAL), min_size=1, max_size=30)


@given(folder=windows_text, log_file=windows_text)
def test_any_allowed_path_round_trips_through_cmd_and_schtasks(folder: str, log_file: str) -> None:
    config = "C:\\" + folder + "\\unit.yaml"
    spec = spec_with(r"C:\Program Files\Python\python.exe", config, log_file)
    assert run_on_windows(spec)[4:7] == [str(Path(config)), "--log-file", log_file]


@pytest.mark.parametrize("char", list(WINDOWS_SPECIAL))
def test_a_path_cmd_exe_would_split_or_expand_is_refused(char: str) -> None:
    spec = spec_with(r"C:\py\python.exe", rf"C:\mail{char}x calc.exe\unit.yaml", r"D:\sweep.log")
    with pytest.raises(UsageError, match="Windows"):
        schtasks_command(spec)


def test_a_hostile_config_directory_is_refused_by_the_command(tmp_path: Path) -> None:
    directory = tmp_path / "mail & calc"
    directory.mkdir()
    (directory / "unit.yaml").write_text("accounts:\n  - a@coj.go.th\n", encoding="utf-8")
    done = run_cli(["schedule", str(directory / "unit.yaml"), "--windows"])
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stdout == ""
    assert "mail & calc" in done.stderr and "Command Prompt" in done.stderr


@pytest.mark.parametrize("kind", ["--cron", "--systemd", "--windows"])
def test_a_newline_in_the_config_path_cannot_add_a_line(tmp_path: Path, kind: str) -> None:
    directory = tmp_path / "mail\n* * * * * touch pwned"
    directory.mkdir()
    path = directory / "unit.yaml"
    path.write_text("accounts:\n  - a@coj.go.th\n", encoding="utf-8")
    done = run_cli(["schedule", str(path), kind])
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert done.stdout == ""
    assert "control character" in done.stderr and "mail\\n* * * * * touch pwned" in done.stderr


@pytest.mark.parametrize("kind", ["--cron", "--systemd"])
def test_a_newline_in_the_dest_cannot_add_a_directive(tmp_path: Path, kind: str) -> None:
    dest = '"/srv/mail\\nExecStartPre=/bin/sh -c evil\\n30 1 * * * evil"'  # YAML: the \n are real newlines
    path = tmp_path / "unit.yaml"
    path.write_text(f"defaults:\n  dest: {dest}\naccounts:\n  - a@coj.go.th\n", encoding="utf-8")
    done = run_cli(["schedule", str(path), kind])
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "evil" not in done.stdout
    assert "mail\\nExecStartPre" in done.stderr


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1b", "\x85", "\u2028"])
def test_every_control_character_is_refused_by_every_scheduler(char: str) -> None:
    spec = spec_with("/usr/bin/python3", f"/srv/a{char}b/unit.yaml", "/srv/sweep.log")
    for render in (crontab_line, systemd_units, schtasks_command):
        with pytest.raises(UsageError, match="control character"):
            render(spec)
