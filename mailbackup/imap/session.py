"""One account's IMAP session: the folder and message operations the sync
engine needs, returning our dataclasses, never imapclient's bytes-keyed dicts.

Every call goes through `translate_errors`, so callers only ever see
MailbackupError subclasses; a `ConnectionLost` means: call `reconnect()`,
re-select, and try again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import imapclient
from imapclient.response_parser import parse_fetch_response

from mailbackup.errors import FolderError, MessageFetchError, ServerError
from mailbackup.imap.connect import login, open_client, translate_errors
from mailbackup.imap.uidset import to_sequence_set
from mailbackup.model import (
    ConnectionSettings,
    FetchedMessage,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    SelectedFolder,
)

log = logging.getLogger(__name__)

META_ITEMS = ("UID", "RFC822.SIZE", "FLAGS", "INTERNALDATE")
BODY_ITEMS = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[]")


class ImapSession:
    def __init__(self, settings: ConnectionSettings, account: str, password: str) -> None:
        self.settings = settings
        self.account = account
        self._password = password
        self._client: imapclient.IMAPClient | None = None
        self.selected: str | None = None

    # -- connection ---------------------------------------------------
    def connect(self) -> ImapSession:
        client = open_client(self.settings)
        try:
            login(client, self.settings, self.account, self._password)
        except BaseException:
            _quietly_close(client)
            raise
        self._client = client
        self.selected = None
        return self

    def reconnect(self) -> None:
        self.close(logout=False)
        self.connect()

    def close(self, *, logout: bool = True) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quietly_close(client, logout=logout)

    def __enter__(self) -> ImapSession:
        return self.connect() if self._client is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> imapclient.IMAPClient:
        if self._client is None:
            raise RuntimeError("IMAP session used before connect()")
        return self._client

    def has_capability(self, name: str) -> bool:
        with translate_errors(self.settings):
            return bool(self.client.has_capability(name))

    @property
    def condstore(self) -> bool:
        return self.has_capability("CONDSTORE") or self.has_capability("QRESYNC")

    # -- folders ------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        with translate_errors(self.settings):
            entries = self.client.list_folders()
        folders = [
            FolderInfo(name=_text(name), delimiter=_text(delim) if delim else None,
                       flags=tuple(_text(flag) for flag in flags))
            for flags, delim, name in entries
        ]
        return sorted(folders, key=lambda folder: (folder.name != "INBOX", folder.name))

    def status(self, name: str) -> FolderStatus:
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if self.condstore:
            items.append("HIGHESTMODSEQ")
        if self.has_capability("STATUS=SIZE"):
            items.append("SIZE")
        try:
            with translate_errors(self.settings):
                data = self.client.folder_status(name, items)
        except ServerError as exc:
            raise FolderError(f"cannot read status of folder {name!r}: {exc.message}") from None
        values = {_text(key).upper(): value for key, value in data.items()}
        return FolderStatus(
            name=name, messages=int(values.get("MESSAGES", 0)), uidnext=int(values.get("UIDNEXT", 1)),
            uidvalidity=int(values.get("UIDVALIDITY", 0)),
            highestmodseq=_opt_int(values.get("HIGHESTMODSEQ")), size=_opt_int(values.get("SIZE")),
        )

    def examine(self, name: str) -> SelectedFolder:
        """Select read-only (EXAMINE): a backup must never change the server."""
        try:
            with translate_errors(self.settings):
                response = self.client.select_folder(name, readonly=True)
        except ServerError as exc:
            raise FolderError(f"cannot open folder {name!r}: {exc.message}") from None
        self.selected = name
        values = {_text(key).upper(): value for key, value in response.items()}
        return SelectedFolder(
            name=name, uidvalidity=int(values.get("UIDVALIDITY", 0)),
            uidnext=int(values.get("UIDNEXT", 0)), exists=int(values.get("EXISTS", 0)),
            highestmodseq=_opt_int(values.get("HIGHESTMODSEQ")),
        )

    # -- messages -----------------------------------------------------
    def search_uids(self, first_uid: int = 1) -> list[int]:
        """UIDs from `first_uid` on.  `n:*` also matches the highest UID when it
        is below n (RFC 3501 §6.4.8), so the result is filtered."""
        with translate_errors(self.settings):
            found = self.client.search(["UID", f"{first_uid}:*"])
        return sorted(uid for uid in found if uid >= first_uid)

    def fetch_meta(self, uids: Iterable[int] | str) -> list[MessageMeta]:
        rows = self._fetch(uids, META_ITEMS)
        return [_meta(uid, data) for uid, data in sorted(rows.items()) if b"RFC822.SIZE" in data]

    def fetch_flags(self, uid_range: str, changed_since: int | None = None) -> dict[int, tuple[str, ...]]:
        modifiers = [f"CHANGEDSINCE {changed_since}"] if changed_since is not None else None
        rows = self._fetch(uid_range, ("UID", "FLAGS"), modifiers)
        return {uid: _flags(data) for uid, data in rows.items() if b"FLAGS" in data}

    def fetch_bodies(self, uids: Iterable[int]) -> list[FetchedMessage]:
        wanted = sorted(set(uids))
        rows = self._fetch(wanted, BODY_ITEMS)
        fetched = []
        for uid in wanted:
            data = rows.get(uid)
            if data is None or not isinstance(data.get(b"BODY[]"), bytes):
                continue  # gone meanwhile, or server could not read it: the caller decides
            fetched.append(FetchedMessage(meta=_meta(uid, data), body=data[b"BODY[]"]))
        return fetched

    def fetch_partial(self, uid: int, offset: int, length: int) -> bytes:
        key = f"BODY[]<{offset}>".encode()
        rows = self._fetch([uid], ("UID", f"BODY.PEEK[]<{offset}.{length}>"))
        data = rows.get(uid, {})
        chunk = data.get(key)
        if not isinstance(chunk, bytes):
            raise MessageFetchError(f"server returned no data for UID {uid} at byte {offset}")
        return chunk

    def _fetch(self, uids: Iterable[int] | str, items: Iterable[str],
               modifiers: list[str] | None = None) -> dict[int, dict[bytes, Any]]:
        """UID FETCH with a sequence-set string; imapclient's `fetch()` rejects
        ranges like ``1:*`` and we want ranges on 100,000-message folders."""
        sequence = uids if isinstance(uids, str) else to_sequence_set(uids)
        client = self.client
        with translate_errors(self.settings):
            args = ["FETCH", sequence, "(" + " ".join(items) + ")"]
            if modifiers:
                args.append("(" + " ".join(modifiers) + ")")
            tag = client._imap._command("UID", *args)
            typ, data = client._imap._command_complete("FETCH", tag)
            if typ != "OK":
                raise ServerError(f"FETCH refused in {self.selected!r}: {_text(data[0]) if data else typ}")
            typ, data = client._imap._untagged_response(typ, data, "FETCH")
            parsed = parse_fetch_response(data, False, True)
        return {uid: values for uid, values in parsed.items() if isinstance(uid, int)}


def _meta(uid: int, data: dict[bytes, Any]) -> MessageMeta:
    when = data.get(b"INTERNALDATE")
    if not isinstance(when, datetime):
        when = datetime.now(UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return MessageMeta(uid=uid, size=int(data.get(b"RFC822.SIZE", 0)), flags=_flags(data), internaldate=when)


def _flags(data: dict[bytes, Any]) -> tuple[str, ...]:
    # \Recent belongs to one session, not to the message: never store it.
    return tuple(sorted(text for flag in data.get(b"FLAGS", ()) if (text := _text(flag)) != "\\Recent"))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _opt_int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, str)) and value.strip():
        return int(value)
    return None


def _quietly_close(client: imapclient.IMAPClient, *, logout: bool = True) -> None:
    try:
        if logout:
            client.logout()
        else:
            client.shutdown()
    except Exception:
        log.debug("closing the IMAP connection failed", exc_info=True)
