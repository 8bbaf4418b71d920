"""A sweep verifies what its own backup just wrote from the hashes computed
at download (verify/written.py, state/written.py), against real Dovecot:
the reports say how many copies were checked that way and how many were
read again; whatever disagrees is read again; a copy damaged after the sweep
is still found by a standalone `mailbackup verify`."""

from __future__ import annotations

import html as html_text
import json
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sample_mail
from cli_run import validated
from conftest import ImapUser
from dovecot_server import DovecotServer
from helpers import run_cli, server_args, state_rows
from test_sweep import letters, mailboxes  # three letters in INBOX and one in งานคดี each

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress, StoredMessage
from mailbackup.state.db import StateDB
from mailbackup.state.written import WriteMark
from mailbackup.verify.check import verify_offline, verify_online
from mailbackup.verify.record import verify_recorded
from mailbackup.verify.results import Status, VerifyOptions

WRITTEN_LINE = "written by this run's backup, checked from the SHA-256 computed at download"


def sweep_config(path: Path, users: list[ImapUser], dest: Path, formats: dict[str, str]) -> Path:
    first = users[0]
    lines = ["defaults:", f"  server: {first.server_arg}", f"  cafile: {first.cafile}", f"  dest: {dest}",
             "accounts:"]
    for user in users:
        lines += [f"  - account: {user.name}", f"    format: {formats.get(user.name, 'maildir')}",
                  f"    password_command: {json.dumps('echo ' + shlex.quote(user.password))}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def report(dest: Path, user: ImapUser) -> dict[str, Any]:
    return validated(account_dir(dest, user.name) / "reports" / "verify.json", "verify")


def html(dest: Path, user: ImapUser) -> str:
    return html_text.unescape((account_dir(dest, user.name) / "reports" / "verify.html").read_text(encoding="utf-8"))


def checked(data: dict[str, Any]) -> tuple[str, int, int]:
    """status, copies checked from the download's hashes, copies read again."""
    totals = data["totals"]
    return data["status"], totals["checked_at_download"], totals["checked"]


def a_maildir_file(dest: Path, user: ImapUser) -> Path:
    return sorted((account_dir(dest, user.name) / "mail" / "INBOX" / "cur").iterdir())[0]


def test_sweep_checks_what_it_wrote_from_its_hashes_and_says_so(
        dovecot_server: DovecotServer, imap_client_factory: Callable[..., Any], tmp_path: Path) -> None:
    users = mailboxes(dovecot_server, 3, imap_client_factory)
    grows, stays, boxed = users
    dest = tmp_path / "dest"
    config = sweep_config(tmp_path / "unit.yaml", users, dest, {boxed.name: "mbox"})
    first = run_cli(["sweep", str(config), "--jobs", "3"])
    assert first.returncode == 0, first.stdout + first.stderr
    for user in (grows, stays):
        assert checked(report(dest, user)) == ("complete", 4, 0)
        assert f"0 read again and hashed; 4 {WRITTEN_LINE}" in html(dest, user)
        # Not read back, so not marked verified: a standalone verify reads these first.
        assert state_rows(dest, user.name, "SELECT count(*) FROM messages WHERE verified_at IS NULL") == [(4,)]
    # An mbox copy is one entry of a shared file: there is no file of its own to look at, so it is read again.
    assert checked(report(dest, boxed)) == ("complete", 0, 4)
    assert WRITTEN_LINE not in html(dest, boxed)

    client = imap_client_factory(grows)
    sample_mail.fill_mailbox(client, {"INBOX": letters(1, 90)})
    client.logout()
    second = run_cli(["sweep", str(config), "--jobs", "3"])
    assert second.returncode == 0, second.stdout + second.stderr
    # Only the one new copy is this run's; the four from the last sweep are read again.
    assert checked(report(dest, grows)) == ("complete", 1, 4)
    assert f"4 read again and hashed; 1 {WRITTEN_LINE}" in html(dest, grows)
    assert checked(report(dest, stays)) == ("complete", 0, 4)


def test_a_copy_damaged_after_the_sweep_is_found_by_verify_and_the_next_sweep(
        dovecot_server: DovecotServer, imap_client_factory: Callable[..., Any], tmp_path: Path) -> None:
    [user] = mailboxes(dovecot_server, 1, imap_client_factory)
    dest = tmp_path / "dest"
    config = sweep_config(tmp_path / "unit.yaml", [user], dest, {})
    assert run_cli(["sweep", str(config)]).returncode == 0
    assert checked(report(dest, user)) == ("complete", 4, 0)
    damaged = a_maildir_file(dest, user)
    data = damaged.read_bytes()
    damaged.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    assert damaged.stat().st_size == len(data)  # same size: only the bytes tell

    done = run_cli(["verify", user.name, *server_args(user), "--dest", str(dest)], password=user.password)
    assert done.returncode == ExitCode.CORRUPT, done.stdout + done.stderr
    assert checked(report(dest, user)) == ("corrupt", 0, 4)
    # A sweep that fetched nothing new reads every copy again too.
    again = run_cli(["sweep", str(config)])
    assert again.returncode == ExitCode.CORRUPT, again.stdout + again.stderr
    assert checked(report(dest, user)) == ("corrupt", 0, 4)


def test_a_written_copy_that_no_longer_matches_is_read_again(
        dovecot_server: DovecotServer, imap_client_factory: Callable[..., Any], tmp_path: Path) -> None:
    """The cheap check only stands for re-reading while the file is where the
    state says, a regular file of the recorded size: a copy cut short, or one
    replaced by a link, is read again and reported as it is."""
    [user] = mailboxes(dovecot_server, 1, imap_client_factory)
    dest = tmp_path / "dest"
    assert run_cli(["backup", user.name, *server_args(user), "--dest", str(dest)],
                   password=user.password).returncode == 0
    cur = account_dir(dest, user.name) / "mail" / "INBOX" / "cur"
    short, linked, _kept = sorted(cur.iterdir())
    short.write_bytes(short.read_bytes()[:-10])
    elsewhere = tmp_path / "elsewhere.eml"
    elsewhere.write_bytes(linked.read_bytes())
    linked.unlink()
    linked.symlink_to(elsewhere)
    settings = ConnectionSettings(ServerAddress.parse(user.server_arg), cafile=str(user.cafile))
    with ImapSession(settings, user.name, user.password) as session, open_archive(dest, user.name) as archive:
        every = WriteMark(last_row=0, taken_at="").written(archive.state)  # as if all were written just now
        assert len(every) == 4
        options = VerifyOptions(account=user.name, server=user.server_arg)
        result = verify_online(session, archive, options, written=every)
    [inbox] = [folder for folder in result.folders if folder.name == "INBOX"]
    assert inbox.status is Status.CORRUPT
    assert len(inbox.corrupt) == 2 and inbox.checked == 2 and inbox.checked_at_download == 1
    assert result.totals.checked_at_download == 2 and result.totals.ok == 2  # `kept` and the one in งานคดี
    reasons = sorted(entry.reason or "" for entry in inbox.corrupt)
    assert "symbolic link" in reasons[1] and "bytes where" in reasons[0], reasons


def test_write_mark_names_only_rows_inserted_and_saved_after_it(tmp_path: Path) -> None:
    """Moved to a new generation (updated in place) or promoted by recovery
    (saved by an earlier run): not this run's writes."""
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        folder = state.add_folder("INBOX", "/", "INBOX", "inbox")
        earlier = "2026-01-01T00:00:00+00:00"

        def message(uid: int, saved_at: str) -> StoredMessage:
            return StoredMessage(folder_id=folder.id, uidvalidity=1, uid=uid, size=10, sha256="0" * 64,
                                 internaldate=datetime(2026, 1, 1, tzinfo=UTC), flags=(), message_id=None,
                                 subject=None, sender=None, location=f"m{uid}", saved_at=saved_at)

        with state.transaction():
            state.insert_messages([message(1, earlier), message(2, earlier)])
        mark = WriteMark.take(state)
        with state.transaction():
            state.insert_messages([message(3, mark.taken_at), message(4, earlier)])  # 4: recovered from before
            state.move_to_generation(message(1, earlier), 2, 11, ())
        assert mark.written(state) == frozenset({(folder.id, 1, 3)})
    finally:
        state.close()


@pytest.mark.parametrize("last_row", [0, 10])
def test_an_empty_archive_has_nothing_written(tmp_path: Path, last_row: int) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        assert WriteMark.take(state).last_row == 0
        assert WriteMark(last_row, "").written(state) == frozenset()
    finally:
        state.close()


def test_a_verification_records_its_run_and_marks_without_waiting_for_the_disk(
        dovecot_server: DovecotServer, imap_client_factory: Callable[..., Any], tmp_path: Path) -> None:
    """The run's row and the verified_at marks are history and hints (a power
    cut losing them costs a re-read), so they commit with synchronous=NORMAL;
    everything else keeps FULL, and the connection is FULL again after."""
    [user] = mailboxes(dovecot_server, 1, imap_client_factory)
    dest = tmp_path / "dest"
    assert run_cli(["backup", user.name, *server_args(user), "--dest", str(dest), "--no-verify"],
                   password=user.password).returncode == 0
    statements: list[str] = []
    with open_archive(dest, user.name) as archive:
        archive.state.db.set_trace_callback(statements.append)
        options = VerifyOptions(account=user.name, server=user.server_arg)
        recorded = verify_recorded(archive, options, lambda: verify_offline(archive, options))
        archive.state.db.set_trace_callback(None)
        assert int(archive.state.db.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    assert recorded.result.totals.checked == 4
    sync = "FULL"
    writes = []
    for statement in statements:
        if statement.startswith("PRAGMA synchronous="):
            sync = statement.removeprefix("PRAGMA synchronous=")
        elif statement.startswith(("INSERT INTO runs", "UPDATE runs", "UPDATE messages SET verified_at")):
            writes.append((statement.split(" SET")[0].split(" (")[0], sync))
    assert sorted(set(writes)) == [("INSERT INTO runs", "NORMAL"), ("UPDATE messages", "NORMAL"),
                                   ("UPDATE runs", "NORMAL")]
