"""Report writers (JSON against its schema, CSV for Excel, HTML rendered in
headless Chromium) and `mailbackup report` across accounts."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
import sample_mail  # scripts/ is put on sys.path by conftest
from cli_run import SCHEMAS, backup, mailbackup, server_args, validated
from conftest import ImapUser
from dovecot_server import DovecotServer
from imapclient import IMAPClient

from mailbackup.archive import account_dir
from mailbackup.verify.render import deadline_status
from mailbackup.verify.report import (
    verify_csv,
    verify_from_dict,
    verify_html,
    verify_to_dict,
    write_verify_reports,
)
from mailbackup.verify.results import FolderReport, MessageEntry, Mode, Staff, Status, VerifyResult
from mailbackup.verify.summary import AccountSummary, write_summary

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
BKK = timezone(timedelta(hours=7))
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script> & ข้อความ'


def incomplete_result() -> VerifyResult:
    missing = MessageEntry(uid=4, uidvalidity=77, size=2048, message_id="<m4@coj.go.th>", subject=HOSTILE,
                           date="2024-01-15T09:30:00+07:00", reason="not in the archive")
    corrupt = MessageEntry(uid=9, uidvalidity=77, size=512, message_id=None, subject="หนังสือเวียน ฉบับที่ 7",
                           date="2022-06-01T08:00:00+07:00", reason="content differs (SHA-256 mismatch)")
    folders = [
        FolderReport(name="INBOX", status=Status.INCOMPLETE, server_messages=3, local_messages=2, ok=2,
                     missing=[missing], bytes=4096, checked=2, bytes_checked=4096),
        FolderReport(name="งานคดี/2566/มกราคม", status=Status.CORRUPT, server_messages=1, local_messages=1,
                     corrupt=[corrupt], bytes=512, checked=1, bytes_checked=512),
        FolderReport(name="=HYPERLINK(\"http://evil\")", server_messages=0),
        FolderReport(name="กล่องขาเข้า/สำคัญ", server_messages=0, local_messages=1, bytes=100,
                     only_local=[MessageEntry(uid=1, uidvalidity=5, size=100, subject="เก่า")],
                     stray_files=["cur/notes.txt"], notes=["no longer on the server"]),
    ]
    return VerifyResult(account="somchai.j@coj.go.th", server="imap.mail.go.th:993", mode=Mode.ONLINE,
                        generated_at=datetime(2025, 11, 20, 14, 5, tzinfo=BKK), folders=folders,
                        deadline=date(2025, 12, 31), seconds=1.5)


# ------------------------------------------------------------------------ JSON
def test_json_matches_schema_and_round_trips() -> None:
    result = incomplete_result()
    data = verify_to_dict(result, as_of=date(2025, 11, 21))
    jsonschema.Draft202012Validator(SCHEMAS["verify"]).validate(data)
    assert data["status"] == "corrupt" and data["days_left"] == 40 and data["overdue"] is False
    assert data["totals"] == {
        "server_messages": 4, "local_messages": 4, "intact": 3, "ok": 2, "missing": 1, "corrupt": 1,
        "size_mismatch": 0, "only_local": 1, "bytes": 4708, "checked": 3, "bytes_checked": 4608, "skipped_recent": 0,
        "stray_files": 1, "checked_at_download": 0,
    }
    again = verify_from_dict(json.loads(json.dumps(data)))
    assert again == result
    offline = VerifyResult(account="a@coj.go.th", server="x:993", mode=Mode.OFFLINE,
                           generated_at=datetime(2025, 1, 1, tzinfo=BKK), folders=[FolderReport(name="INBOX")])
    jsonschema.Draft202012Validator(SCHEMAS["verify"]).validate(verify_to_dict(offline, date(2025, 1, 1)))


def test_schema_rejects_what_it_should() -> None:
    data = verify_to_dict(incomplete_result(), as_of=date(2025, 11, 21))
    validator = jsonschema.Draft202012Validator(SCHEMAS["verify"])
    for broken in ({**data, "status": "fine"}, {**data, "password": "x"},
                   {key: value for key, value in data.items() if key != "totals"}):
        assert not validator.is_valid(broken)


@pytest.mark.parametrize(("as_of", "status", "expected"), [
    (date(2025, 12, 30), "incomplete", (1, False)),
    (date(2025, 12, 31), "incomplete", (0, False)),  # the deadline day still counts
    (date(2026, 1, 2), "incomplete", (-2, True)),
    (date(2026, 1, 2), "complete", (-2, False)),
    (date(2026, 1, 2), "never_verified", (-2, True)),
])
def test_deadline_status(as_of: date, status: str, expected: tuple[int, bool]) -> None:
    assert deadline_status(date(2025, 12, 31), status, as_of) == expected


# ------------------------------------------------------------------------- CSV
def test_csv_has_bom_one_row_per_folder_and_defused_formulas() -> None:
    raw = verify_csv(incomplete_result())
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert [row["folder"] for row in rows] == ["INBOX", "งานคดี/2566/มกราคม", "'=HYPERLINK(\"http://evil\")",
                                               "กล่องขาเข้า/สำคัญ"]
    assert rows[1]["status"] == "corrupt" and rows[1]["corrupt"] == "1" and rows[0]["missing"] == "1"
    assert {row["account"] for row in rows} == {"somchai.j@coj.go.th"}
    assert rows[0]["generated_at"] == "2025-11-20T14:05:00+07:00" and rows[0]["tool_version"]


# ------------------------------------------------------------------------ HTML
def test_html_is_self_contained_and_escaped() -> None:
    page = verify_html(incomplete_result(), as_of=date(2026, 1, 5)).decode("utf-8")
    assert '<meta charset="utf-8">' in page and "Noto Sans Thai" in page and "Tahoma" in page
    for needle in ("<script", "<img", "<link", "url(", "@import", "https://"):  # nothing runs, nothing to fetch
        assert needle not in page
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt; &amp; ข้อความ" in page
    assert "OVERDUE" in page and "31 ธ.ค. 2568" in page


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/setup.sh installs it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def render(page: Path, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after headless Chromium loaded it (and a screenshot)."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--window-size=1200,1600"]
    if screenshot is not None:
        done = subprocess.run([*command, f"--screenshot={screenshot}", page.as_uri()], capture_output=True,
                              timeout=60, check=False)
        assert done.returncode == 0 and screenshot.stat().st_size > 10_000, done.stderr[-2000:]
    done = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.decode("utf-8")


def test_html_renders_in_chromium(tmp_path: Path) -> None:
    chromium()
    [_, _, html_path] = write_verify_reports(incomplete_result(), [tmp_path / "reports"], date(2026, 1, 5))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "verify-report.png"
    dom = render(html_path, tmp_path / "profile", shot)
    assert "<title>ข้อมูลเสียหาย / CORRUPT: somchai.j@coj.go.th</title>" in dom  # no script changed it
    assert 'id="status">ข้อมูลเสียหาย / CORRUPT' in dom and "OVERDUE" in dom
    for thai in ("งานคดี/2566/มกราคม", "กล่องขาเข้า/สำคัญ", "หนังสือเวียน ฉบับที่ 7"):
        assert thai in dom
    assert "&lt;script&gt;document.title" in dom and "<script" not in dom


# ------------------------------------------------------------------- printing
LONG_SUBJECT = "หนังสือขอความอนุเคราะห์ส่งสำเนาคำพิพากษาและเอกสารประกอบสำนวนคดีหมายเลขดำที่" * 3
STAFF = Staff(title="นาย", name="สมชาย", surname="ใจดี", position="นิติกรชำนาญการ", unit="ศาลแพ่ง")


def big_result(folders: int) -> VerifyResult:
    """Many folders with long Thai names, some with missing messages whose subjects and IDs are long."""
    reports = []
    for index in range(folders):
        missing = [MessageEntry(uid=1000 + item, uidvalidity=7, size=123_456, message_id=f"<{'x' * 80}@coj.go.th>",
                                subject=f"S{index:03d}-{item} {LONG_SUBJECT}", date="2024-01-15T09:30:00+07:00",
                                reason="not in the archive") for item in range(2 if index % 10 == 0 else 0)]
        reports.append(FolderReport(
            name=f"F{index:03d}/งานคดีแพ่งและคดีอาญาประจำปีงบประมาณ2566/คำร้องขอคัดถ่ายเอกสาร{'และสำเนา' * (index % 5)}",
            status=Status.INCOMPLETE if missing else Status.COMPLETE, server_messages=123_456,
            local_messages=123_456 - len(missing), ok=123_456 - len(missing), missing=missing, bytes=987_654_321))
    return VerifyResult(account="somchai.jaidee.with.a.long.address@coj.go.th", server="imap.mail.go.th:993",
                        mode=Mode.ONLINE, generated_at=datetime(2025, 11, 20, 14, 5, tzinfo=BKK), folders=reports,
                        deadline=date(2025, 12, 31), staff=STAFF)


def big_summary(directory: Path, accounts: int) -> Path:
    summaries = [AccountSummary(account=f"A{index:03d}.staff.member.with.a.long.address@coj.go.th", archive=None,
                                staff=STAFF, deadline=date(2025, 12, 31)) for index in range(accounts)]
    return write_summary(summaries, directory, date(2026, 1, 5), datetime(2026, 1, 5, 9, 0, tzinfo=BKK))[2]


def poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: scripts/setup.sh installs poppler-utils")
        pytest.skip(f"{tool} not installed (apt-get install poppler-utils)")
    return found


def print_to_pdf(page: Path, profile: Path) -> Path:
    """What an officer gets printing the page from Chromium (no browser header or footer)."""
    pdf = page.with_suffix(".pdf")
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--no-pdf-header-footer", "--print-to-pdf-no-header",
               f"--print-to-pdf={pdf}", page.as_uri()]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0 and pdf.is_file(), done.stderr[-2000:]
    return pdf


WORD = re.compile(r'<word xMin="([0-9.]+)" yMin="[0-9.]+" xMax="([0-9.]+)" yMax="[0-9.]+">([^<]*)</word>')
PAGE = re.compile(r'<page width="([0-9.]+)" height="([0-9.]+)">')


@pytest.mark.parametrize("which", ["verify", "summary"])
def test_a_big_report_prints_on_a4_with_its_signature_block(tmp_path: Path, which: str) -> None:
    chromium()
    if which == "verify":
        [_, _, page] = write_verify_reports(big_result(150), [tmp_path], date(2026, 1, 5))
        expected = [f"F{index:03d}/" for index in range(150)]
    else:
        page = big_summary(tmp_path, 90)
        expected = [f"A{index:03d}." for index in range(90)]
    pdf = print_to_pdf(page, tmp_path / "profile")
    info = subprocess.run([poppler("pdfinfo"), pdf], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Page size:\s+594\.\d+ x 841\.\d+ pts \(A4\)", info), info
    assert int(re.search(r"Pages:\s+(\d+)", info).group(1)) > 1  # type: ignore[union-attr]
    boxes = subprocess.run([poppler("pdftotext"), "-bbox", pdf, "-"], capture_output=True, text=True,
                           check=True).stdout
    pages = PAGE.findall(boxes)
    words = WORD.findall(boxes)
    width = float(pages[0][0])
    margin = 12 / 25.4 * 72 - 2  # @page's 12 mm, less a little for anti-aliasing
    outside = [text for left, right, text in words if float(left) < margin or float(right) > width - margin]
    assert not outside, f"text beyond the margins: {outside[:10]}"
    text = subprocess.run([poppler("pdftotext"), "-layout", pdf, "-"], capture_output=True, text=True,
                          check=True).stdout
    for needle in ("Checked by", "Checking officer's name", "Signature", "Date", "ลงชื่อ", "ผู้ตรวจสอบ", "ศาลแพ่ง"):
        assert needle in text, needle
    assert text.rindex("Checking officer's name") > text.rindex(expected[-1])  # the block ends the report
    absent = [name for name in expected if name not in text]
    assert not absent, f"rows missing from the printed report: {absent[:10]}"
    assert "นาย สมชาย ใจดี" in text and "นิติกรชำนาญการ" in text


# --------------------------------------------------------- `mailbackup report`
@pytest.fixture
def two_accounts(dovecot_server: DovecotServer, imap_user_factory: Callable[[DovecotServer], ImapUser],
                 imap_client_factory: Callable[..., IMAPClient], tmp_path: Path) -> tuple[Path, ImapUser, ImapUser]:
    """Two accounts backed up under one root: the first verified, the second not."""
    dest = tmp_path / "archive"
    users = [imap_user_factory(dovecot_server) for _ in range(2)]
    for user in users:
        sample_mail.fill_mailbox(imap_client_factory(user), {"INBOX": [sample_mail.thai_qp_message()],
                                                             "งานคดี": [sample_mail.tis620_message()]})
        backup(user, dest)
    done = mailbackup("verify", users[0].name, *server_args(users[0]), "--dest", dest, password=users[0].password)
    assert done.returncode == 0, done.stderr
    return dest, users[0], users[1]


def test_report_summarizes_all_accounts(two_accounts: tuple[Path, ImapUser, ImapUser], tmp_path: Path) -> None:
    dest, verified, unverified = two_accounts
    config = tmp_path / "mailbackup.yaml"
    config.write_text(f"defaults:\n  dest: {dest}\n  deadline: 2020-01-31\naccounts:\n"
                      f"  - account: {verified.name}\n  - account: newcomer@coj.go.th\n", encoding="utf-8")
    reports = account_dir(dest, verified.name) / "reports"
    (reports / "verify.html").unlink()
    done = mailbackup("report", "--config", config)
    assert done.returncode == 1, done.stderr  # two accounts never verified
    summary = validated(dest / "reports" / "summary.json", "summary")
    assert summary["totals"] == {"accounts": 3, "complete": 1, "incomplete": 0, "inconclusive": 0, "corrupt": 0,
                                 "failed": 0, "never_verified": 2, "overdue": 2, "messages": 4,
                                 "bytes": summary["totals"]["bytes"]}
    rows = {row["account"]: row for row in summary["accounts"]}
    assert rows[verified.name]["status"] == "complete" and rows[verified.name]["last_backup"]
    assert rows[verified.name]["deadline"] == "2020-01-31" and not rows[verified.name]["overdue"]
    assert rows[unverified.name]["status"] == "never_verified" and rows[unverified.name]["overdue"]
    assert rows[unverified.name]["messages"] == 2 and rows[unverified.name]["last_backup"]
    assert rows["newcomer@coj.go.th"]["archive"] is None and rows["newcomer@coj.go.th"]["messages"] == 0
    # The verified account's reports are regenerated from its verify.json, with the config's deadline.
    regenerated = validated(reports / "verify.json", "verify")
    assert regenerated["deadline"] == "2020-01-31" and regenerated["status"] == "complete"
    assert (reports / "verify.html").stat().st_mode & 0o777 == 0o600
    raw = (dest / "reports" / "summary.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert {row["account"]: row["status"] for row in table} == {
        verified.name: "complete", unverified.name: "never_verified", "newcomer@coj.go.th": "never_verified"}
    page = (dest / "reports" / "summary.html").read_text(encoding="utf-8")
    assert "1 of 3 accounts complete" in page and "ยังไม่เคยตรวจสอบ" in page

    out = tmp_path / "handed-in"
    done = mailbackup("report", "--dest", dest, "--report-dir", out)
    assert done.returncode == 1 and (out / "summary.html").is_file()
    assert (account_dir(out, verified.name) / "verify.html").is_file()
    assert validated(out / "summary.json", "summary")["totals"]["accounts"] == 2
    done = mailbackup("report", "--dest", tmp_path / "typo")
    assert done.returncode == 2 and not (tmp_path / "typo").exists()


def test_report_says_why_in_words_with_one_date_format(two_accounts: tuple[Path, ImapUser, ImapUser],
                                                       tmp_path: Path) -> None:
    dest, verified, unverified = two_accounts
    failed = mailbackup("verify", unverified.name, "--server", "127.0.0.1:1", "--dest", dest,
                        password=unverified.password)
    assert failed.returncode == 4, failed.stderr
    config = tmp_path / "mailbackup.yaml"
    config.write_text(f"defaults:\n  dest: {dest}\n  deadline: 2020-01-31\naccounts:\n"
                      f"  - account: {verified.name}\n  - account: {unverified.name}\n"
                      f"  - account: newcomer@coj.go.th\n", encoding="utf-8")

    english = mailbackup("report", "--config", config, "--lang", "en")
    assert english.returncode == 1, english.stderr
    assert "never_verified" not in english.stdout and "NEVER VERIFIED" in english.stdout
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", english.stdout)  # no raw ISO time beside a local one
    lines = english.stdout.splitlines()
    line = next(text for text in lines if text.startswith(verified.name))
    assert len(re.findall(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b", line)) == 2, line  # verified, last good backup
    assert "  why: never backed up here, so never verified" in lines
    assert any(text.startswith("  why: the last verification failed: ") for text in lines), lines
    assert "  why: overdue by" in english.stdout
    page = (dest / "reports" / "summary.html").read_text(encoding="utf-8")
    assert '<div class="why">the last verification failed: ' in page
    assert '<div class="why">never backed up here, so never verified; overdue by' in page
    rows = {row["account"]: row for row in validated(dest / "reports" / "summary.json", "summary")["accounts"]}
    assert rows[verified.name]["reason"] is None and rows[unverified.name]["status"] == "failed"

    thai = mailbackup("report", "--config", config, "--lang", "th")
    assert thai.returncode == 1, thai.stderr
    assert "never_verified" not in thai.stdout and "ยังไม่เคยตรวจสอบ" in thai.stdout
    assert f" {date.today().year + 543} เวลา " in thai.stdout and "  สาเหตุ: การตรวจสอบครั้งล่าสุดไม่สำเร็จ" in thai.stdout
    assert not re.search(r"\d{4}-\d\d-\d\d", thai.stdout.replace(str(dest), ""))  # Thai dates only
