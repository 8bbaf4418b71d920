"""The state database of one account archive: folders, stored messages,
pending batches and failures; runs (runs.py) and restore uploads
(uploads.py) are mixed into `StateDB`, rows convert in rows.py.

Durability rule: WAL journal with ``synchronous=FULL``, so a commit is on disk
when `commit()` returns; the engine commits `pending` before writing mail
and the messages after the mail is fsynced.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mailbackup import __version__
from mailbackup.errors import StateError, StorageError
from mailbackup.i18n import _
from mailbackup.model import StoredMessage
from mailbackup.state.rows import insert_sql, message_from_row, message_values, now_iso, split_flags
from mailbackup.state.runs import RunLog
from mailbackup.state.schema import MIGRATIONS, SCHEMA_VERSION
from mailbackup.state.uploads import UploadLedger
from mailbackup.text import system_error
from mailbackup.uids import SortedUids

STATE_FILE = "state.sqlite3"
UID_CHUNK = 500  # UIDs per `IN (...)`: well under SQLite's limit of bound parameters
# A run reads a folder's UID index once and writes a batch's rows at a time: pages are rarely
# read twice, and SQLite's default 2 MB cache was 2 MB of a 100,000-message run's peak
# (inserting 2,000 rows into that table in 40 commits: the same CPU with 512 KB).
PAGE_CACHE_KIB = 512


def _first_column(_cursor: sqlite3.Cursor, row: tuple[int, ...]) -> int:
    return row[0]


@dataclass(frozen=True)
class FolderRecord:
    id: int
    name: str
    delimiter: str | None
    local_path: str
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    server_messages: int | None
    generation: int
    mbox_committed: int
    last_sync: str | None
    gone_at: str | None


class StateDB(RunLog, UploadLedger):
    """One archive's state: folders, stored messages, pending batches and
    failures here; runs (runs.py) and restore uploads (uploads.py) mixed in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._names: set[str] | None = None  # every folder name in the table, read at the first lookup
        self._writer = _writer_lock(path)
        existed = path.exists()
        try:
            if not existed:
                _create_private(path)
            self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            self._migrate()
        except OSError as exc:
            raise StorageError(_("cannot create state file {path}: {error}").format(
                path=path, error=system_error(exc))) from None
        except sqlite3.DatabaseError as exc:
            # A full disk or a read-only directory is not damage: moving the file aside would be wrong.
            if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
                raise StorageError(_("cannot use state file {path}: {error}").format(path=path, error=exc),
                                   hint=_("check free space and permissions of the archive directory")) from None
            raise StateError(
                _("state file {path} is damaged: {error}").format(path=path, error=exc),
                hint=_("keep it for inspection: rename the directory {directory} (its mail files stay readable) and "
                       "run the backup again, which builds a new archive").format(directory=path.parent),
            ) from None

    def close(self) -> None:
        self.db.close()

    # -- schema -------------------------------------------------------
    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                _("state file {path} was written by a newer mailbackup (schema {version}, this one reads {known})")
                .format(path=self.path, version=version, known=SCHEMA_VERSION),
                hint=_("upgrade mailbackup (pip install -U mailbackup)"),
            )
        if version < SCHEMA_VERSION:
            with self.transaction():  # one commit (one fsync) for a new file's whole schema, all or nothing
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    self._apply(target)

    def _apply(self, target: int) -> None:
        for statement in MIGRATIONS[target].split(";"):
            if statement.strip():
                self.db.execute(statement)
        self.db.execute(f"PRAGMA user_version={target}")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('written_by', ?)", (__version__,))

    def transaction(self) -> _Transaction:
        return _Transaction(self.db, self._writer)

    def bookkeeping(self) -> _Transaction:
        """A transaction whose commit does not wait for the disk: for what a run
        may lose to a power cut and simply redo (a folder's UIDNEXT and last
        sync, forgotten failures).  WAL keeps commits in order, so a crash
        loses only a tail of them, and the next ordinary commit (the next
        batch's pending rows, the run's end) makes them durable with its own."""
        return _Transaction(self.db, self._writer, durable=False)

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key=?", (key,))

    def count_distinct_contents(self) -> int:
        """Messages still on the server, counted once however many folders hold them (same SHA-256)."""
        row = self.db.execute("SELECT count(DISTINCT sha256) FROM messages WHERE gone_at IS NULL").fetchone()
        return int(row[0])

    def copies_elsewhere(self) -> dict[int, int]:
        """Per folder id: its messages (still on the server) that another folder holds too, by SHA-256
        (Gmail's labels; a message filed twice)."""
        rows = self.db.execute(
            "WITH shared AS (SELECT sha256 FROM messages WHERE gone_at IS NULL GROUP BY sha256"
            " HAVING count(DISTINCT folder_id) > 1)"
            " SELECT folder_id, count(*) FROM messages JOIN shared USING (sha256) WHERE gone_at IS NULL"
            " GROUP BY folder_id")
        return {int(folder_id): int(count) for folder_id, count in rows}

    # -- folders ------------------------------------------------------
    def folders(self) -> list[FolderRecord]:
        return [_folder(row) for row in self.db.execute("SELECT * FROM folders ORDER BY name")]

    def folder(self, name: str) -> FolderRecord | None:
        # A first run asks for 10,000 names it does not hold (a profile: 3 lookups per new folder);
        # folders are never deleted or renamed, and this object adds the rows it writes itself;
        # rows other handles add (a run's other --connections) are learnt by `forget_folder_names`.
        if self._names is None:
            self._names = {row[0] for row in self.db.execute("SELECT name FROM folders")}
        if name not in self._names:
            return None
        row = self.db.execute("SELECT * FROM folders WHERE name=?", (name,)).fetchone()
        return _folder(row) if row else None

    def forget_folder_names(self) -> None:
        """Other handles on this file added folders: read the names again at the next lookup."""
        self._names = None

    def folder_by_id(self, folder_id: int) -> FolderRecord:
        return _folder(self.db.execute("SELECT * FROM folders WHERE id=?", (folder_id,)).fetchone())

    def path_keys(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT path_key FROM folders")}

    def add_folder(self, name: str, delimiter: str | None, local_path: str, path_key: str) -> FolderRecord:
        # Bookkeeping: nothing refers to the row until the folder's pending rows, whose durable commit
        # carries it to disk too; lost before that, the folder is simply added again.  One statement
        # commits by itself (autocommit), and RETURNING saves reading the row back.
        with self._writer:
            self.db.execute("PRAGMA synchronous=NORMAL")
            try:
                row = self.db.execute(
                    "INSERT INTO folders (name, delimiter, local_path, path_key) VALUES (?, ?, ?, ?) RETURNING *",
                    (name, delimiter, local_path, path_key),
                ).fetchone()
            finally:
                self.db.execute("PRAGMA synchronous=FULL")
        if self._names is not None:
            self._names.add(name)
        return _folder(row)

    def update_folder(self, folder_id: int, **values: object) -> None:
        allowed = {"uidvalidity", "uidnext", "highestmodseq", "server_messages", "generation",
                   "mbox_committed", "last_sync", "gone_at", "delimiter"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown folder fields {unknown}")
        assignments = ", ".join(f"{key}=?" for key in values)
        self.db.execute(f"UPDATE folders SET {assignments} WHERE id=?", (*values.values(), folder_id))

    # -- messages -----------------------------------------------------
    def messages(self, folder_id: int, *, include_gone: bool = True) -> Iterator[StoredMessage]:
        sql = "SELECT * FROM messages WHERE folder_id=?" + ("" if include_gone else " AND gone_at IS NULL")
        for row in self.db.execute(sql + " ORDER BY uidvalidity, uid", (folder_id,)):
            yield message_from_row(row)

    def active_uids(self, folder_id: int, uidvalidity: int, stored: SortedUids | None = None) -> SortedUids:
        """The stored UIDs not marked gone.  Given `stored` (this generation's
        `stored_uids`), a count over the partial index of live copies decides
        first whether they are all live, as they usually are: reading a
        100,000-message folder's live rows cost 0.09 s, the count 0.015 s."""
        if stored is not None:
            live = self.db.execute("SELECT count(*) FROM messages WHERE folder_id=? AND uidvalidity=? "
                                   "AND gone_at IS NULL", (folder_id, uidvalidity)).fetchone()[0]
            if live == len(stored):
                return stored
        return self._uids("SELECT uid FROM messages WHERE folder_id=? AND uidvalidity=? AND gone_at IS NULL "
                          "ORDER BY uid", (folder_id, uidvalidity))

    def stored_uids(self, folder_id: int, uidvalidity: int) -> SortedUids:
        return self._uids("SELECT uid FROM messages WHERE folder_id=? AND uidvalidity=? ORDER BY uid",
                          (folder_id, uidvalidity))

    def _uids(self, sql: str, parameters: tuple[int, ...]) -> SortedUids:
        cursor = self.db.cursor()
        cursor.row_factory = _first_column  # no Row object per UID: a big folder has 100,000
        return SortedUids(cursor.execute(sql, parameters))

    def count_messages(self, folder_id: int) -> int:
        return int(self.db.execute("SELECT count(*) FROM messages WHERE folder_id=?", (folder_id,)).fetchone()[0])

    def holds_messages(self, folder_id: int) -> bool:
        """Whether any copy of the folder is stored: one probe of an index, where
        `count_messages` walks all of them (100,000 rows: 2 MB of SQLite's page
        cache and ~10 ms, on every run, to learn whether the answer is zero)."""
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM messages WHERE folder_id=?)",
                                    (folder_id,)).fetchone()[0])

    def flags_of(self, folder_id: int, uidvalidity: int) -> dict[int, tuple[str, ...]]:
        rows = self.db.execute(
            "SELECT uid, flags FROM messages WHERE folder_id=? AND uidvalidity=? AND gone_at IS NULL",
            (folder_id, uidvalidity),
        )
        return {row[0]: split_flags(row[1]) for row in rows}

    def flags_of_uids(self, folder_id: int, uidvalidity: int, uids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """`flags_of` for a few UIDs (what CHANGEDSINCE reported), by the primary index, not a folder walk."""
        wanted = sorted(uids)
        found: dict[int, tuple[str, ...]] = {}
        for start in range(0, len(wanted), UID_CHUNK):
            chunk = wanted[start:start + UID_CHUNK]
            rows = self.db.execute(
                f"SELECT uid, flags FROM messages WHERE folder_id=? AND uidvalidity=? AND gone_at IS NULL "
                f"AND uid IN ({', '.join('?' * len(chunk))})", (folder_id, uidvalidity, *chunk))
            found.update((row[0], split_flags(row[1])) for row in rows)
        return found

    def message(self, folder_id: int, uidvalidity: int, uid: int) -> StoredMessage | None:
        row = self.db.execute("SELECT * FROM messages WHERE folder_id=? AND uidvalidity=? AND uid=?",
                              (folder_id, uidvalidity, uid)).fetchone()
        return message_from_row(row) if row else None

    def mbox_end_within(self, folder_id: int, length: int) -> int:
        """End of the last recorded mbox entry that lies wholly within `length` bytes."""
        row = self.db.execute("SELECT coalesce(max(mbox_offset + mbox_length), 0) FROM messages WHERE folder_id=? "
                              "AND mbox_offset + mbox_length <= ?", (folder_id, length)).fetchone()
        return int(row[0])

    def forget_mbox_tail(self, folder_id: int, length: int) -> tuple[int, int]:
        """Drop the rows of entries that end beyond `length` (an mbox cut short
        from outside) so they are fetched again; returns (rows dropped, new
        committed length)."""
        lost = "SELECT id FROM messages WHERE folder_id=? AND mbox_offset + mbox_length > ?"
        self.db.execute(f"DELETE FROM uploads WHERE message_row IN ({lost})", (folder_id, length))
        cursor = self.db.execute(
            "DELETE FROM messages WHERE folder_id=? AND mbox_offset + mbox_length > ?", (folder_id, length))
        end = self.db.execute("SELECT coalesce(max(mbox_offset + mbox_length), 0) FROM messages WHERE folder_id=?",
                              (folder_id,)).fetchone()[0]
        self.db.execute("UPDATE folders SET mbox_committed=?, uidnext=NULL WHERE id=?", (end, folder_id))
        return cursor.rowcount, int(end)

    def forget_messages(self, messages: Iterable[StoredMessage]) -> None:
        """Drop rows whose local copy was damaged, so the server's copy is fetched again."""
        keys = [(m.folder_id, m.uidvalidity, m.uid) for m in messages]
        self.db.executemany("DELETE FROM uploads WHERE message_row IN (SELECT id FROM messages "
                            "WHERE folder_id=? AND uidvalidity=? AND uid=?)", keys)
        self.db.executemany("DELETE FROM messages WHERE folder_id=? AND uidvalidity=? AND uid=?", keys)
        for folder_id in {key[0] for key in keys}:
            self.db.execute("UPDATE folders SET uidnext=NULL WHERE id=?", (folder_id,))

    def set_mbox_places(self, messages: Iterable[StoredMessage]) -> None:
        self.db.executemany(
            "UPDATE messages SET mbox_offset=?, mbox_length=? WHERE folder_id=? AND uidvalidity=? AND uid=?",
            ((m.mbox_offset, m.mbox_length, m.folder_id, m.uidvalidity, m.uid) for m in messages))

    def insert_messages(self, messages: Iterable[StoredMessage]) -> None:
        self.db.executemany(insert_sql("messages"), (message_values(message) for message in messages))

    def set_flags(self, folder_id: int, uidvalidity: int, uid: int, flags: tuple[str, ...]) -> None:
        self.db.execute("UPDATE messages SET flags=? WHERE folder_id=? AND uidvalidity=? AND uid=?",
                        (" ".join(flags), folder_id, uidvalidity, uid))

    def mark_gone(self, folder_id: int, uidvalidity: int, uids: Iterable[int], when: str) -> int:
        cursor = self.db.executemany(
            "UPDATE messages SET gone_at=? WHERE folder_id=? AND uidvalidity=? AND uid=? AND gone_at IS NULL",
            ((when, folder_id, uidvalidity, uid) for uid in uids),
        )
        return cursor.rowcount

    def mark_generation_gone(self, folder_id: int, current_uidvalidity: int, when: str) -> None:
        self.db.execute(
            "UPDATE messages SET gone_at=? WHERE folder_id=? AND uidvalidity<>? AND gone_at IS NULL",
            (when, folder_id, current_uidvalidity),
        )

    def has_other_generation(self, folder_id: int, uidvalidity: int) -> bool:
        # Two ranges, not `uidvalidity<>?`: each is one probe of the partial index messages_live_generations,
        # where `<>` walks every live copy of the folder.
        row = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE folder_id=?1 AND uidvalidity<?2 AND gone_at IS NULL) "
            "OR EXISTS (SELECT 1 FROM messages WHERE folder_id=?1 AND uidvalidity>?2 AND gone_at IS NULL)",
            (folder_id, uidvalidity)).fetchone()
        return bool(row[0])

    def old_copies(self, folder_id: int, uidvalidity: int, sha256: str, size: int,
                   message_id: str | None) -> list[StoredMessage]:
        """Copies from earlier UIDVALIDITY generations that no current UID has claimed."""
        rows = self.db.execute(
            "SELECT * FROM messages WHERE folder_id=? AND sha256=? AND size=? AND uidvalidity<>? "
            "AND coalesce(message_id, '')=coalesce(?, '') ORDER BY uidvalidity, uid",
            (folder_id, sha256, size, uidvalidity, message_id),
        )
        return [message_from_row(row) for row in rows]

    def move_to_generation(self, old: StoredMessage, uidvalidity: int, uid: int, flags: tuple[str, ...]) -> None:
        self.db.execute(
            "UPDATE messages SET uidvalidity=?, uid=?, flags=?, gone_at=NULL "
            "WHERE folder_id=? AND uidvalidity=? AND uid=?",
            (uidvalidity, uid, " ".join(flags), old.folder_id, old.uidvalidity, old.uid),
        )

    def set_verified(self, folder_id: int, uidvalidity: int, uid: int, when: str) -> None:
        self.db.execute("UPDATE messages SET verified_at=? WHERE folder_id=? AND uidvalidity=? AND uid=?",
                        (when, folder_id, uidvalidity, uid))

    # -- pending batches ----------------------------------------------
    def add_pending(self, messages: Iterable[StoredMessage]) -> None:
        self.db.executemany(insert_sql("pending"), (message_values(message) for message in messages))

    def pending(self, folder_id: int) -> list[StoredMessage]:
        rows = self.db.execute("SELECT * FROM pending WHERE folder_id=? ORDER BY seq", (folder_id,))
        return [message_from_row(row) for row in rows]

    def clear_pending(self, folder_id: int) -> None:
        self.db.execute("DELETE FROM pending WHERE folder_id=?", (folder_id,))

    def clear_pending_of(self, folder_id: int, uidvalidity: int, uids: Iterable[int]) -> None:
        """Only these messages' rows: another connection may have a batch of the same folder in flight."""
        self._delete_uids("pending", folder_id, uidvalidity, uids)

    def _delete_uids(self, table: str, folder_id: int, uidvalidity: int, uids: Iterable[int]) -> None:
        # One statement per UID_CHUNK UIDs, not one per message (a profile of 500 small folders:
        # 5 of a folder's ~35 statements).
        wanted = list(uids)
        for start in range(0, len(wanted), UID_CHUNK):
            chunk = wanted[start:start + UID_CHUNK]
            self.db.execute(f"DELETE FROM {table} WHERE folder_id=? AND uidvalidity=? "
                            f"AND uid IN ({', '.join('?' * len(chunk))})", (folder_id, uidvalidity, *chunk))

    # -- failures and runs --------------------------------------------
    def record_failure(self, folder_id: int, uidvalidity: int, uid: int, error: str) -> None:
        self.db.execute(
            "INSERT INTO failures VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (folder_id, uidvalidity, uid) "
            "DO UPDATE SET error=excluded.error, attempts=attempts+1, last_at=excluded.last_at",
            (folder_id, uidvalidity, uid, error, now_iso()),
        )

    def clear_failures(self, folder_id: int, uidvalidity: int, uids: Iterable[int]) -> None:
        self._delete_uids("failures", folder_id, uidvalidity, uids)

    def forget_failures_not_in(self, folder_id: int, uidvalidity: int, on_server: Container[int]) -> None:
        rows = self.db.execute("SELECT uidvalidity, uid FROM failures WHERE folder_id=?", (folder_id,)).fetchall()
        stale = [(folder_id, row[0], row[1]) for row in rows if row[0] != uidvalidity or row[1] not in on_server]
        self.db.executemany("DELETE FROM failures WHERE folder_id=? AND uidvalidity=? AND uid=?", stale)

    def failures(self, folder_id: int) -> list[tuple[int, int, str]]:
        rows = self.db.execute("SELECT uidvalidity, uid, error FROM failures WHERE folder_id=? ORDER BY uid",
                               (folder_id,))
        return [(row[0], row[1], row[2]) for row in rows]

    def stored_totals(self) -> tuple[int, int]:
        """(messages, bytes) held in the archive, gone-from-server ones included."""
        row = self.db.execute("SELECT count(*), coalesce(sum(size), 0) FROM messages").fetchone()
        return int(row[0]), int(row[1])

