"""`mailbackup verify` against a real Dovecot and on its own (--offline):
complete archives pass, every kind of damage is found and named."""

from __future__ import annotations

import ast
import csv
import io
import os
import shutil
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sample_mail  # scripts/ is put on sys.path by conftest
from cli_run import backup, mailbackup, server_args, validated
from conftest import ImapUser, new_user
from dovecot_server import DovecotServer
from imapclient import IMAPClient

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import UsageError
from mailbackup.model import StoredMessage
from mailbackup.text import parse_duration
from mailbackup.verify.check import NoProgress, verify_offline
from mailbackup.verify.results import VerifyOptions

HOSTILE_SUBJECT = '<script>alert("x")</script> ทดสอบ & แท็ก'
PACKAGE = Path(__file__).resolve().parent.parent / "mailbackup"


@pytest.fixture(scope="module")
def mail_user(dovecot_server: DovecotServer) -> ImapUser:
    """A user holding the sample mailbox plus a message with a hostile subject."""
    user = new_user(dovecot_server)
    box: dict[str, list[Any]] = dict(sample_mail.sample_mailbox())
    hostile = sample_mail.thai_qp_message(message_id="<hostile@coj.go.th>").replace(
        b"Subject: ", b"Subject: " + sample_mail.encode_word(HOSTILE_SUBJECT).encode() + b"\r\nX-Old-Subject: ", 1)
    box["INBOX"] = [*box["INBOX"], hostile]
    context = ssl.create_default_context(cafile=str(user.cafile))
    with IMAPClient(user.host, port=user.port, ssl=True, ssl_context=context, timeout=30) as client:
        client.plain_login(user.name, user.password)
        sample_mail.fill_mailbox(client, box)
        client.logout()
    return user


