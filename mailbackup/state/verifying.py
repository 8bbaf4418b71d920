"""What verification asks of and tells the state in bulk (state/db.py keeps
the row-at-a-time questions): the stored sizes of a folder's generation,
and `verified_at` for a batch of copies in one statement.

Public API: `stored_sizes(state, folder_id, uidvalidity)`,
`set_verified_many(state, keys, when)`.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailbackup.state.db import StateDB
from mailbackup.state.written import MessageKey


def stored_sizes(state: StateDB, folder_id: int, uidvalidity: int) -> dict[int, int]:
    """UID → recorded size of every copy of one generation (gone ones too):
    what the server's list is compared with, without building whole rows."""
    rows = state.db.execute("SELECT uid, size FROM messages WHERE folder_id=? AND uidvalidity=?",
                            (folder_id, uidvalidity))
    return {int(uid): int(size) for uid, size in rows}


def set_verified_many(state: StateDB, keys: Iterable[MessageKey], when: str) -> None:
    """`StateDB.set_verified` for many copies; the caller holds the transaction."""
    state.db.executemany("UPDATE messages SET verified_at=? WHERE folder_id=? AND uidvalidity=? AND uid=?",
                         ((when, *key) for key in keys))
