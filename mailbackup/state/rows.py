"""Rows of the state database as our types: a stored message to and from
its columns (the `messages` and `pending` tables share them), and the
timestamps every table uses."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from mailbackup.model import StoredMessage

MESSAGE_FIELDS = (
    "folder_id", "uidvalidity", "uid", "size", "sha256", "internaldate", "flags", "message_id",
    "subject", "sender", "location", "mbox_offset", "mbox_length", "saved_at",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def insert_sql(table: str) -> str:
    return f"INSERT INTO {table} ({', '.join(MESSAGE_FIELDS)}) VALUES ({', '.join('?' * len(MESSAGE_FIELDS))})"


def message_values(message: StoredMessage) -> tuple[object, ...]:
    return (
        message.folder_id, message.uidvalidity, message.uid, message.size, message.sha256,
        message.internaldate.isoformat(), " ".join(message.flags), message.message_id, message.subject,
        message.sender, message.location, message.mbox_offset, message.mbox_length, message.saved_at,
    )


def split_flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


def message_from_row(row: sqlite3.Row) -> StoredMessage:
    keys = row.keys()
    return StoredMessage(
        folder_id=row["folder_id"], uidvalidity=row["uidvalidity"], uid=row["uid"], size=row["size"],
        sha256=row["sha256"], internaldate=datetime.fromisoformat(row["internaldate"]),
        flags=split_flags(row["flags"]), message_id=row["message_id"], subject=row["subject"],
        sender=row["sender"], location=row["location"], mbox_offset=row["mbox_offset"],
        mbox_length=row["mbox_length"], saved_at=row["saved_at"],
        gone_at=row["gone_at"] if "gone_at" in keys else None,
        verified_at=row["verified_at"] if "verified_at" in keys else None,
    )
