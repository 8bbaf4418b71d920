"""imapclient's answers (bytes-keyed dicts, bytes or str) as our dataclasses
and plain values: what `ImapSession` returns is built here."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from mailbackup.errors import FolderError
from mailbackup.i18n import _
from mailbackup.imap import utf7, wire
from mailbackup.imap.parse import MetaRow
from mailbackup.model import FolderInfo, FolderStatus, MessageMeta, SelectedFolder, message_flags

log = logging.getLogger(__name__)


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


def folder_infos(entries: list[tuple[Any, Any, Any]]) -> tuple[list[FolderInfo], dict[str, bytes]]:
    """LIST entries as folders (INBOX first), and the names that are not modified
    UTF-7 (RFC 3501 5.1.3): shown as sent, never named back to the server."""
    folders = []
    unusable: dict[str, bytes] = {}
    usable: set[str] = set()
    for flags, delimiter, raw in entries:
        try:
            name = utf7.decode(raw) if isinstance(raw, bytes) else text_of(raw)
            usable.add(name)
        except ValueError:
            name = raw.decode("utf-8", "backslashreplace")
            unusable[name] = raw
        folders.append(FolderInfo(name=name, delimiter=text_of(delimiter) if delimiter else None,
                                  flags=tuple(text_of(flag) for flag in flags) if isinstance(flags, tuple) else ()))
    folders.sort(key=lambda folder: (folder.name != "INBOX", folder.name))
    return folders, {name: raw for name, raw in unusable.items() if name not in usable}


def listed_statuses(data: list[Any]) -> dict[str, FolderStatus]:
    """STATUS answers of a LIST-STATUS, by folder name; one that cannot be
    read is left out (and asked for again on its own)."""
    try:
        parsed = wire.parse_answers(data)
    except Exception:  # imapclient's parser raises several kinds; any of them: ask one by one
        log.debug("unreadable STATUS answers in LIST-STATUS: %r", data[:5])
        return {}
    statuses: dict[str, FolderStatus] = {}
    for raw, values in zip(parsed[::2], parsed[1::2], strict=False):
        try:
            name = utf7.decode(raw) if isinstance(raw, bytes) else text_of(raw)
            if not isinstance(values, tuple):
                continue
            pairs = {text_of(key).upper(): value for key, value in zip(values[::2], values[1::2], strict=False)}
            statuses[name] = folder_status(name, pairs)
        except (ValueError, TypeError):
            continue
    return statuses
