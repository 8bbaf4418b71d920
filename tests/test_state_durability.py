"""Which state commits wait for the disk.  Pending rows and stored messages
are committed with synchronous=FULL (the crash-safety order of docs/design.md);
a folder's bookkeeping after its messages (UIDNEXT, last sync, gone marks,
forgotten failures) commits without its own fsync, and the connection is
back to FULL afterwards, whatever happened inside.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailbackup.errors import StorageError
from mailbackup.state.db import StateDB
from mailbackup.state.schema import MIGRATIONS, SCHEMA_VERSION

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


def test_a_schema_upgrade_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The migrations a file needs are one transaction (a new archive's whole
    schema is one commit, one fsync): one that fails leaves the file as it was."""
    path = tmp_path / "state.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[1])
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    monkeypatch.setitem(MIGRATIONS, SCHEMA_VERSION, "CREATE TABLE broken (; ")
    with pytest.raises(StorageError, match="cannot use state file"):
        StateDB(path)
    monkeypatch.undo()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 1
    check.close()
    state = StateDB(path)  # and the upgrade goes through once the migrations can
    assert state.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    state.close()
