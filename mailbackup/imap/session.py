"""One account's IMAP session: the folder and message operations the sync
engine needs, returning our dataclasses, never imapclient's bytes-keyed dicts.

Every call goes through `translate_errors`, so callers only ever see
MailbackupError subclasses; a `ConnectionLost` means: call `reconnect()`,
re-select, and try again.
"""

from __future__ import annotations

import base64
import imaplib
import logging
from collections.abc import Generator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import imapclient
from imapclient.response_parser import parse_fetch_response

from mailbackup.errors import FolderError, MailbackupError, ServerBusy, ServerError
from mailbackup.i18n import _
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

_IMAPLIB_READ = imaplib.IMAP4.read


def _bounded_read(self: imaplib.IMAP4, size: int) -> bytes:
    """imaplib reads a literal with one ``file.read(size)`` of the size the
    server announced: ``{99999999999}`` in a greeting, LIST or STATUS answer
    would allocate 93 GB.  Refused here, for every connection, greeting
    included (so it is patched on the class, before any connection exists)."""
    if size > MAX_LITERAL:
        raise ServerError(_("server announced a literal of {size} bytes; refusing").format(size=size))
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
            self._enable_condstore(client)
        except MailbackupError as exc:
            _quietly_close(client)
            _scrub(exc, self.account, self._password)
            raise
        except BaseException:
            _quietly_close(client)
            raise
        self._client = client
        self.selected = None
        return self

    def _enable_condstore(self, client: imapclient.IMAPClient) -> None:
        """SELECT reports HIGHESTMODSEQ only once CONDSTORE is on; a STATUS asking
        for it switches it on implicitly, but a first sync skips STATUS."""
        with translate_errors(self.settings):
            if client.has_capability("ENABLE") and client.has_capability("CONDSTORE"):
                client.enable("CONDSTORE")

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
            raise ServerError(_("{server} sent a malformed LIST response").format(server=self.settings.server)) \
                from None
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
            raise FolderError(_("the server sent the folder name {raw!r}, which is not modified UTF-7 "
                                "(RFC 3501 5.1.3): it cannot be named back to the server; skipped").format(raw=raw))

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
            raise FolderError(_("cannot read status of folder {folder!r}: {error}").format(
                folder=name, error=exc.message)) from None
        values = {_text(key).upper(): value for key, value in data.items()}
        try:
            return FolderStatus(
                name=name, messages=int(values.get("MESSAGES", 0)), uidnext=int(values.get("UIDNEXT", 1)),
                uidvalidity=int(values.get("UIDVALIDITY", 0)),
                highestmodseq=_opt_int(values.get("HIGHESTMODSEQ")), size=_opt_int(values.get("SIZE")),
            )
        except (ValueError, TypeError):
            raise FolderError(_("the server's STATUS answer for folder {folder!r} is unusable: {answer!r:.200}")
                              .format(folder=name, answer=data)) from None

    def examine(self, name: str) -> SelectedFolder:
        """Select read-only (EXAMINE): a backup must never change the server."""
        self._check_usable(name)
        try:
            with translate_errors(self.settings):
                response = self.client.select_folder(name, readonly=True)
        except ServerBusy:
            raise  # pushback is waited out by the caller, not a broken folder
        except ServerError as exc:
            raise FolderError(_("cannot open folder {folder!r}: {error}").format(folder=name, error=exc.message)) \
                from None
        self.selected = name
        values = {_text(key).upper(): value for key, value in response.items()}
        try:
            return SelectedFolder(
                name=name, uidvalidity=int(values.get("UIDVALIDITY", 0)),
                uidnext=int(values.get("UIDNEXT", 0)), exists=int(values.get("EXISTS", 0)),
                highestmodseq=_opt_int(values.get("HIGHESTMODSEQ")),
            )
        except (ValueError, TypeError):
            raise FolderError(_("the server's EXAMINE answer for folder {folder!r} is unusable: {answer!r:.200}")
                              .format(folder=name, answer=response)) from None

    # -- messages -----------------------------------------------------
    def search_uids(self, first_uid: int = 1) -> list[int]:
        """UIDs from `first_uid` on.  `n:*` also matches the highest UID when it
        is below n (RFC 3501 §6.4.8), so the result is filtered."""
        with translate_errors(self.settings):
            found = self.client.search(["UID", f"{first_uid}:*"])
        return sorted(uid for uid in found if uid >= first_uid)

    def fetch_meta(self, uids: Iterable[int] | str) -> list[MessageMeta]:
        """Size, flags and INTERNALDATE of each message, without its body."""
        wanted: set[int] | None = None
        if isinstance(uids, str):
            sequence = uids
        else:
            wanted = set(uids)
            if not wanted:
                return []
            sequence = to_sequence_set(wanted)
        imap = self.client._imap
        reader = FetchPipeline(imap.file, imap.send, spool_dir=None, spool_above=1 << 16)
        with translate_errors(self.settings):
            rows = reader.fetch_meta(sequence)
        # A UID we did not ask for is not ours to fetch (a buggy or hostile server).
        now = datetime.now(UTC)
        return sorted((MessageMeta(uid=row.uid, size=row.size, flags=row.flags, internaldate=row.internaldate or now)
                       for row in rows if wanted is None or row.uid in wanted), key=lambda meta: meta.uid)

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
            raise ServerError(_("server returned no data for UID {uid} at byte {offset}").format(
                uid=uid, offset=offset))
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
                raise ServerError(_("FETCH refused in {folder!r}: {reply}").format(
                    folder=self.selected, reply=_text(data[0]) if data else typ))
            typ, data = client._imap._untagged_response(typ, data, "FETCH")
            parsed = parse_fetch_response(data, False, True)
        return {uid: values for uid, values in parsed.items() if isinstance(uid, int)}


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


def _scrub(exc: MailbackupError, account: str, password: str) -> None:
    """Take the password out of an error's server text, in every form it went
    out in: a server may repeat what it was sent in its refusal."""
    forms = [password, base64.b64encode(f"\0{account}\0{password}".encode()).decode(),
             base64.b64encode(password.encode()).decode().rstrip("=")]
    for form in (form for form in forms if form):
        exc.message = exc.message.replace(form, "***")
    exc.args = (exc.message,)


def _quietly_close(client: imapclient.IMAPClient, *, logout: bool = True) -> None:
    try:
        if logout:
            client.logout()
        else:
            client.shutdown()
    except Exception:
        log.debug("closing the IMAP connection failed", exc_info=True)
