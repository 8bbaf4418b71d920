"""The state's question "does this folder hold live copies of another
UIDVALIDITY generation?", asked for every folder of every sync: right
answers, a cost that does not grow with the folder (schema version 3's
partial index), and the migration that adds the index to an existing archive.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailbackup.model import StoredMessage
from mailbackup.state.db import StateDB
from mailbackup.state.schema import MIGRATIONS

WHEN = datetime(2024, 1, 2, tzinfo=UTC)


def copies(folder_id: int, uidvalidity: int, uids: range) -> list[StoredMessage]:
    return [StoredMessage(folder_id=folder_id, uidvalidity=uidvalidity, uid=uid, size=10, sha256=f"{uid:064x}",
                          internaldate=WHEN, flags=(), message_id=None, subject=None, sender=None,
                          location=f"m{uidvalidity}-{uid}", saved_at="2024-01-02T00:00:00") for uid in uids]


def state_with_folder(path: Path) -> tuple[StateDB, int]:
    state = StateDB(path / "state.sqlite3")
    return state, state.add_folder("INBOX", "/", "INBOX", "inbox").id


def test_other_generation_lower_higher_and_gone(tmp_path: Path) -> None:
    state, folder = state_with_folder(tmp_path)
    with state.transaction():
        state.insert_messages(copies(folder, 20, range(1, 4)))
    assert not state.has_other_generation(folder, 20)
    assert state.has_other_generation(folder, 30)  # the stored generation is older than the server's
    assert state.has_other_generation(folder, 10)  # ... or newer (a server restored from backup)
    with state.transaction():
        state.mark_generation_gone(folder, 30, "2024-02-01T00:00:00")
    assert not state.has_other_generation(folder, 30)  # gone copies are no generation to match against
    assert not state.has_other_generation(folder + 1, 30)


def vm_steps(state: StateDB, query: Callable[[], object]) -> int:
    """SQLite virtual-machine instructions (in thousands) *query* takes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    state.db.set_progress_handler(count, 1000)
    try:
        query()
    finally:
        state.db.set_progress_handler(None, 0)
    return steps


def test_cost_does_not_grow_with_the_folder(tmp_path: Path) -> None:
    # A walk over 20,000 live copies takes several hundred thousand instructions (it took 0.26 s at
    # 100,000 messages); two index probes take a few dozen, whatever the size.
    state, folder = state_with_folder(tmp_path)
    with state.transaction():
        state.insert_messages(copies(folder, 20, range(1, 20_001)))
        state.insert_messages(copies(folder, 5, range(1, 2_001)))
    with state.transaction():
        state.mark_generation_gone(folder, 20, "2024-02-01T00:00:00")
    assert not state.has_other_generation(folder, 20)
    assert vm_steps(state, lambda: state.has_other_generation(folder, 20)) <= 1


def test_whether_a_folder_holds_mail_is_one_probe(tmp_path: Path) -> None:
    # Asked on every run, unchanged folders too: counting a 100,000-message folder's rows took 16 ms.
    state, folder = state_with_folder(tmp_path)
    assert not state.holds_messages(folder)
    with state.transaction():
        state.insert_messages(copies(folder, 20, range(1, 20_001)))
    assert state.holds_messages(folder)
    assert not state.holds_messages(folder + 1)
    assert vm_steps(state, lambda: state.holds_messages(folder)) <= 1
    assert vm_steps(state, lambda: state.count_messages(folder)) > 10  # what the run asked before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS read from /proc (Linux)")
