"""Which stored copies a backup of this very run wrote: a mark taken before
the backup, read after it, while the same process holds the archive lock.

A row of `messages` is keyed by `id INTEGER PRIMARY KEY` (the rowid) with no
AUTOINCREMENT: SQLite gives a new row one more than the largest id in the
table (or, once that is the largest integer, a random unused one).  So a row
whose id is above the largest id seen at the mark was inserted after it; a
random id below the mark only makes a copy look older than it is, the safe
side.  Moving a copy to a new UIDVALIDITY generation (`move_to_generation`)
and changing its flags update the row in place: it keeps its id, and is not
taken as written now.  A copy that recovery promoted from an earlier killed
run is inserted now but was saved then: `saved_at` before the mark leaves it
out too.

Public API: `WriteMark`, `WriteMark.take(state)`, `WriteMark.written(state)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailbackup.state.db import StateDB
from mailbackup.state.rows import now_iso

MessageKey = tuple[int, int, int]  # folder id, UIDVALIDITY, UID


@dataclass(frozen=True)
class WriteMark:
    """Where the `messages` table stood before a backup began."""

    last_row: int
    taken_at: str  # now_iso(), the same clock and format as saved_at

    @classmethod
    def take(cls, state: StateDB) -> WriteMark:
        row = state.db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()
        return cls(last_row=int(row[0]), taken_at=now_iso())

    def written(self, state: StateDB) -> frozenset[MessageKey]:
        """The copies inserted since the mark and saved since it: what the
        backup between wrote and fsynced itself (its commit order: store.write
        fsyncs before the row is committed)."""
        rows = state.db.execute(
            "SELECT folder_id, uidvalidity, uid FROM messages WHERE id > ? AND saved_at >= ?",
            (self.last_row, self.taken_at))
        return frozenset((int(folder), int(validity), int(uid)) for folder, validity, uid in rows)
