"""Restore bookkeeping: per archived copy and target account, where it was
uploaded (folder, UIDVALIDITY, UID) and how that went, so a killed restore
never sends a message twice (restore/upload.py explains the protocol)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from mailbackup.model import StoredMessage
from mailbackup.state.rows import message_from_row, now_iso

UPLOAD_PENDING = "pending"  # APPEND about to be sent or sent: look on the target before sending again
UPLOAD_DONE = "uploaded"
UPLOAD_FAILED = "failed"  # the target refused it (quota, size, ...): tried again next run


@dataclass(frozen=True)
class UploadTarget:
    """A target mailbox: host name (lower case, no port: 993 and 143 reach the
    same mail) and account."""

    server: str
    account: str


@dataclass(frozen=True)
class UploadRecord:
    target_folder: str
    target_uidvalidity: int | None
    target_uid: int | None
    status: str
    error: str | None
    attempts: int
    uploaded_at: str | None


@dataclass(frozen=True)
class RestoreItem:
    """One archived copy (by its `messages` row id) and its upload, if any."""

    message_row: int
    message: StoredMessage
    upload: UploadRecord | None


def _upload(row: sqlite3.Row) -> UploadRecord | None:
    if row["upload_status"] is None:
        return None
    return UploadRecord(
        target_folder=row["target_folder"], target_uidvalidity=row["target_uidvalidity"],
        target_uid=row["target_uid"], status=row["upload_status"], error=row["upload_error"],
        attempts=row["upload_attempts"], uploaded_at=row["uploaded_at"],
    )


class UploadLedger:
    """StateDB's uploads (a mixin: it uses StateDB's connection)."""

    db: sqlite3.Connection

    def restore_items(self, folder_id: int, target: UploadTarget, *, include_gone: bool = True) -> list[RestoreItem]:
        """Every archived copy in a folder with what is known of its upload to `target`."""
        sql = (
            "SELECT m.id AS message_row, m.*, u.target_folder, u.target_uidvalidity, u.target_uid, "
            "u.status AS upload_status, u.error AS upload_error, u.attempts AS upload_attempts, u.uploaded_at "
            "FROM messages m LEFT JOIN uploads u "
            "ON u.message_row = m.id AND u.target_server=? AND u.target_account=? WHERE m.folder_id=?"
            + ("" if include_gone else " AND m.gone_at IS NULL") + " ORDER BY m.uidvalidity, m.uid"
        )
        rows = self.db.execute(sql, (target.server, target.account, folder_id))
        return [RestoreItem(row["message_row"], message_from_row(row), _upload(row)) for row in rows]

    def mark_uploads_pending(self, items: Iterable[RestoreItem], target: UploadTarget, folder: str,
                             uidvalidity: int) -> None:
        """Record the intent before the APPEND goes out (commit before sending)."""
        for item in items:
            self._upsert_upload(item, target, folder, uidvalidity, None, UPLOAD_PENDING, None, attempt=True)

    def mark_uploaded(self, item: RestoreItem, target: UploadTarget, folder: str, uidvalidity: int,
                      uid: int | None) -> None:
        self._upsert_upload(item, target, folder, uidvalidity, uid, UPLOAD_DONE, None)

    def mark_upload_failed(self, item: RestoreItem, target: UploadTarget, folder: str, uidvalidity: int | None,
                           error: str) -> None:
        self._upsert_upload(item, target, folder, uidvalidity, None, UPLOAD_FAILED, error)

    def _upsert_upload(self, item: RestoreItem, target: UploadTarget, folder: str, uidvalidity: int | None,
                       uid: int | None, status: str, error: str | None, *, attempt: bool = False) -> None:
        when = now_iso()
        message = item.message
        self.db.execute(
            "INSERT INTO uploads (message_row, folder_id, uidvalidity, uid, target_server, target_account, "
            "target_folder, target_uidvalidity, target_uid, status, error, attempts, uploaded_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (target_server, target_account, message_row) DO UPDATE SET "
            "folder_id=excluded.folder_id, uidvalidity=excluded.uidvalidity, uid=excluded.uid, "
            "target_folder=excluded.target_folder, target_uidvalidity=excluded.target_uidvalidity, "
            "target_uid=excluded.target_uid, status=excluded.status, error=excluded.error, "
            "attempts=attempts+excluded.attempts, uploaded_at=coalesce(excluded.uploaded_at, uploaded_at), "
            "updated_at=excluded.updated_at",
            (item.message_row, message.folder_id, message.uidvalidity, message.uid, target.server, target.account,
             folder, uidvalidity, uid, status, error, int(attempt), when if status == UPLOAD_DONE else None, when),
        )
