"""Restore and migrate against real Dovecot servers: an archive goes back to a
new account byte for byte, with flags, dates and (Thai) folder names, into
either namespace style; a killed restore resumes without sending anything
twice; a full target reports each refused message and completes once it has
room; the target check reports what is missing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sample_mail
from dovecot_server import DovecotServer
from helpers import REPO, backup, run_cli, server_args, server_contents, state_rows

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode
from mailbackup.imap.append import Namespace, TargetFolder, TargetMailbox, expand_uid_set
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress
from mailbackup.restore.foldermap import detect_source_prefix, plan_folders, source_path, target_name
from mailbackup.restore.targetcheck import check_target
from mailbackup.restore.upload import RestoreEngine, RestoreOptions, upload_flags
from mailbackup.state.db import FolderRecord
from mailbackup.state.uploads import UploadTarget

SERVERS = {"dovecot": "dovecot_server", "courier": "courier_server"}


def restore(source, target, dest: Path, *extra: str, env: dict[str, str] | None = None, **kwargs: Any):
    return run_cli(["restore", source.name, "--dest", str(dest), "--to", target.name,
                    "--to-server", target.server_arg, "--to-cafile", str(target.cafile), *extra],
                   env={"MAILBACKUP_TARGET_PASSWORD": target.password, **(env or {})}, **kwargs)


def restore_command(source, target, dest: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mailbackup", "restore", source.name, "--dest", str(dest), "--to", target.name,
            "--to-server", target.server_arg, "--to-cafile", str(target.cafile), *extra]


def mailbox(client, server: DovecotServer) -> dict[str, Counter]:
    """Every message of every selectable folder, by "/"-path without the
    namespace prefix: a multiset of (bytes, flags, INTERNALDATE as an instant)."""
    result = {}
    for flags, _, name in client.list_folders():
        if b"\\Noselect" in flags or b"\\NonExistent" in flags:
            continue
        path = name if name == "INBOX" else name.removeprefix(server.prefix).replace(server.separator, "/")
        result[path] = Counter((body, tags, when.timestamp())
                               for body, tags, when in server_contents(client, name).values())
    return result


def fill(client, server: DovecotServer, box) -> None:
    sample_mail.fill_mailbox(client, box, server.separator, server.prefix)


def letters(count: int, start: int = 0) -> list[sample_mail.SampleMessage]:
    when = sample_mail._DEFAULT_DATE
    return [sample_mail.SampleMessage(sample_mail.thai_letter(start + i, when), ("\\Seen",) if i % 3 else (), when)
            for i in range(count)]


def report_of(dest: Path, account: str) -> dict[str, Any]:
    path = account_dir(dest, account) / "reports" / "restore-verify.json"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("fmt", "source_kind", "target_kind"), [
    ("maildir", "dovecot", "dovecot"), ("mbox", "dovecot", "courier"), ("maildir", "courier", "dovecot"),
])
def test_restore_puts_every_message_back(request, imap_user_factory, imap_client_factory, tmp_path,
                                         fmt, source_kind, target_kind):
    source_server = request.getfixturevalue(SERVERS[source_kind])
    target_server = request.getfixturevalue(SERVERS[target_kind])
    source, target = imap_user_factory(source_server), imap_user_factory(target_server)
    source_client = imap_client_factory(source)
    fill(source_client, source_server, sample_mail.sample_mailbox())
    before = mailbox(source_client, source_server)
    assert backup(source, tmp_path, "--format", fmt).returncode == 0

    done = restore(source, target, tmp_path)

    assert done.returncode == 0, done.stderr
    assert "uploaded 9 messages" in done.stdout and "Check: all 9 messages" in done.stdout
    target_client = imap_client_factory(target)
    after = mailbox(target_client, target_server)
    # Implied parents (กล่องขาเข้า, งานคดี/2566) are \Noselect on both sides; the empty folder exists.
    assert after == before
    assert "ว่าง" in after and after["งานคดี/2566/มกราคม"]
    names = {name for _, _, name in target_client.list_folders()}
    separator, prefix = target_server.separator, target_server.prefix
    assert f"{prefix}กล่องขาเข้า{separator}สำคัญ" in names  # in the target's own namespace
    subscribed = {name for _, _, name in target_client.list_sub_folders()}
    assert subscribed >= {f"{prefix}ว่าง", f"{prefix}Sent"}
    report = report_of(tmp_path, source.name)
    assert report["status"] == "complete" and report["totals"]["present"] == 9

    again = restore(source, target, tmp_path)  # idempotent: nothing sent twice
    assert again.returncode == 0, again.stderr
    assert "uploaded 0 messages" in again.stdout and "9 uploaded before" in again.stdout
    assert mailbox(target_client, target_server) == before


def test_dry_run_changes_nothing(imap_user_factory, imap_client_factory, dovecot_server, courier_server, tmp_path):
    source, target = imap_user_factory(dovecot_server), imap_user_factory(courier_server)
    fill(imap_client_factory(source), dovecot_server, sample_mail.sample_mailbox())
    assert backup(source, tmp_path).returncode == 0

    done = restore(source, target, tmp_path, "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "กล่องขาเข้า/สำคัญ → INBOX.กล่องขาเข้า.สำคัญ (new folder): would upload 1 messages" in done.stdout
    assert "would upload 9 messages" in done.stdout
    target_client = imap_client_factory(target)
    assert [name for _, _, name in target_client.list_folders()] == ["INBOX"]
    assert state_rows(tmp_path, source.name, "SELECT count(*) FROM uploads") == [(0,)]


@pytest.mark.parametrize("crash", ["restore-after-append=3", "restore-after-pending=2"])
def test_killed_restore_resumes_without_duplicates(imap_user_factory, imap_client_factory, dovecot_server,
                                                   courier_server, tmp_path, crash):
    source, target = imap_user_factory(dovecot_server), imap_user_factory(courier_server)
    source_client = imap_client_factory(source)
    box = sample_mail.sample_mailbox()
    box["INBOX"] += letters(40)
    box["งานคดี"] += letters(15, start=100)
    fill(source_client, dovecot_server, box)
    before = mailbox(source_client, dovecot_server)
    assert backup(source, tmp_path).returncode == 0

    killed = restore(source, target, tmp_path, "--batch-size", "7", env={"MAILBACKUP_FAULTS": crash})

    assert killed.returncode == -signal.SIGKILL
    pending = state_rows(tmp_path, source.name, "SELECT count(*) FROM uploads WHERE status='pending'")
    assert pending == [(7,)]  # a batch was on its way when the process died
    resumed = restore(source, target, tmp_path, "--batch-size", "7")
    assert resumed.returncode == 0, resumed.stderr
    if crash.startswith("restore-after-append"):
        assert "7 found already on the target" in resumed.stdout
    assert mailbox(imap_client_factory(target), courier_server) == before  # every message exactly once


def test_killed_at_a_random_moment(imap_user_factory, imap_client_factory, dovecot_server, tmp_path):
    source, target = imap_user_factory(dovecot_server), imap_user_factory(dovecot_server)
    source_client = imap_client_factory(source)
    fill(source_client, dovecot_server, {"INBOX": letters(300), "งานคดี": letters(100, start=500)})
    before = mailbox(source_client, dovecot_server)
    assert backup(source, tmp_path).returncode == 0
    env = {**os.environ, "MAILBACKUP_TARGET_PASSWORD": target.password}
    env.pop("MAILBACKUP_PASSWORD", None)
    process = subprocess.Popen(restore_command(source, target, tmp_path, "--batch-size", "10"), cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    db_rows = []
    while time.monotonic() < deadline and process.poll() is None:
        try:
            db_rows = state_rows(tmp_path, source.name, "SELECT count(*) FROM uploads WHERE status='uploaded'")
        except Exception:  # the state may be mid-migration or locked for a moment
            db_rows = []
        if db_rows and db_rows[0][0] >= 120:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert db_rows and db_rows[0][0] < 400, "the restore finished before it could be killed"

    resumed = restore(source, target, tmp_path, "--batch-size", "10")

    assert resumed.returncode == 0, resumed.stderr
    assert mailbox(imap_client_factory(target), dovecot_server) == before


@contextlib.contextmanager
def quota_server(base: Path, quota_bytes: int) -> Iterator[DovecotServer]:
    """A Dovecot with a per-user quota on `base`; users and mail stay there when it stops."""
    server = DovecotServer(base, quota_bytes=quota_bytes)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_full_target_reports_each_message_and_completes_later(imap_user_factory, imap_client_factory,
                                                              dovecot_server, tmp_path):
    source = imap_user_factory(dovecot_server)
    source_client = imap_client_factory(source)
    fill(source_client, dovecot_server, {"INBOX": letters(30), "งานคดี": letters(10, start=200)})
    before = mailbox(source_client, dovecot_server)
    assert backup(source, tmp_path).returncode == 0
    total = sum(len(body) for folder in before.values() for body, _, _ in folder)
    base = Path(tempfile.mkdtemp(prefix="mbq", dir="/tmp"))  # short: Dovecot's socket paths
    try:
        with quota_server(base, total // 2) as small:
            target = imap_user_factory(small)
            full = restore(source, target, tmp_path)

        assert full.returncode == ExitCode.WARNINGS, full.stderr
        refused = re.findall(r"UID \d+ \(\d+\.\d KB\) '[^']+': the target mailbox is full: \[OVERQUOTA\] Quota "
                             r"exceeded", full.stderr)
        report = report_of(tmp_path, source.name)
        assert report["status"] == "incomplete"
        missing = [entry for folder in report["folders"] for entry in folder["missing"]]
        assert 0 < len(missing) < 40 and len(refused) == min(len(missing), 20)
        assert all(entry["reason"].startswith("upload failed: the target mailbox is full") for entry in missing)
        assert report["totals"]["present"] == 40 - len(missing)

        with quota_server(base, total * 4) as bigger:  # the same user and mail, more room
            target = replace(target, server_arg=bigger.server_arg, server=bigger)
            done = restore(source, target, tmp_path)
            assert done.returncode == 0, done.stderr
            assert f"uploaded {len(missing)} messages" in done.stdout
            assert mailbox(imap_client_factory(target), bigger) == before  # each message exactly once
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_gone_messages_are_restored_unless_skipped(imap_user_factory, imap_client_factory, dovecot_server,
                                                  tmp_path):
    source, target, other = (imap_user_factory(dovecot_server) for _ in range(3))
    source_client = imap_client_factory(source)
    fill(source_client, dovecot_server, {"INBOX": letters(5)})
    assert backup(source, tmp_path).returncode == 0
    source_client.select_folder("INBOX")
    source_client.delete_messages(source_client.search("ALL")[:2])
    source_client.expunge()
    assert backup(source, tmp_path).returncode == 0  # two are now "gone from server" in the archive

    assert restore(source, target, tmp_path).returncode == 0
    assert len(server_contents(imap_client_factory(target), "INBOX")) == 5
    skipping = restore(source, other, tmp_path, "--skip-deleted")
    assert skipping.returncode == 0, skipping.stderr
    assert len(server_contents(imap_client_factory(other), "INBOX")) == 3


def test_folder_the_target_refuses_is_reported_and_the_rest_restored(imap_user_factory, imap_client_factory,
                                                                     dovecot_server, courier_server, tmp_path):
    source, target = imap_user_factory(dovecot_server), imap_user_factory(courier_server)
    long_name = "ก" * 60 + "/" + "ข" * 60  # fine as two directories; too long as one Maildir++ name
    fill(imap_client_factory(source), dovecot_server, {"INBOX": letters(2), long_name: letters(1, start=50)})
    assert backup(source, tmp_path).returncode == 0

    done = restore(source, target, tmp_path)

    assert done.returncode == ExitCode.WARNINGS
    assert f"FAILED  {long_name} →" in done.stderr and "refused to create folder" in done.stderr
    assert len(server_contents(imap_client_factory(target), "INBOX")) == 2
    report = report_of(tmp_path, source.name)
    refused = next(folder for folder in report["folders"] if folder["source"] == long_name)
    assert refused["status"] == "error" and len(refused["missing"]) == 1


def test_check_reports_a_message_gone_from_the_target(imap_user_factory, imap_client_factory, dovecot_server,
                                                      tmp_path):
    source, target = imap_user_factory(dovecot_server), imap_user_factory(dovecot_server)
    fill(imap_client_factory(source), dovecot_server, sample_mail.sample_mailbox())
    assert backup(source, tmp_path).returncode == 0
    assert restore(source, target, tmp_path).returncode == 0
    target_client = imap_client_factory(target)
    target_client.select_folder("Sent")
    target_client.delete_messages(target_client.search("ALL"))
    target_client.expunge()
    target_client.select_folder("INBOX")
    target_client.remove_flags(target_client.search("ALL"), ["\\Seen"])

    checked = restore(source, target, tmp_path, "--verify-only")

    assert checked.returncode == ExitCode.WARNINGS
    report = report_of(tmp_path, source.name)
    by_source = {folder["source"]: folder for folder in report["folders"]}
    assert [entry["reason"] for entry in by_source["Sent"]["missing"]] == [
        f"uploaded {by_source['Sent']['missing'][0]['reason'].split()[1]} but no longer in the folder"]
    assert len(by_source["INBOX"]["flags_mismatch"]) == 1  # the one that was \Seen
    assert "1 missing" in checked.stdout


def test_migrate_copies_server_to_server_and_keeps_the_archive(imap_user_factory, imap_client_factory,
                                                               courier_server, dovecot_server, tmp_path):
    source, target = imap_user_factory(courier_server), imap_user_factory(dovecot_server)
    source_client = imap_client_factory(source)
    fill(source_client, courier_server, sample_mail.sample_mailbox())
    before = mailbox(source_client, courier_server)

    done = run_cli(["migrate", source.name, *server_args(source), "--dest", str(tmp_path), "--to", target.name,
                    "--to-server", target.server_arg, "--to-cafile", str(target.cafile)],
                   password=source.password, env={"MAILBACKUP_TARGET_PASSWORD": target.password})

    assert done.returncode == 0, done.stderr
    assert "saved 9 messages" in done.stdout and "uploaded 9 messages" in done.stdout
    assert mailbox(imap_client_factory(target), dovecot_server) == before
    assert (account_dir(tmp_path, source.name) / "state.sqlite3").exists()
    assert state_rows(tmp_path, source.name, "SELECT count(*) FROM messages") == [(9,)]


def test_errors_have_their_exit_codes(imap_user_factory, dovecot_server, tmp_path):
    source, target = imap_user_factory(dovecot_server), imap_user_factory(dovecot_server)
    missing = restore(source, target, tmp_path)
    assert missing.returncode == ExitCode.USAGE and "no backup of" in missing.stderr
    assert backup(source, tmp_path).returncode == 0
    wrong = run_cli(["restore", source.name, "--dest", str(tmp_path), "--to", target.name, "--to-server",
                     target.server_arg, "--to-cafile", str(target.cafile)],
                    env={"MAILBACKUP_TARGET_PASSWORD": "wrong"})
    assert wrong.returncode == ExitCode.AUTH, wrong.stderr
    nobody = run_cli(["restore", source.name, "--dest", str(tmp_path), "--to", target.name, "--to-server",
                      "127.0.0.1:1", "--to-cafile", str(target.cafile)], env={"MAILBACKUP_TARGET_PASSWORD": "x"})
    assert nobody.returncode == ExitCode.CONNECTION, nobody.stderr
    no_password = run_cli(["restore", source.name, "--dest", str(tmp_path), "--to", target.name, "--to-server",
                           target.server_arg, "--to-cafile", str(target.cafile)], input="")
    assert no_password.returncode == ExitCode.AUTH and "MAILBACKUP_TARGET_PASSWORD" in no_password.stderr


def test_plain_append_without_uidplus_finds_the_uids(imap_user_factory, imap_client_factory, dovecot_server,
                                                     tmp_path, monkeypatch):
    """A server without MULTIAPPEND and UIDPLUS (simulated on Dovecot): one raw
    APPEND per message, UIDs found by Message-ID and size, or by the bytes for
    messages without a Message-ID (two identical ones here)."""
    source, target = imap_user_factory(dovecot_server), imap_user_factory(dovecot_server)
    source_client = imap_client_factory(source)
    box = sample_mail.sample_mailbox()
    no_id = b"Subject: no Message-ID\r\nFrom: clerk@coj.go.th\r\n\r\nsame text\n"
    box["INBOX"] += [sample_mail.SampleMessage(no_id, ("\\Seen",), sample_mail._DEFAULT_DATE)] * 2
    fill(source_client, dovecot_server, box)
    before = mailbox(source_client, dovecot_server)
    assert backup(source, tmp_path).returncode == 0
    monkeypatch.setattr(TargetMailbox, "can_multiappend", property(lambda self: False))
    append = TargetMailbox.append
    monkeypatch.setattr(TargetMailbox, "append",
                        lambda self, folder, items: replace(append(self, folder, items), uidvalidity=None, uids=()))
    settings = ConnectionSettings(ServerAddress.parse(target.server_arg), cafile=str(target.cafile), timeout=30)
    options = RestoreOptions(UploadTarget("localhost", target.name))

    with open_archive(tmp_path, source.name, create=False) as archive, \
            ImapSession(settings, target.name, target.password) as session:
        stats = RestoreEngine(archive, TargetMailbox(session), options).run()
        check = check_target(archive, TargetMailbox(session), options, source.name)

    assert stats.uploaded == 11 and not stats.has_warnings
    assert check.complete and check.totals()["present"] == 11
    assert state_rows(tmp_path, source.name, "SELECT count(DISTINCT target_uid) FROM uploads "
                      "WHERE status='uploaded' AND target_uid IS NOT NULL AND target_folder='INBOX'") == [(5,)]
    assert mailbox(imap_client_factory(target), dovecot_server) == before


def folder_record(name: str, delimiter: str | None) -> FolderRecord:
    return FolderRecord(1, name, delimiter, name, None, None, None, None, 0, 0, None, None)


def test_folder_names_follow_the_target_namespace():
    flat_slash, courier = Namespace("", "/"), Namespace("INBOX.", ".")
    assert target_name(("INBOX",), courier) == ("INBOX", False)
    assert target_name(("กล่องขาเข้า", "สำคัญ"), courier) == ("INBOX.กล่องขาเข้า.สำคัญ", False)
    assert target_name(("ฝ่าย ก.พ.",), courier) == ("INBOX.ฝ่าย ก_พ_", True)  # '.' separates folders there
    assert target_name(("INBOX", "Archive"), courier) == ("INBOX.Archive", False)
    assert target_name(("INBOX", "Archive"), flat_slash) == ("INBOX/Archive", False)
    assert target_name(("a/b",), Namespace("", None)) == ("a/b", False)  # a server without hierarchy
    assert source_path("INBOX.Sent.2566", ".", "INBOX.") == ("Sent", "2566")
    assert source_path("Inbox", ".", "INBOX.") == ("INBOX",)
    courier_folders = [folder_record(name, ".") for name in ("INBOX", "INBOX.Sent", "INBOX.งานคดี.2566")]
    assert detect_source_prefix(courier_folders) == "INBOX."
    assert detect_source_prefix([*courier_folders, folder_record("Archive", ".")]) == ""
    assert detect_source_prefix([folder_record("INBOX", "/"), folder_record("Sent", "/")]) == ""
    plans = plan_folders(courier_folders, "INBOX.", flat_slash, (), ("*2566",))
    assert [(plan.record.name, plan.target) for plan in plans] == [("INBOX", "INBOX"), ("INBOX.Sent", "Sent")]


def test_flags_only_those_the_target_folder_keeps():
    strict = TargetFolder("INBOX", 1, 1, 0, ("\\Seen", "\\Flagged", "$Label1"))
    open_ended = TargetFolder("INBOX", 1, 1, 0, ("\\Seen", "\\*"))
    unknown = TargetFolder("INBOX", 1, 1, 0, ())
    flags = ("\\Seen", "$Label1", "$Junk", "\\Recent", "\\Draft")
    assert upload_flags(flags, strict) == ("$Label1", "\\Seen")
    assert upload_flags(flags, open_ended) == ("$Junk", "$Label1", "\\Seen")
    assert upload_flags(flags, unknown) == ("$Junk", "$Label1", "\\Draft", "\\Seen")  # never \\Recent


def test_appenduid_sets():
    assert expand_uid_set("1:3,7") == [1, 2, 3, 7]
    assert expand_uid_set("5") == [5]
