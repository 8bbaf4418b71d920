"""The main flows and errors of the command line, in Thai and in English,
chosen with --lang and with the locale (LANG=th_TH.UTF-8), against a real
Dovecot.  English stays the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sample_mail  # scripts/ is put on sys.path by conftest
from click.testing import CliRunner
from conftest import ImapUser, new_filled_user
from dovecot_server import DovecotServer
from helpers import backup, run_cli, server_args, subcommands

from mailbackup.archive import account_dir
from mailbackup.cli import cli
from mailbackup.errors import ExitCode

THAI_LOCALE = {"LANG": "th_TH.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "MAILBACKUP_LANG": ""}
ENGLISH_LOCALE = {"LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "MAILBACKUP_LANG": ""}


@pytest.fixture(scope="module")
def staff(dovecot_server: DovecotServer) -> ImapUser:
    """A mailbox with the sample mail (ten messages, Thai folder names)."""
    return new_filled_user(dovecot_server, sample_mail.sample_mailbox())


def messages_in(box: dict[str, list[sample_mail.SampleMessage]]) -> int:
    return sum(len(messages) for messages in box.values())


def test_backup_and_verify_in_thai(staff: ImapUser, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    count = messages_in(sample_mail.sample_mailbox())
    done = backup(staff, dest, "--lang", "th", env=ENGLISH_LOCALE)
    assert done.returncode == 0, done.stderr
    assert f"กำลังสำรองข้อมูล {staff.name} จาก" in done.stderr
    assert f"บันทึกจดหมาย {count} ฉบับ" in done.stdout and "saved" not in done.stdout

    done = run_cli(["verify", staff.name, *server_args(staff), "--dest", str(dest), "--deadline", "2099-12-31"],
                   password=staff.password, env=THAI_LOCALE)
    assert done.returncode == 0, done.stderr
    assert f"ครบถ้วน: {staff.name} (เทียบกับเซิร์ฟเวอร์," in done.stdout
    assert "วันครบกำหนด 31 ธันวาคม 2642" in done.stdout and "รายงาน: " in done.stdout
    reports = account_dir(dest, staff.name) / "reports"
    page = (reports / "verify.html").read_text(encoding="utf-8")
    assert "รายงานผลการตรวจสอบการสำรองข้อมูลอีเมล" in page and "COMPLETE" not in page and "2642" in page
    data = json.loads((reports / "verify.json").read_text(encoding="utf-8"))
    assert data["status"] == "complete" and data["deadline"] == "2099-12-31"  # JSON: language-neutral
    assert (reports / "verify.csv").read_text(encoding="utf-8-sig").startswith("โฟลเดอร์,สถานะ,")


def test_the_locale_chooses_thai_and_lang_wins(staff: ImapUser, tmp_path: Path) -> None:
    thai = run_cli(["folders", staff.name, *server_args(staff)], password=staff.password, env=THAI_LOCALE)
    assert thai.returncode == 0, thai.stderr
    assert thai.stdout.startswith("โฟลเดอร์") and "\nรวม " in thai.stdout and "กล่องขาเข้า/สำคัญ" in thai.stdout
    english = run_cli(["folders", staff.name, *server_args(staff), "--lang", "en"], password=staff.password,
                      env=THAI_LOCALE)
    assert english.stdout.startswith("Folder") and "\nTotal " in english.stdout
    default = run_cli(["folders", staff.name, *server_args(staff)], password=staff.password, env=ENGLISH_LOCALE)
    assert default.stdout == english.stdout


def test_errors_in_both_languages(staff: ImapUser, tmp_path: Path) -> None:
    wrong = [*server_args(staff), "--dest", str(tmp_path / "dest")]
    thai = run_cli(["backup", staff.name, *wrong], password="not-the-password", env=THAI_LOCALE)
    english = run_cli(["backup", staff.name, *wrong], password="not-the-password", env=ENGLISH_LOCALE)
    for done in (thai, english):
        assert done.returncode == ExitCode.AUTH and done.stderr.count("\n") == 1, done.stderr
        assert "mailadmin@coj.go.th" in done.stderr and "not-the-password" not in done.stderr
    assert thai.stderr.startswith(f"mailbackup: ข้อผิดพลาด: เซิร์ฟเวอร์ {staff.server_arg} ปฏิเสธการเข้าสู่ระบบ")
    assert "หมายเลขบัตรประจำตัวประชาชน" in thai.stderr  # circular ศย ๐๑๓/ว ๓๓๙: what the officer needs
    assert english.stderr.startswith(f"mailbackup: error: login refused for {staff.name}")

    nothing = run_cli(["backup", staff.name, *wrong], env=THAI_LOCALE)  # no password anywhere, no terminal
    assert nothing.returncode == ExitCode.AUTH
    assert f"ไม่มีรหัสผ่านของ {staff.name}" in nothing.stderr and f"mailbackup auth set {staff.name}" in nothing.stderr

    usage = run_cli(["--lang", "th", "backup"])
    assert usage.returncode == ExitCode.USAGE and "ไม่ได้ระบุ 'ACCOUNT'" in usage.stderr and "วิธีใช้:" in usage.stderr
    missing = run_cli(["verify", "nobody@coj.go.th", "--offline", "--dest", str(tmp_path / "none"), "--lang", "th"])
    assert missing.returncode == ExitCode.USAGE and "ไม่พบข้อมูลสำรองของ nobody@coj.go.th" in missing.stderr

    config = tmp_path / "unit.yaml"
    config.write_text("defaults:\n  colour: blue\naccounts:\n  - account: a@coj.go.th\n", encoding="utf-8")
    bad = run_cli(["check", str(config)], env=THAI_LOCALE)
    assert bad.returncode == ExitCode.USAGE and f"{config}:2: ไม่รู้จักคีย์ 'colour' ใน defaults" in bad.stderr


def test_help_is_translated(tmp_path: Path) -> None:
    done = run_cli(["backup", "--help", "--lang", "th"])
    assert done.returncode == 0 and done.stdout.startswith("วิธีใช้: mailbackup backup")
    assert "--no-verify" in done.stdout and "ตัวเลือก:" in done.stdout and "Show this message" not in done.stdout


def command_paths(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in subcommands(group).items():
        paths += command_paths(command, (*prefix, name))
    return paths


@pytest.mark.parametrize("path", command_paths(cli), ids=lambda path: " ".join(path) or "mailbackup")
def test_every_command_takes_lang(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--lang", "en", "--help"])
    assert result.exit_code == 0, result.output
    assert "--lang [en|th]" in result.output


def test_readme_names_exactly_the_commands_that_take_server_options() -> None:
    """The README's sentence on server options agrees with the commands (issue: `export` was said to take them)."""
    import re

    from helpers import REPO, subcommands

    from mailbackup.cli import cli

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sentence = readme[readme.index("The commands that talk to the account's server"):].split(") take", 1)[0]
    said = set(re.findall(r"`(\w+)`", sentence))
    taking = set()
    for name, command in subcommands(cli).items():
        options = {opt for param in getattr(command, "params", []) for opt in getattr(param, "opts", [])}
        nested = getattr(command, "commands", None)
        if nested:
            options = {opt for sub in nested.values() for param in sub.params for opt in param.opts}
        if "--server" in options:
            taking.add(name)
    assert said == taking


