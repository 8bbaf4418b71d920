"""Which state commits wait for the disk.  Pending rows and stored messages
are committed with synchronous=FULL (the crash-safety order of docs/design.md);
a folder's bookkeeping after its messages (UIDNEXT, last sync, gone marks,
forgotten failures) commits without its own fsync, and the connection is
back to FULL afterwards, whatever happened inside.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbackup.state.db import StateDB

FULL, NORMAL = 2, 1


def synchronous(state: StateDB) -> int:
    return int(state.db.execute("PRAGMA synchronous").fetchone()[0])


def test_bookkeeping_commits_without_fsync_then_full_again(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    folder = state.add_folder("INBOX", "/", "INBOX", "inbox")
    assert synchronous(state) == FULL
    with state.bookkeeping():
        assert synchronous(state) == NORMAL
        state.update_folder(folder.id, uidnext=42)
    assert synchronous(state) == FULL
    with state.transaction():
        assert synchronous(state) == FULL
    state.close()
    assert StateDB(tmp_path / "state.sqlite3").folder("INBOX").uidnext == 42  # type: ignore[union-attr]


def test_bookkeeping_that_fails_rolls_back_and_restores_full(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    folder = state.add_folder("INBOX", "/", "INBOX", "inbox")
    with pytest.raises(RuntimeError), state.bookkeeping():
        state.update_folder(folder.id, uidnext=7)
        raise RuntimeError("stop")
    assert synchronous(state) == FULL
    assert state.folder("INBOX").uidnext is None  # type: ignore[union-attr]
