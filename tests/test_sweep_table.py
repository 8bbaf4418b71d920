"""The sweep's closing table on a terminal: a long problem is wrapped at
spaces under its column (or below the row on a narrow terminal), never cut."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ImapUser
from helpers import run_cli

from mailbackup.cli.format import display_width, wrap


def write_config(path: Path, user: ImapUser, dest: Path) -> Path:
    path.write_text(f"defaults:\n  server: {user.server_arg}\n  cafile: {user.cafile}\n  dest: {dest}\n"
                    f"accounts:\n  - account: {user.name}\n    password_command: echo wrong-password\n",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("columns", [80, 200, 40])
def test_problem_text_is_wrapped_whole(imap_user: ImapUser, tmp_path: Path, columns: int) -> None:
    config = write_config(tmp_path / "unit.yaml", imap_user, tmp_path / "backup")
    done = run_cli(["sweep", str(config), "--no-verify"], env={"COLUMNS": str(columns), "HOME": str(tmp_path)})
    assert done.returncode == 3, done.stderr
    table = done.stdout[done.stdout.index("Account"):].splitlines()
    row = next(index for index, line in enumerate(table) if line.startswith(imap_user.name))
    continued = [line for line in table[row + 1:] if line.startswith(" ")]
    assert all(display_width(line) < columns for line in continued)  # the fixed columns alone may be wider
    if columns >= 100:
        assert display_width(table[row]) < columns
    problem_lines = [table[row][table[0].index("Problem"):]] if columns >= 100 else []
    problem_lines += [line.strip() for line in table[row + 1:] if line.startswith(" ")]
    problem = " ".join(part.strip() for part in problem_lines if part.strip())
    assert "password" in problem and problem.endswith(problem.split()[-1])
    assert not any(len(line.strip()) and line.strip()[-1].isalpha() and line.strip().endswith("MAILBACKU")
                   for line in problem_lines)


def test_wrap_breaks_at_spaces_and_keeps_thai_marks_with_their_letter() -> None:
    text = "login refused: run mailbackup auth set, or set MAILBACKUP_PASSWORD"
    lines = wrap(text, 20)
    assert " ".join(lines) == text and all(display_width(line) <= 20 for line in lines)
    assert "MAILBACKUP_PASSWORD" in lines
    thai = wrap("ไม่สามารถเข้าสู่ระบบได้เนื่องจากรหัสผ่านไม่ถูกต้อง", 10)
    assert "".join(thai) == "ไม่สามารถเข้าสู่ระบบได้เนื่องจากรหัสผ่านไม่ถูกต้อง"
    assert all(display_width(line) <= 10 for line in thai)
    assert not any(line[0] in "\u0e31\u0e34\u0e35\u0e36\u0e37\u0e38\u0e39\u0e47\u0e48\u0e49\u0e4a\u0e4b\u0e4c"
                   for line in thai)