def test_what_click_and_the_system_say_reaches_thai_users_in_thai(staff: ImapUser, tmp_path: Path) -> None:
    """click's own messages and the system's error texts (English on every Linux) in Thai: a Thai sentence,
    the system's words kept in brackets.  (run_cli checks every Thai output for English left untranslated.)"""
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    clicked = run_cli(["backup", staff.name, "--dest", str(afile)], env=THAI_LOCALE)
    assert clicked.returncode == ExitCode.USAGE and f"'{afile}' เป็นไฟล์ ไม่ใช่โฟลเดอร์" in clicked.stderr
    config = tmp_path / "unit.yaml"
    config.write_text(f"defaults:\n  server: {staff.server_arg}\n  cafile: {staff.cafile}\n  dest: {tmp_path}\n"
                      f"accounts:\n  - account: {staff.name}\n", encoding="utf-8")
    system = run_cli(["sweep", str(config), "--log-file", str(afile / "sweep.log")], env=THAI_LOCALE)
    assert system.returncode == ExitCode.STORAGE, system.stderr
    assert "มีอยู่แล้ว [File exists]" in system.stderr  # the log's directory is a file


def test_english_counts_say_one_thing_once(staff: ImapUser, tmp_path: Path) -> None:

    single = new_filled_user(staff.server, {"INBOX": [sample_mail.SampleMessage(sample_mail.thai_letter(
        1, sample_mail._DEFAULT_DATE))]})
    done = run_cli(["backup", single.name, *server_args(single), "--dest", str(tmp_path), "--no-verify"],
                   password=single.password, env=ENGLISH_LOCALE)
    assert done.returncode == 0, done.stderr
    assert "1 folder (1 changed), saved 1 message," in done.stdout
    exported = run_cli(["export", single.name, "--dest", str(tmp_path), "--mbox", str(tmp_path / "out")],
                       env=ENGLISH_LOCALE)
    assert "Exported 1 folder, 1 message," in exported.stdout, exported.stdout
