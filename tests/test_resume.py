"""Crash safety: a backup killed at any moment (SIGKILL between any two
writes, Ctrl-C) leaves an archive from which the next run completes with
every message exactly once, byte for byte, and the state consistent."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sample_mail
from helpers import (
    REPO,
    archive_contents,
    assert_state_matches_disk,
    backup,
    server_args,
    server_contents,
    state_rows,
)

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode
from mailbackup.store import mboxrd

BATCH = ["--batch-size", "40"]


def fill_many(client, folder: str, count: int, start: int = 0) -> None:
    when = sample_mail._DEFAULT_DATE
    if folder != "INBOX":
        client.create_folder(folder)
    for offset in range(0, count, 100):
        batch = [{"msg": sample_mail.thai_letter(start + i, when), "flags": (b"\\Seen",) if i % 3 else ()}
                 for i in range(offset, min(count, offset + 100))]
        client.multiappend(folder, batch)


@pytest.fixture
def big_mailbox(imap_user, imap_client_factory):
    client = imap_client_factory(imap_user)
    fill_many(client, "INBOX", 1200)
    fill_many(client, "งานคดี/2566", 400, start=5000)
    client.multiappend("INBOX", [{"msg": sample_mail.big_message(9 * 1024 * 1024, seed=7)}])
    return imap_user, client


def assert_exactly_once(dest: Path, user, client) -> None:
    stored = archive_contents(dest, user.name)
    for folder in ("INBOX", "งานคดี/2566"):
        server = server_contents(client, folder)
        assert {uid: m.body for uid, m in stored[folder].items()} == {uid: b for uid, (b, _, _) in server.items()}
    with open_archive(dest, user.name, lock=False, create=False) as archive:
        for folder in archive.state.folders():
            if archive.store.format == "maildir":
                base = archive.store.resolve(folder.local_path)
                assert len(list((base / "cur").iterdir())) == archive.state.count_messages(folder.id)
                assert not list((base / "tmp").iterdir())
            else:
                path = archive.store.mbox_path(folder.local_path)  # type: ignore[attr-defined]
                assert path.stat().st_size == folder.mbox_committed
                with open(path, "rb") as handle:
                    assert len(list(mboxrd.iter_entries(handle))) == archive.state.count_messages(folder.id)
    assert state_rows(dest, user.name, "SELECT count(*) FROM pending")[0][0] == 0
    spool = account_dir(dest, user.name) / "tmp"  # large bodies half-received when a run was killed
    assert not spool.exists() or not list(spool.iterdir())


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_killed_at_many_points_completes_exactly_once(big_mailbox, tmp_path, fmt):
    user, client = big_mailbox
    crash_points = ["after-pending=1", "after-write=2", "after-write=9", "mid-large=1", "after-pending=4",
                    "after-write=1"]
    for spec in crash_points:  # one connection: the Nth batch is the same batch every time
        killed = backup(user, tmp_path, "--format", fmt, *BATCH, "--connections", "1",
                        env={"MAILBACKUP_FAULTS": spec})
        assert killed.returncode == -signal.SIGKILL, (spec, killed.stderr)
        assert_state_matches_disk(tmp_path, user.name)
    rng = random.Random(fmt)
    for _ in range(3):  # and at moments nobody chose, both folders on their own connections at once
        process = subprocess.Popen(
            [sys.executable, "-m", "mailbackup", "backup", user.name, *server_args(user), "--dest", str(tmp_path),
             *BATCH], env={**_env(), "MAILBACKUP_PASSWORD": user.password}, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2))
        process.kill()
        process.wait()
        assert_state_matches_disk(tmp_path, user.name)

    final = backup(user, tmp_path, *BATCH)

    assert final.returncode == 0, final.stderr
    assert_exactly_once(tmp_path, user, client)


def test_ctrl_c_stops_after_the_batch_and_resumes(big_mailbox, tmp_path):
    user, client = big_mailbox
    process = subprocess.Popen(
        [sys.executable, "-m", "mailbackup", "backup", user.name, *server_args(user), "--dest", str(tmp_path),
         "--batch-size", "20"], env={**_env(), "MAILBACKUP_PASSWORD": user.password}, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = account_dir(tmp_path, user.name) / "state.sqlite3"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until some mail is committed
        if state.exists() and _committed(tmp_path, user.name) >= 60:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Stopping after the current batch" in err and "run the same command to continue" in err
    saved = _committed(tmp_path, user.name)
    assert 0 < saved < 1601
    assert f"saved {saved} messages" in out
    assert_state_matches_disk(tmp_path, user.name)

    final = backup(user, tmp_path)
    assert final.returncode == 0, final.stderr
    assert_exactly_once(tmp_path, user, client)


def _committed(dest: Path, account: str) -> int:
    try:
        return int(state_rows(dest, account, "SELECT count(*) FROM messages")[0][0])
    except Exception:  # the state may be mid-creation
        return 0


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("MAILBACKUP_FAULTS", None)
    return env


def test_an_mbox_cut_short_from_outside_is_repaired_from_the_server(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.thai_letter(i, sample_mail._DEFAULT_DATE)
                                                for i in range(10)]})
    assert backup(imap_user, tmp_path, "--format", "mbox").returncode == 0
    mbox = account_dir(tmp_path, imap_user.name) / "mail" / "INBOX.mbox"
    data = mbox.read_bytes()
    mbox.write_bytes(data[:-100])  # a disk problem or another program cut the last message

    again = backup(imap_user, tmp_path)

    assert again.returncode == 1, again.stderr  # a warning the officer must see
    assert "shorter than recorded; 1 messages were lost locally and are fetched again" in again.stderr
    assert b"\x00" not in mbox.read_bytes()  # never padded
    assert_state_matches_disk(tmp_path, imap_user.name)
    stored = archive_contents(tmp_path, imap_user.name)["INBOX"]
    assert {uid: m.body for uid, m in stored.items()} == {
        uid: body for uid, (body, _, _) in server_contents(client, "INBOX").items()}


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_repair_fetches_damaged_copies_again(imap_user, imap_client_factory, tmp_path, fmt):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.thai_letter(i, sample_mail._DEFAULT_DATE)
                                                for i in range(8)]})
    assert backup(imap_user, tmp_path, "--format", fmt).returncode == 0
    with open_archive(tmp_path, imap_user.name, lock=False, create=False) as archive:
        folder = archive.state.folder("INBOX")
        assert folder is not None
        rows = list(archive.state.messages(folder.id))
        if fmt == "maildir":
            archive.store.find(folder.local_path, rows[2]).unlink()  # type: ignore[attr-defined]
            damaged = archive.store.find(folder.local_path, rows[5])  # type: ignore[attr-defined]
            damaged.write_bytes(damaged.read_bytes().replace(b"Subject", b"Subjekt", 1))
        else:
            path = archive.store.mbox_path(folder.local_path)  # type: ignore[attr-defined]
            data = bytearray(path.read_bytes())
            for row in (rows[2], rows[5]):
                data[row.mbox_offset + row.mbox_length - 30] ^= 0x20  # a flipped bit inside the entry
            path.write_bytes(bytes(data))

    repaired = backup(imap_user, tmp_path, "--repair")

    # Every damaged copy was fetched again whole: done, and it says which.
    assert repaired.returncode == 0, repaired.stderr
    assert f"Repaired damaged copies (2): INBOX UID {rows[2].uid}, INBOX UID {rows[5].uid}" in repaired.stdout
    assert "damaged copies found" not in repaired.stderr
    assert "saved 2 messages" in repaired.stdout
    assert_state_matches_disk(tmp_path, imap_user.name)
    assert_exactly_once_in(tmp_path, imap_user, client, "INBOX")
    assert backup(imap_user, tmp_path, "--repair").returncode == 0  # nothing left to repair


def test_repair_that_cannot_fetch_a_copy_again_still_warns(imap_user, imap_client_factory, tmp_path):
    """A damaged copy of mail the server no longer has cannot be repaired: exit 1 and say so."""
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.thai_letter(i, sample_mail._DEFAULT_DATE)
                                                for i in range(4)]})
    assert backup(imap_user, tmp_path).returncode == 0
    client.select_folder("INBOX")
    gone_uid, damaged_uid = sorted(client.search("ALL"))[:2]
    client.delete_messages([gone_uid])
    client.expunge()
    assert backup(imap_user, tmp_path).returncode == 0  # the archive keeps it, marked gone from the server
    with open_archive(tmp_path, imap_user.name, lock=False, create=False) as archive:
        folder = archive.state.folder("INBOX")
        assert folder is not None
        for row in archive.state.messages(folder.id):
            if row.uid in (gone_uid, damaged_uid):
                path = archive.store.find(folder.local_path, row)  # type: ignore[attr-defined]
                path.write_bytes(path.read_bytes().replace(b"Subject", b"Subjekt", 1))

    repaired = backup(imap_user, tmp_path, "--repair")

    assert repaired.returncode == 1, repaired.stderr
    assert "2 damaged copies found; 1 fetched again, 1 no longer on the server (kept as they are)" in repaired.stderr
    assert f"Repaired damaged copies (1): INBOX UID {damaged_uid}" in repaired.stdout


def assert_exactly_once_in(dest: Path, user, client, folder: str) -> None:
    stored = archive_contents(dest, user.name)[folder]
    server = server_contents(client, folder)
    assert {uid: m.body for uid, m in stored.items()} == {uid: b for uid, (b, _, _) in server.items()}
    with open_archive(dest, user.name, lock=False, create=False) as archive:
        record = archive.state.folder(folder)
        assert record is not None
        if archive.store.format == "mbox":
            path = archive.store.mbox_path(record.local_path)  # type: ignore[attr-defined]
            with open(path, "rb") as handle:
                assert len(list(mboxrd.iter_entries(handle))) == len(server)
        else:
            assert len(list((archive.store.resolve(record.local_path) / "cur").iterdir())) == len(server)
