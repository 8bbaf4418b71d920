"""One account's IMAP session: the folder and message operations the sync
engine needs, returning our dataclasses, never imapclient's bytes-keyed dicts.

Every call goes through `translate_errors`, so callers only ever see
MailbackupError subclasses; a `ConnectionLost` means: call `reconnect()`,
re-select, and try again.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import logging
from collections.abc import Callable, Generator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import imapclient
from imapclient.response_parser import parse_fetch_response, parse_response

from mailbackup.errors import FolderError, MailbackupError, ServerBusy, ServerError
from mailbackup.i18n import _
from mailbackup.imap import compress, utf7
from mailbackup.imap.connect import login, open_client, translate_errors
from mailbackup.imap.lexer import MAX_LITERAL
from mailbackup.imap.parse import MetaRow
from mailbackup.imap.pipeline import BatchResult, FetchPipeline
from mailbackup.imap.pushback import busy_error
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
        with translate_errors(self.settings):
            return self._folder_infos(lambda: client.list_folders())

    def list_with_status(self) -> tuple[list[FolderInfo], dict[str, FolderStatus]]:
        """Every folder, and in the same round trip the status of each, where the
        server offers LIST-STATUS (RFC 5819).  Without it, or when its answer
        cannot be used, no statuses: the caller asks folder by folder."""
        if not self.has_capability("LIST-STATUS"):
            return self.list_folders(), {}
        imap = self.client._imap
        for kind in ("LIST", "STATUS"):
            imap.untagged_responses.pop(kind, None)
        try:
            with translate_errors(self.settings):
                typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN",
                                                 "(STATUS (" + " ".join(self._status_items()) + "))")
        except ServerBusy:
            raise
        except ServerError as exc:  # advertised, then refused: the plain way
            log.debug("LIST-STATUS refused (%s); listing without it", exc.message)
            return self.list_folders(), {}
        if typ != "OK":
            log.debug("LIST-STATUS answered %s %r; listing without it", typ, data)
            return self.list_folders(), {}
        listed = imap.untagged_responses.pop("LIST", [])
        statuses = imap.untagged_responses.pop("STATUS", [])
        with translate_errors(self.settings):
            folders = self._folder_infos(lambda: self.client._proc_folder_list(listed))
        return folders, self._statuses(statuses)

    def _folder_infos(self, read: Callable[[], list[tuple[Any, Any, Any]]]) -> list[FolderInfo]:
        client = self.client
        client.folder_encode = False  # raw names: decoded below, where a bad one is caught
        try:
            entries = read()
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

    def _statuses(self, data: list[Any]) -> dict[str, FolderStatus]:
        """STATUS answers of a LIST-STATUS, by folder name; one that cannot be
        read is left out (and asked for again on its own)."""
        try:
            parsed = parse_response([item for item in data if item not in (b"", None)])
        except Exception:  # imapclient's parser raises several kinds; any of them: ask one by one
            log.debug("unreadable STATUS answers in LIST-STATUS: %r", data[:5])
            return {}
        statuses: dict[str, FolderStatus] = {}
        for raw, values in zip(parsed[::2], parsed[1::2], strict=False):
            try:
                name = utf7.decode(raw) if isinstance(raw, bytes) else _text(raw)
                if not isinstance(values, tuple):
                    continue
                pairs = {_text(key).upper(): value for key, value in zip(values[::2], values[1::2], strict=False)}
                statuses[name] = _folder_status(name, pairs)
            except (ValueError, TypeError):
                continue
        return statuses

    def _check_usable(self, name: str) -> None:
        raw = self.unusable_names.get(name)
        if raw is not None:
            raise FolderError(_("the server sent the folder name {raw!r}, which is not modified UTF-7 "
                                "(RFC 3501 5.1.3): it cannot be named back to the server; skipped").format(raw=raw))

    def _status_items(self) -> list[str]:
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if self.condstore:
            items.append("HIGHESTMODSEQ")
        if self.has_capability("STATUS=SIZE"):
            items.append("SIZE")
        return items

    def status(self, name: str) -> FolderStatus:
        self._check_usable(name)
        try:
            with translate_errors(self.settings):
                data = self.client.folder_status(name, self._status_items())
        except ServerBusy:
            raise  # pushback is waited out by the caller, not a broken folder
        except ServerError as exc:
            raise FolderError(_("cannot read status of folder {folder!r}: {error}").format(
                folder=name, error=exc.message)) from None
        try:
            return _folder_status(name, {_text(key).upper(): value for key, value in data.items()})
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
        return _selected_folder(name, response)

    def examine_listing(self, name: str) -> tuple[SelectedFolder, list[MessageMeta]]:
        """EXAMINE, and UID, size, flags and date of every message, in one round
        trip: the FETCH goes out before EXAMINE is answered (for a folder backed
        up the first time; on a 50 ms link that is 50 ms a folder).  Should the
        EXAMINE fail, no folder is selected and the FETCH is refused (RFC 3501
        6.3.1), so nothing is read from a folder we did not ask for."""
        self._check_usable(name)
        client = self.client
        imap = client._imap
        reader = FetchPipeline(imap.file, imap.send, spool_dir=None, spool_above=1 << 16)
        with translate_errors(self.settings):
            imap.untagged_responses = {}
            tag = imap._command("EXAMINE", client._normalise_folder(name))
            fetch_tag = reader.send_meta("1:*")
            try:
                typ, data = imap._command_complete("EXAMINE", tag)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:  # BAD
                typ, data = "BAD", [str(exc).encode()]
            if typ != "OK":
                imap.state, self.selected = "AUTH", None
                with contextlib.suppress(ServerError):
                    reader.read_meta(fetch_tag)
                reply = _text(data[-1]) if data and data[-1] else typ
                raise busy_error(str(self.settings.server), reply) or FolderError(
                    _("cannot open folder {folder!r}: {error}").format(folder=name, error=reply))
            imap.state, imap.is_readonly, self.selected = "SELECTED", True, name
            selected = _selected_folder(name, client._process_select_response(imap.untagged_responses))
            rows = reader.read_meta(fetch_tag)
        return selected, _metas(rows, None)

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
        return _metas(rows, wanted)

    def fetch_flags(self, uid_range: str, changed_since: int | None = None) -> dict[int, tuple[str, ...]]:
        modifiers = [f"CHANGEDSINCE {changed_since}"] if changed_since is not None else None
        rows = self._fetch(uid_range, ("UID", "FLAGS"), modifiers)
        return {uid: _flags(data) for uid, data in rows.items() if b"FLAGS" in data}

    def stream_bodies(self, batches: Iterable[list[int]], *, spool_dir: Path, spool_above: int,
                      depth: int = 3) -> Generator[BatchResult, None, None]:
        """Whole messages, batch by batch, with `depth` FETCH commands in flight
        (see pipeline.py); bodies above `spool_above` bytes go to files."""
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


def _folder_status(name: str, values: dict[str, Any]) -> FolderStatus:
    return FolderStatus(
        name=name, messages=int(values.get("MESSAGES", 0)), uidnext=int(values.get("UIDNEXT", 1)),
        uidvalidity=int(values.get("UIDVALIDITY", 0)),
        highestmodseq=_opt_int(values.get("HIGHESTMODSEQ")), size=_opt_int(values.get("SIZE")),
    )


def _selected_folder(name: str, response: dict[Any, Any]) -> SelectedFolder:
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


def _metas(rows: list[MetaRow], wanted: set[int] | None) -> list[MessageMeta]:
    # A UID we did not ask for is not ours to fetch (a buggy or hostile server).
    now = datetime.now(UTC)
    return sorted((MessageMeta(uid=row.uid, size=row.size, flags=row.flags, internaldate=row.internaldate or now)
                   for row in rows if wanted is None or row.uid in wanted), key=lambda meta: meta.uid)


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