@pytest.fixture(scope="module")
def pristine(mail_user: ImapUser, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One complete backup per format, copied (never changed) by each test."""
    archives = {}
    for format_ in ("maildir", "mbox"):
        dest = tmp_path_factory.mktemp(f"pristine-{format_}")
        backup(mail_user, dest, format_)
        archives[format_] = dest
    return archives


@pytest.fixture
def copy_of(pristine: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    def copy(format_: str) -> Path:
        dest = tmp_path / f"dest-{format_}"
        shutil.copytree(pristine[format_], dest)
        return dest

    return copy


def verify(user: ImapUser, dest: Path, *extra: str | Path, online: bool = True) -> tuple[int, dict[str, Any]]:
    """Run verify; return its exit code and its validated verify.json."""
    where = server_args(user) if online else ["--offline"]
    done = mailbackup("verify", user.name, *where, "--dest", dest, *extra, password=user.password)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, validated(account_dir(dest, user.name) / "reports" / "verify.json", "verify")


def folder(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in report["folders"] if item["name"] == name)


def stored(dest: Path, account: str, folder_name: str) -> list[StoredMessage]:
    with open_archive(dest, account, lock=False, create=False) as archive:
        record = archive.state.folder(folder_name)
        assert record is not None
        return list(archive.state.messages(record.id))


def mail_file(dest: Path, account: str, folder_name: str, message: StoredMessage) -> Path:
    [path] = (account_dir(dest, account) / "mail" / folder_name / "cur").glob(f"{message.location}*")
    return path


def flip(path: Path, needle: bytes) -> None:
    """Change one byte inside `needle` (its first letter's case), same length."""
    data = path.read_bytes()
    at = data.index(needle)
    path.write_bytes(data[:at] + needle[:1].swapcase() + data[at + 1:])


# ------------------------------------------------------------- online and offline
@pytest.mark.parametrize("format_", ["maildir", "mbox"])
def test_complete_archive_is_complete(mail_user: ImapUser, copy_of: Callable[[str], Path], format_: str,
                                      tmp_path: Path) -> None:
    dest = copy_of(format_)
    code, report = verify(mail_user, dest, "--deadline", "2099-12-31", "--report-dir", tmp_path / "out")
    assert (code, report["status"], report["mode"]) == (0, "complete", "online")
    totals = report["totals"]
    assert totals["server_messages"] == totals["local_messages"] == totals["ok"] == totals["checked"] == 10
    assert totals["missing"] == totals["corrupt"] == totals["size_mismatch"] == 0
    assert {item["status"] for item in report["folders"]} == {"complete"}
    assert folder(report, "งานคดี/2566/มกราคม")["server_messages"] == 1
    assert report["account"] == mail_user.name and report["server"] == mail_user.server_arg
    assert report["deadline"] == "2099-12-31" and report["days_left"] > 0 and not report["overdue"]

    reports = account_dir(dest, mail_user.name) / "reports"
    copies = account_dir(tmp_path / "out", mail_user.name)
    for name in ("verify.json", "verify.csv", "verify.html"):
        for path in (reports / name, copies / name):
            assert path.stat().st_mode & 0o777 == 0o600
            assert mail_user.password.encode() not in path.read_bytes()
    raw = (reports / "verify.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {row["folder"] for row in rows} == {item["name"] for item in report["folders"]}
    assert all(row["status"] == "complete" and row["account"] == mail_user.name for row in rows)

    code, offline = verify(mail_user, dest, online=False)
    assert (code, offline["status"], offline["mode"]) == (0, "complete", "offline")
    assert offline["totals"]["server_messages"] is None and offline["totals"]["ok"] == 10

    code, again = verify(mail_user, dest, "--max-age", "1h")
    assert code == 0 and again["totals"]["skipped_recent"] == 10 and again["totals"]["checked"] == 0


def test_deleted_maildir_file_is_missing_with_uid_and_subject(mail_user: ImapUser,
                                                              copy_of: Callable[[str], Path]) -> None:
    dest = copy_of("maildir")
    victim = next(m for m in stored(dest, mail_user.name, "INBOX") if m.message_id == "<hostile@coj.go.th>")
    assert victim.subject == HOSTILE_SUBJECT
    mail_file(dest, mail_user.name, "INBOX", victim).unlink()
    for online in (True, False):
        code, report = verify(mail_user, dest, online=online)
        assert (code, report["status"]) == (1, "incomplete")
        [missing] = folder(report, "INBOX")["missing"]
        assert (missing["uid"], missing["subject"], missing["size"]) == (victim.uid, HOSTILE_SUBJECT, victim.size)
        assert folder(report, "INBOX")["status"] == "incomplete" and report["totals"]["missing"] == 1
    html = (account_dir(dest, mail_user.name) / "reports" / "verify.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; ทดสอบ &amp; แท็ก" in html


def test_counts_after_a_deleted_file_agree_with_the_verdict(mail_user: ImapUser,
                                                             copy_of: Callable[[str], Path]) -> None:
    """The records still list a message whose file is gone: the totals say
    records and intact copies apart, so they agree with "1 missing"."""
    dest = copy_of("maildir")
    victim = stored(dest, mail_user.name, "INBOX")[0]
    mail_file(dest, mail_user.name, "INBOX", victim).unlink()
    done = mailbackup("verify", mail_user.name, *server_args(mail_user), "--dest", dest, password=mail_user.password)
    assert done.returncode == 1, done.stderr
    report = validated(account_dir(dest, mail_user.name) / "reports" / "verify.json", "verify")
    totals = report["totals"]
    assert totals["server_messages"] == totals["local_messages"] == totals["intact"] + 1
    assert folder(report, "INBOX")["intact"] == folder(report, "INBOX")["local_messages"] - 1
    line = next(text for text in done.stdout.splitlines() if "on the server" in text)
    assert line.startswith(f"  {totals['server_messages']} messages on the server; {totals['local_messages']} in the "
                           f"archive's records, {totals['intact']} found intact (")
    assert line.endswith("; 1 missing")
    html = (account_dir(dest, mail_user.name) / "reports" / "verify.html").read_text(encoding="utf-8")
    assert "Found intact" in html and f'<td class="num">{totals["intact"]}</td>' in html


STAFF_YAML = """accounts:
  - account: {account}
    title: นาย
    name: สมชาย
    surname: ใจดี
    position: นิติกรชำนาญการ
    unit: ศาลแพ่ง
"""


def test_staff_details_from_the_config_reach_the_reports_and_are_remembered(
        mail_user: ImapUser, copy_of: Callable[[str], Path], tmp_path: Path) -> None:
    dest = copy_of("maildir")
    config = tmp_path / "staff.yaml"
    config.write_text(STAFF_YAML.format(account=mail_user.name), encoding="utf-8")
    reports = account_dir(dest, mail_user.name) / "reports"
    expected = {"title": "นาย", "name": "สมชาย", "surname": "ใจดี", "position": "นิติกรชำนาญการ", "unit": "ศาลแพ่ง"}
    for extra in (["--config", config], []):  # the second run has no config: the archive remembers
        code, report = verify(mail_user, dest, *extra)
        assert code == 0 and report["staff"] == expected
        html = (reports / "verify.html").read_text(encoding="utf-8")
        assert "นาย สมชาย ใจดี" in html and "นิติกรชำนาญการ" in html and "ศาลแพ่ง" in html
        rows = list(csv.DictReader(io.StringIO((reports / "verify.csv").read_text(encoding="utf-8-sig"))))
        assert {(row["name"], row["surname"], row["unit"]) for row in rows} == {("สมชาย", "ใจดี", "ศาลแพ่ง")}

    done = mailbackup("report", "--dest", dest)
    summary = validated(dest / "reports" / "summary.json", "summary")
    assert done.returncode == 0, done.stderr
    assert summary["units"] == ["ศาลแพ่ง"] and summary["accounts"][0]["staff"] == expected
    page = (dest / "reports" / "summary.html").read_text(encoding="utf-8")
    assert "<h1>สรุปผลการสำรองข้อมูลอีเมลทุกบัญชี: ศาลแพ่ง<small>" in page and "นาย สมชาย ใจดี" in page
    rows = list(csv.DictReader(io.StringIO((dest / "reports" / "summary.csv").read_text(encoding="utf-8-sig"))))
    assert [(row["title"], row["position"], row["unit"]) for row in rows] == [("นาย", "นิติกรชำนาญการ", "ศาลแพ่ง")]


@pytest.mark.parametrize("format_", ["maildir", "mbox"])
def test_flipped_byte_is_corrupt(mail_user: ImapUser, copy_of: Callable[[str], Path], format_: str) -> None:
    dest = copy_of(format_)
    [victim] = stored(dest, mail_user.name, "งานคดี")
    if format_ == "maildir":
        path = mail_file(dest, mail_user.name, "งานคดี", victim)
    else:
        path = account_dir(dest, mail_user.name) / "mail" / "งานคดี.mbox"
    flip(path, b"judge@coj.go.th")
    for online in (True, False):
        code, report = verify(mail_user, dest, online=online)
        assert (code, report["status"]) == (8, "corrupt")
        [corrupt] = folder(report, "งานคดี")["corrupt"]
        assert corrupt["uid"] == victim.uid and "SHA-256" in corrupt["reason"]
        assert {item["name"] for item in report["folders"] if item["status"] != "complete"} == {"งานคดี"}


def test_new_mail_is_missing_until_the_next_backup(imap_user: ImapUser, imap_client_factory: Callable[..., IMAPClient],
                                                   tmp_path: Path) -> None:
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.thai_qp_message()], "Sent": []})
    backup(imap_user, tmp_path)
    when = datetime(2024, 2, 1, 10, 0, tzinfo=sample_mail.BKK)
    [uid] = sample_mail.fill_mailbox(client, {"Sent": [sample_mail.SampleMessage(
        sample_mail.thai_letter(7, when), (), when)]})["Sent"]
    code, report = verify(imap_user, tmp_path)
    assert (code, report["status"]) == (1, "incomplete")
    [missing] = folder(report, "Sent")["missing"]
    assert missing["uid"] == uid and "ครั้งที่ 8" in missing["subject"]
    assert missing["message_id"] == "<sample-letter-7@coj.go.th>" and missing["date"].startswith("2024-02-01")
    assert folder(report, "INBOX")["status"] == "complete"
    backup(imap_user, tmp_path)
    code, report = verify(imap_user, tmp_path)
    assert (code, report["status"], report["totals"]["server_messages"]) == (0, "complete", 2)


def test_a_folder_the_server_will_not_open_is_not_complete(imap_user: ImapUser,
                                                           imap_client_factory: Callable[..., IMAPClient],
                                                           tmp_path: Path) -> None:
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.thai_qp_message()],
                                      "Locked": [sample_mail.tis620_message()]})
    backup(imap_user, tmp_path)
    locked = imap_user.server.folder_dir(imap_user.name, "Locked")
    os.chmod(locked, 0)  # after one failed access Dovecot lists it \Noselect
    try:
        mailbackup("backup", imap_user.name, *server_args(imap_user), "--dest", tmp_path, password=imap_user.password)
        code, report = verify(imap_user, tmp_path)
    finally:
        os.chmod(locked, 0o700)
    assert code != 0 and report["status"] != "complete"
    assert folder(report, "Locked")["status"] == "failed"
    assert folder(report, "INBOX")["status"] == "complete"


