"""The `runs` table: when each backup, verify or restore ran and how it
ended, so reports can say when the last good backup was."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from mailbackup.state.rows import now_iso


class RunLog:
    """StateDB's runs (a mixin: it uses StateDB's connection)."""

    db: sqlite3.Connection

    def start_run(self, command: str) -> int:
        cursor = self.db.execute("INSERT INTO runs (command, started_at) VALUES (?, ?)", (command, now_iso()))
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, messages: int, byte_count: int, detail: str = "") -> None:
        self.db.execute(
            "UPDATE runs SET finished_at=?, status=?, messages=?, bytes=?, detail=? WHERE id=?",
            (now_iso(), status, messages, byte_count, detail, run_id),
        )

    def last_run_in(self, command: str, statuses: Iterable[str]) -> sqlite3.Row | None:
        """The latest finished run of `command` whose status is one of `statuses`."""
        wanted = tuple(statuses)
        marks = ", ".join("?" * len(wanted))
        row: sqlite3.Row | None = self.db.execute(
            f"SELECT * FROM runs WHERE command=? AND finished_at IS NOT NULL AND status IN ({marks}) "
            "ORDER BY id DESC LIMIT 1", (command, *wanted),
        ).fetchone()
        return row