_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    """One lock per state file in this process.  A run's connections (sync/parallel.py)
    each have their own handle; queued on this lock a writer wakes the moment the
    other commits, where SQLite's own busy handler sleeps 1, 2, 5 … 100 ms between
    tries (a profile of 500 folders on four connections: slower than on one)."""
    key = os.path.abspath(path)
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(key, threading.RLock())


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception; a commit that is
    not *durable* skips its fsync (synchronous=NORMAL for that commit only).
    Holds the file's writer lock throughout."""

    def __init__(self, db: sqlite3.Connection, writer: threading.RLock, durable: bool = True) -> None:
        self.db = db
        self.writer = writer
        self.durable = durable

    def __enter__(self) -> sqlite3.Connection:
        self.writer.acquire()
        try:
            if not self.durable:
                self.db.execute("PRAGMA synchronous=NORMAL")
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._restore_sync()
                raise
        except BaseException:
            self.writer.release()
            raise
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                    return
                except sqlite3.Error:
                    self._rollback()  # a failed COMMIT (disk full) leaves the transaction open
                    raise
            self._rollback()
        finally:
            try:
                self._restore_sync()
            finally:
                self.writer.release()

    def _restore_sync(self) -> None:
        if not self.durable:
            self.db.execute("PRAGMA synchronous=FULL")

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # already rolled back by SQLite; never hide the error that brought us here


def _create_private(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


def _folder(row: sqlite3.Row) -> FolderRecord:
    return FolderRecord(**{key: row[key] for key in row.keys() if key != "path_key"})  # noqa: SIM118