def test_unreachable_server_writes_failed_report(mail_user: ImapUser, copy_of: Callable[[str], Path]) -> None:
    dest = copy_of("maildir")
    done = mailbackup("verify", mail_user.name, "--server", "localhost:1", "--dest", dest, "--deadline", "2000-01-01",
                      password=mail_user.password)
    assert done.returncode == 4, done.stderr
    report = validated(account_dir(dest, mail_user.name) / "reports" / "verify.json", "verify")
    assert report["status"] == "failed" and "refused" in report["error"] and report["overdue"] is True
    assert report["server"] == "localhost:1" and report["folders"] == []
    html = (account_dir(dest, mail_user.name) / "reports" / "verify.html").read_text(encoding="utf-8")
    assert "FAILED" in html and "OVERDUE" in html
    [row] = csv.DictReader(io.StringIO((account_dir(dest, mail_user.name) / "reports" / "verify.csv")
                                       .read_text(encoding="utf-8-sig"), newline=""))
    assert row["status"] == "failed" and "refused" in row["error"] and row["server"] == "localhost:1"

    done = mailbackup("verify", mail_user.name, *server_args(mail_user), "--dest", dest, password="wrong")
    assert done.returncode == 3, done.stderr
    report = validated(account_dir(dest, mail_user.name) / "reports" / "verify.json", "verify")
    assert report["status"] == "failed" and "wrong" not in (account_dir(dest, mail_user.name) / "reports"
                                                            / "verify.json").read_text(encoding="utf-8")


