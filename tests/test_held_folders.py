"""Small new folders stored together (sync/commit.py): a first backup holds
the messages of up to 64 small folders and stores them with one pending
commit, one durability step and one message commit.  The crash contract is
the one-batch contract, folder by folder: whatever stops a run, each folder
is either saved with its bookkeeping or looks never backed up (so the next
run fetches it), and the next run ends with every message exactly once.

All against Dovecot; the link that dies for good is `scripts/netproxy.py`."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import sample_mail
from helpers import (
    archive_contents,
    assert_state_matches_disk,
    backup,
    run_cli,
    server_contents,
    state_rows,
)

from mailbackup.errors import ExitCode

FOLDERS = [f"คดีแพ่ง/{number:02d}" for number in range(1, 25)]


def letters(count: int, start: int) -> list[bytes]:
    return [sample_mail.thai_letter(start + i, sample_mail._DEFAULT_DATE) for i in range(count)]


@pytest.fixture
def small_folders(imap_user, imap_client_factory):
    """INBOX and 24 Thai-named folders of 3 messages each: every one comes whole with its listing."""
    client = imap_client_factory(imap_user)
    mailbox = {"INBOX": letters(3, 0)} | {name: letters(3, 10 * number) for number, name in
                                          enumerate(FOLDERS, start=1)}
    sample_mail.fill_mailbox(client, mailbox)
    return imap_user, client


def folder_states(dest: Path, account: str) -> dict[str, tuple[int | None, int]]:
    """Per folder: the UIDNEXT its bookkeeping recorded (None: never finished) and the messages saved."""
    rows = state_rows(dest, account, "SELECT name, uidnext, (SELECT count(*) FROM messages WHERE folder_id = "
                                     "folders.id) FROM folders")
    return {name: (uidnext, saved) for name, uidnext, saved in rows}


def assert_saved_or_untouched(dest: Path, account: str) -> int:
    """Each folder is saved whole with its bookkeeping, or holds nothing and no bookkeeping; the messages saved."""
    assert_state_matches_disk(dest, account)
    saved = 0
    for name, (uidnext, count) in folder_states(dest, account).items():
        assert (uidnext is not None and count == 3) or (uidnext is None and count == 0), (name, uidnext, count)
        saved += count
    return saved


def assert_exactly_once(dest: Path, account: str, client) -> None:
    stored = archive_contents(dest, account)
    for name in ["INBOX", *FOLDERS]:
        server = server_contents(client, name)
        assert {uid: m.body for uid, m in stored[name].items()} == {uid: b for uid, (b, _, _) in server.items()}


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
@pytest.mark.parametrize(("point", "fetched_again"), [("after-pending=1", 75), ("after-write=1", 0)])
def test_a_run_killed_while_storing_held_folders_leaves_them_to_the_next(small_folders, tmp_path, fmt, point,
                                                                         fetched_again):
    """Killed before the bytes are written: all 75 are fetched again.  Killed once they
    are durable but not committed: the next run finds them whole and keeps them."""
    user, client = small_folders

    killed = backup(user, tmp_path, "--format", fmt, "--connections", "1", env={"MAILBACKUP_FAULTS": point})

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    pending = state_rows(tmp_path, user.name, "SELECT count(DISTINCT folder_id), count(*) FROM pending")[0]
    assert pending == (25, 75)  # all of them were stored as one group, and all are left to recover
    assert assert_saved_or_untouched(tmp_path, user.name) == 0  # none looks finished: none is skipped next

    again = backup(user, tmp_path, "--format", fmt)

    assert again.returncode == 0, again.stderr
    assert f"saved {fetched_again} messages" in again.stdout
    assert assert_saved_or_untouched(tmp_path, user.name) == 75
    assert state_rows(tmp_path, user.name, "SELECT count(*) FROM pending")[0][0] == 0
    assert_exactly_once(tmp_path, user.name, client)


def test_held_folders_are_saved_when_the_server_goes_away_for_good(small_folders, tmp_path):
    """The link dies after a few folders and the server cannot be reached again: the run
    ends with the connection error, and the folders fetched whole before it are saved."""
    from netproxy import Proxy

    user, client = small_folders
    proxy = Proxy("127.0.0.1", user.port, cut_after_bytes=60_000).start()
    stopped = threading.Event()

    def take_the_server_away() -> None:
        while proxy.cuts == 0 and not stopped.is_set():
            time.sleep(0.01)
        proxy.stop()

    watcher = threading.Thread(target=take_the_server_away, daemon=True)
    watcher.start()
    try:
        result = run_cli(["backup", user.name, "--server", f"localhost:{proxy.port}", "--cafile", str(user.cafile),
                          "--dest", str(tmp_path), "--connections", "1", "--retries", "1", "--retry-delay", "0.3"],
                         password=user.password)
    finally:
        stopped.set()
        watcher.join()
        proxy.stop()

    assert result.returncode == ExitCode.CONNECTION, result.stderr
    saved = assert_saved_or_untouched(tmp_path, user.name)
    assert 0 < saved < 75  # fewer than the 64 a group holds: without saving them here, nothing would be
    finished = [name for name, (uidnext, _count) in folder_states(tmp_path, user.name).items() if uidnext]
    assert len(finished) == saved // 3

    again = backup(user, tmp_path)

    assert again.returncode == 0, again.stderr
    assert f"saved {75 - saved} messages" in again.stdout
    assert_exactly_once(tmp_path, user.name, client)
