"""One account's IMAP session: the folder and message operations the sync
engine needs, returning our dataclasses, never imapclient's bytes-keyed dicts.

Every call goes through `translate_errors`, so callers only ever see
MailbackupError subclasses; a `ConnectionLost` means: call `reconnect()`,
re-select, and try again.
"""

from __future__ import annotations

import imaplib
import logging
from collections.abc import Generator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import imapclient
from imapclient.response_parser import parse_fetch_response

from mailbackup.errors import FolderError, ServerBusy, ServerError
from mailbackup.imap import compress, utf7
from mailbackup.imap.connect import login, open_client, translate_errors
from mailbackup.imap.fetchstream import MAX_LITERAL, BatchResult, FetchPipeline
from mailbackup.imap.uidset import to_sequence_set
from mailbackup.model import (
    ConnectionSettings,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    SelectedFolder,
)

log = logging.getLogger(__name__)

META_ITEMS = ("UID", "RFC822.SIZE", "FLAGS", "INTERNALDATE")
_IMAPLIB_READ = imaplib.IMAP4.read


def _bounded_read(self: imaplib.IMAP4, size: int) -> bytes:
    """imaplib reads a literal with one ``file.read(size)`` of the size the
    server announced: ``{99999999999}`` in a greeting, LIST or STATUS answer
    would allocate 93 GB.  Refused here, for every connection, greeting
    included (so it is patched on the class, before any connection exists)."""
    if size > MAX_LITERAL:
        raise ServerError(f"server announced a literal of {size} bytes; refusing")
    return _IMAPLIB_READ(self, size)


imaplib.IMAP4.read = _bounded_read  # type: ignore[method-assign]


class ImapSession:
    def __init__(self, settings: ConnectionSettings, account: str, password: str) -> None:
        self.settings = settings
        self.account = account
        self._password = password
        self._client: imapclient.IMAPClient | None = None
        self.compressed = False
        self.selected: str | None = None
        # Names from LIST that cannot be sent back as the server sent them: name → raw bytes.
        self.unusable_names: dict[str, bytes] = {}

    # -- connection ---------------------------------------------------
    def connect(self) -> ImapSession:
        client = open_client(self.settings)
        try:
            login(client, self.settings, self.account, self._password)
            self.compressed = self._maybe_compress(client)
        except BaseException:
            _quietly_close(client)
            raise
        self._client = client
        self.selected = None
        return self

    def _maybe_compress(self, client: imapclient.IMAPClient) -> bool:
        mode = self.settings.compress
        if not compress.worth_compressing(self.settings.server.host, mode):
            return False
        with translate_errors(self.settings):
            if not client.has_capability("COMPRESS=DEFLATE"):
                return False
            return compress.start(client._imap)

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
        client = self.client
        client.folder_encode = False  # raw names: decoded below, where a bad one is caught
        try:
            with translate_errors(self.settings):
                entries = client.list_folders()
        except (ValueError, TypeError):  # imapclient unpacks entries without checking them
            raise ServerError(f"{self.settings.server} sent a malformed LIST response") from None
        finally:
            client.folder_encode = True
        folders = []
        unusable: dict[str, bytes] = {}
        usable: set[str] = set()
        for flags, delimiter, raw in entries:
            try:
                name = utf7.decode(raw) if isinstance(raw, bytes) else _text(raw)
                usable.add(name)
            except ValueError:
                name = raw.decode("utf-8", "backslashreplace")
                unusable[name] = raw
            folders.append(FolderInfo(name=name, delimiter=_text(delimiter) if delimiter else None,
                                      flags=tuple(_text(flag) for flag in flags) if isinstance(flags, tuple) else ()))
        self.unusable_names = {name: raw for name, raw in unusable.items() if name not in usable}
        return sorted(folders, key=lambda folder: (folder.name != "INBOX", folder.name))

    def _check_usable(self, name: str) -> None:
        raw = self.unusable_names.get(name)
        if raw is not None:
            raise FolderError(f"the server sent the folder name {raw!r}, which is not modified UTF-7 "
                              "(RFC 3501 5.1.3): it cannot be named back to the server; skipped")

    def status(self, name: str) -> FolderStatus:
        self._check_usable(name)
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if self.condstore:
            items.append("HIGHESTMODSEQ")
        if self.has_capability("STATUS=SIZE"):
            items.append("SIZE")
        try:
            with translate_errors(self.settings):
                data = self.client.folder_status(name, items)
        except ServerBusy:
            raise  # pushback is waited out by the caller, not a broken folder
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
        self._check_usable(name)
        try:
            with translate_errors(self.settings):
                response = self.client.select_folder(name, readonly=True)
        except ServerBusy:
            raise  # pushback is waited out by the caller, not a broken folder
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
        if not isinstance(uids, str):
            uids = list(uids)
        rows = self._fetch(uids, META_ITEMS)
        # A UID we did not ask for is not ours to fetch (a buggy or hostile server).
        wanted = None if isinstance(uids, str) else set(uids)
        return [_meta(uid, data) for uid, data in sorted(rows.items())
                if b"RFC822.SIZE" in data and (wanted is None or uid in wanted)]

    def fetch_flags(self, uid_range: str, changed_since: int | None = None) -> dict[int, tuple[str, ...]]:
        modifiers = [f"CHANGEDSINCE {changed_since}"] if changed_since is not None else None
        rows = self._fetch(uid_range, ("UID", "FLAGS"), modifiers)
        return {uid: _flags(data) for uid, data in rows.items() if b"FLAGS" in data}

    def stream_bodies(self, batches: Iterable[list[int]], *, spool_dir: Path, spool_above: int,
                      depth: int = 3) -> Generator[BatchResult, None, None]:
        """Whole messages, batch by batch, with `depth` FETCH commands in flight
        (see fetchstream.py); bodies above `spool_above` bytes go to files."""
        imap = self.client._imap
        pipeline = FetchPipeline(imap.file, imap.send, spool_dir=spool_dir, spool_above=spool_above, depth=depth)
        with translate_errors(self.settings):
            yield from pipeline.run(batches)

    def fetch_partial(self, uid: int, offset: int, length: int) -> bytes:
        """Bytes `offset`…`offset+length` of a message (``BODY.PEEK[]<o.l>``)."""
        key = f"BODY[]<{offset}>".encode()
        rows = self._fetch([uid], ("UID", f"BODY.PEEK[]<{offset}.{length}>"))
        chunk = rows.get(uid, {}).get(key)
        if not isinstance(chunk, bytes):
            raise ServerError(f"server returned no data for UID {uid} at byte {offset}")
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