# ------------------------------------------------------------------- offline only
def test_offline_finds_truncated_mbox(mail_user: ImapUser, copy_of: Callable[[str], Path]) -> None:
    dest = copy_of("mbox")
    inbox = stored(dest, mail_user.name, "INBOX")
    last = max(inbox, key=lambda message: message.mbox_offset or 0)
    path = account_dir(dest, mail_user.name) / "mail" / "INBOX.mbox"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 100)
    code, report = verify(mail_user, dest, online=False)
    assert (code, report["status"]) == (8, "corrupt")
    inbox_report = folder(report, "INBOX")
    assert [entry["uid"] for entry in inbox_report["corrupt"]] == [last.uid]
    assert any("cut off" in problem for problem in inbox_report["problems"])
    assert inbox_report["ok"] == len(inbox) - 1


def test_offline_reports_stray_and_malformed_maildir_files(mail_user: ImapUser,
                                                            copy_of: Callable[[str], Path]) -> None:
    dest = copy_of("maildir")
    cur = account_dir(dest, mail_user.name) / "mail" / "Sent" / "cur"
    (cur / "notes.txt").write_bytes(b"not mail")
    (cur / "1700000000.M1P2Q3.otherhost,S=8:2,S").write_bytes(b"From: x\r\n\r\nhello\r\n")
    code, report = verify(mail_user, dest, online=False)
    assert (code, report["status"]) == (1, "complete")  # all mail is safe; the strays need a look
    sent = folder(report, "Sent")
    assert sent["stray_files"] == ["cur/1700000000.M1P2Q3.otherhost,S=8:2,S", "cur/notes.txt"]
    assert sent["warnings"] == ["malformed Maildir file name cur/notes.txt"]
    assert report["totals"]["stray_files"] == 2


