"""imapclient's answers (bytes-keyed dicts, bytes or str) as our dataclasses
and plain values: what `ImapSession` returns is built here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailbackup.errors import FolderError
from mailbackup.i18n import _
from mailbackup.imap.parse import MetaRow
from mailbackup.model import FolderStatus, MessageMeta, SelectedFolder, message_flags


def folder_status(name: str, values: dict[str, Any]) -> FolderStatus:
    return FolderStatus(
        name=name, messages=int(values.get("MESSAGES", 0)), uidnext=int(values.get("UIDNEXT", 1)),
        uidvalidity=int(values.get("UIDVALIDITY", 0)),
        highestmodseq=optional_int(values.get("HIGHESTMODSEQ")), size=optional_int(values.get("SIZE")),
    )


def selected_folder(name: str, response: dict[Any, Any]) -> SelectedFolder:
    values = {text_of(key).upper(): value for key, value in response.items()}
    try:
        return SelectedFolder(
            name=name, uidvalidity=int(values.get("UIDVALIDITY", 0)),
            uidnext=int(values.get("UIDNEXT", 0)), exists=int(values.get("EXISTS", 0)),
            highestmodseq=optional_int(values.get("HIGHESTMODSEQ")),
        )
    except (ValueError, TypeError):
        raise FolderError(_("the server's EXAMINE answer for folder {folder!r} is unusable: {answer!r:.200}")
                          .format(folder=name, answer=response)) from None


def metas_of(rows: list[MetaRow], wanted: set[int] | None) -> list[MessageMeta]:
    # A UID we did not ask for is not ours to fetch (a buggy or hostile server).
    now = datetime.now(UTC)
    return sorted((MessageMeta(uid=row.uid, size=row.size, flags=row.flags, internaldate=row.internaldate or now)
                   for row in rows if wanted is None or row.uid in wanted), key=lambda meta: meta.uid)


def flags_of(data: dict[bytes, Any]) -> tuple[str, ...]:
    return message_flags(text_of(flag) for flag in data.get(b"FLAGS", ()))


def text_of(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def optional_int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, str)) and value.strip():
        return int(value)
    return None