def test_reading_a_big_folders_uids_holds_little_besides_them(tmp_path: Path) -> None:
    """Issue 18: a run reads a folder's UID index once; SQLite's default page
    cache (2 MB) kept what it read, at the peak of a run fetching new mail.
    Measured in a fresh process: growth of its peak RSS while it reads the
    stored and live UIDs of 100,000 copies (3.6 MB with the default cache,
    2.2 MB now, of which the array itself is 0.8 MB)."""
    state, folder = state_with_folder(tmp_path)
    with state.transaction():
        state.insert_messages(copies(folder, 20, range(1, 100_001)))
    probe = (
        "import sys\nfrom pathlib import Path\nfrom mailbackup.state.db import StateDB\n"
        "def peak():\n    with open('/proc/self/status') as status:\n"
        "        return next(int(line.split()[1]) for line in status if line.startswith('VmHWM'))\n"
        "state = StateDB(Path(sys.argv[1]))\nbefore = peak()\n"
        f"stored = state.stored_uids({folder}, 20)\nlive = state.active_uids({folder}, 20)\n"
        "print(peak() - before, len(stored))\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "state.sqlite3")], capture_output=True,
                          text=True, check=True)
    growth_kib, count = map(int, done.stdout.split())
    assert count == 100_000
    assert growth_kib < 3 * 1024, growth_kib


def test_version_2_archive_gains_the_index(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    old = sqlite3.connect(path)
    for version in (1, 2):
        old.executescript(MIGRATIONS[version])
    old.execute("INSERT INTO folders (id, name, local_path, path_key) VALUES (1, 'INBOX', 'INBOX', 'inbox')")
    old.execute("INSERT INTO messages (folder_id, uidvalidity, uid, size, sha256, internaldate, saved_at) "
                "VALUES (1, 9, 1, 10, 'x', '2024-01-02T00:00:00+00:00', '2024-01-02T00:00:00')")
    old.execute("PRAGMA user_version=2")
    old.commit()
    old.close()
    state = StateDB(path)
    assert state.db.execute("PRAGMA user_version").fetchone()[0] == 3
    indexes = {row[1] for row in state.db.execute("PRAGMA index_list(messages)")}
    assert "messages_live_generations" in indexes
    assert state.has_other_generation(1, 10) and not state.has_other_generation(1, 9)


def test_flags_of_a_few_uids_without_walking_the_folder(tmp_path: Path) -> None:
    state, folder = state_with_folder(tmp_path)
    with state.transaction():
        state.insert_messages(copies(folder, 20, range(1, 20_001)))
        state.set_flags(folder, 20, 7, ("\\Seen", "\\Flagged"))
        state.mark_gone(folder, 20, [8], "2024-02-01T00:00:00")
    asked = [7, 8, 19_999, 30_000]  # a gone one and one never stored are not answered
    assert state.flags_of_uids(folder, 20, asked) == {7: ("\\Seen", "\\Flagged"), 19_999: ()}
    whole = state.flags_of(folder, 20)
    assert state.flags_of_uids(folder, 20, range(1, 1_300)) == {uid: whole[uid] for uid in range(1, 1_300) if uid != 8}
    assert vm_steps(state, lambda: state.flags_of_uids(folder, 20, asked)) <= 1  # four probes, not 20,000 rows


def test_stored_and_active_uids(tmp_path: Path) -> None:
    """Ascending, this generation only; the live ones are the stored ones unless
    some are marked gone (a count decides, the rows are read only then)."""
    state, folder = state_with_folder(tmp_path)
    with state.transaction():
        state.insert_messages(copies(folder, 20, range(9, 0, -1)) + copies(folder, 30, range(1, 3)))
    stored = state.stored_uids(folder, 20)
    assert list(stored) == list(range(1, 10))
    assert state.active_uids(folder, 20, stored) is stored
    assert state.active_uids(folder, 20) == stored
    with state.transaction():
        state.mark_gone(folder, 20, [2, 7], "2024-02-01T00:00:00")
    assert list(state.stored_uids(folder, 20)) == list(range(1, 10))
    assert list(state.active_uids(folder, 20, stored)) == [1, 3, 4, 5, 6, 8, 9]
    assert list(state.active_uids(folder, 30)) == [1, 2] and len(state.stored_uids(folder, 40)) == 0