def test_offline_mbox_with_unrecorded_entries(mail_user: ImapUser, copy_of: Callable[[str], Path]) -> None:
    dest = copy_of("mbox")
    path = account_dir(dest, mail_user.name) / "mail" / "Sent.mbox"
    # An entry past the saved length (a killed backup) is a warning; one
    # spliced into the saved part is damage.
    with open(path, "ab") as handle:
        handle.write(b"From x@y Thu Jan  4 09:03:07 2024\nSubject: tail\n\nbody\n\n")
    code, report = verify(mail_user, dest, online=False)
    assert (code, report["status"]) == (1, "complete")
    assert "after the last saved message" in folder(report, "Sent")["warnings"][0]
    data = path.read_bytes()
    middle = data.index(b"\r\n\r\n") + 4  # inside the first message, at a line start
    path.write_bytes(data[:middle] + b"From spliced@y Thu Jan  4 09:03:07 2024\n" + data[middle:])
    code, report = verify(mail_user, dest, online=False)
    assert (code, report["status"]) == (8, "corrupt")
    assert any("where the state records" in problem for problem in folder(report, "Sent")["problems"])


def test_least_recently_verified_first_and_max_age(mail_user: ImapUser, copy_of: Callable[[str], Path]) -> None:
    dest = copy_of("maildir")
    now = datetime.now(UTC)
    with open_archive(dest, mail_user.name, lock=True, create=False) as archive:
        messages = [message for record in archive.state.folders() for message in archive.state.messages(record.id)]
        stamps = {(m.folder_id, m.uid): (now - timedelta(days=index)).isoformat(timespec="seconds")
                  for index, m in enumerate(messages)}
        with archive.state.transaction():
            for m in messages[1:]:  # the first one was never verified
                archive.state.set_verified(m.folder_id, m.uidvalidity, m.uid, stamps[(m.folder_id, m.uid)])
        order: list[tuple[int, int]] = []
        original = archive.store.iter_chunks

        def recording(local_path: str, message: StoredMessage) -> Iterator[bytes]:
            order.append((message.folder_id, message.uid))
            return original(local_path, message)

        archive.store.iter_chunks = recording  # type: ignore[method-assign]
        options = VerifyOptions(account=mail_user.name, server=mail_user.server_arg, max_age=timedelta(days=3, hours=1))
        result = verify_offline(archive, options, NoProgress())
    # Never verified first, then the oldest; the three verified 1-3 days ago are skipped.
    expected = [messages[0]] + [messages[index] for index in range(len(messages) - 1, 3, -1)]
    assert order == [(m.folder_id, m.uid) for m in expected]
    assert result.totals.skipped_recent == 3 and result.totals.checked == len(messages) - 3
    with open_archive(dest, mail_user.name, lock=False, create=False) as archive:
        after = {(m.folder_id, m.uid): m.verified_at for r in archive.state.folders()
                 for m in archive.state.messages(r.id)}
    assert all(after[key] and after[key] >= now.isoformat(timespec="seconds") for key in order)


# ------------------------------------------------------------------ small pieces
@pytest.mark.parametrize(("text", "expected"), [
    ("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("1d12h", timedelta(days=1, hours=12)),
    ("30m", timedelta(minutes=30)), ("2w", timedelta(weeks=2)), (" 90s ", timedelta(seconds=90)),
])
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "1.5h", "7d junk"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_verify_without_archive_is_a_usage_error(tmp_path: Path) -> None:
    done = mailbackup("verify", "nobody@coj.go.th", "--offline", "--dest", tmp_path)
    assert done.returncode == 2 and "no backup of nobody@coj.go.th" in done.stderr


def test_verify_and_report_import_inward_only() -> None:
    """No module of verify/ prints or talks IMAP itself."""
    for name in sorted(path.relative_to(PACKAGE).as_posix() for path in (PACKAGE / "verify").glob("*.py")):
        tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
        imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {module for module in imported
                    if module.split(".")[0] in ("click", "tqdm", "imapclient") or module.startswith("mailbackup.cli")}
        assert "print(" not in (PACKAGE / name).read_text(encoding="utf-8")
    assert os.path.exists(PACKAGE / "cli" / "verify.py")
