"""The target side of a restore: NAMESPACE, LIST, CREATE, SELECT, APPEND and
MULTIAPPEND, and reading back what a folder holds.

`TargetMailbox` wraps a logged-in `ImapSession` (connecting, logging in,
reconnecting and error translation stay there) and returns our dataclasses.
Rules kept here:

* folder names are given as ``str`` and imapclient encodes them in modified
  UTF-7;
* message bytes go out as literals exactly as given: imapclient's `append()`
  goes through imaplib, which rewrites bare CR and LF to CRLF, so it is not
  used;
* a refused APPEND is an answer, not an exception: MULTIAPPEND returns
  ``("NO", [b"[OVERQUOTA] ..."])`` instead of raising, and a single APPEND
  is sent the same raw way, so both come back as an `AppendResponse`;
* RFC 3502 makes a MULTIAPPEND all-or-nothing: after a NO none of its
  messages is on the server.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import imapclient

from mailbackup.errors import FolderError, ServerError
from mailbackup.i18n import _
from mailbackup.imap import wire
from mailbackup.imap.listing import Listing, list_folder
from mailbackup.imap.session import ImapSession
from mailbackup.model import FolderInfo, message_flags

INDEX_CHUNK = 500  # UIDs per FETCH when reading a folder back
MESSAGE_ID_ITEM = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
INDEX_ITEMS = ("RFC822.SIZE", "FLAGS", "INTERNALDATE", MESSAGE_ID_ITEM)
APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)
RESPONSE_CODE = re.compile(rb"^\s*\[([A-Za-z0-9.-]+)")


@dataclass(frozen=True)
class Namespace:
    """The personal namespace: ``("", "/")`` on Dovecot, ``("INBOX.", ".")`` on Courier."""

    prefix: str
    delimiter: str | None


@dataclass(frozen=True)
class TargetFolder:
    """A folder selected read-write on the target."""

    name: str
    uidvalidity: int
    uidnext: int
    exists: int
    permanent_flags: tuple[str, ...]

    def keeps(self, flag: str) -> bool:
        """Whether an APPEND with `flag` sets it for good (RFC 3501 PERMANENTFLAGS;
        a server that sends none keeps every flag)."""
        if not self.permanent_flags:
            return True
        allowed = {item.lower() for item in self.permanent_flags}
        if flag.lower() in allowed:
            return True
        is_keyword = not flag.startswith("\\")
        return is_keyword and "\\*" in allowed


@dataclass(frozen=True)
class AppendItem:
    body: bytes
    flags: tuple[str, ...]
    internaldate: datetime


@dataclass(frozen=True)
class AppendResponse:
    ok: bool
    text: str  # the server's words, e.g. "[OVERQUOTA] Quota exceeded (mailbox for user is full)"
    code: str | None  # the response code: OVERQUOTA, TOOBIG, LIMIT, TRYCREATE, ...
    uidvalidity: int | None = None  # from APPENDUID (UIDPLUS), when offered
    uids: tuple[int, ...] = ()  # in the order of the appended messages


@dataclass(frozen=True)
class TargetMessage:
    """One message in a target folder, as read back for matching and checking."""

    uid: int
    size: int
    flags: tuple[str, ...]  # without \\Recent
    internaldate: datetime | None
    header: bytes  # the Message-ID header field (or nothing)


# Products whose greeting names them; a report says "Cyrus" rather than a host name.
SERVER_PRODUCTS = re.compile(r"Cyrus IMAP[^ ]*( v?[0-9][^ ]*)?|Dovecot|Courier-IMAP|GNU Mailutils[^ ]*|"
                             r"Microsoft Exchange|Gimap|Zimbra|hoodiecrow", re.I)


class TargetMailbox:
    def __init__(self, session: ImapSession) -> None:
        self.session = session

    @property
    def client(self) -> imapclient.IMAPClient:
        return self.session.client

    def reconnect(self) -> None:
        self.session.reconnect()

    # -- what the server offers ---------------------------------------
    @property
    def name(self) -> str:
        """The server's product as its greeting names it (Cyrus, Dovecot, …), else its address."""
        welcome = _text(self.client.welcome or b"")
        product = SERVER_PRODUCTS.search(welcome)
        return product.group(0) if product else str(self.session.settings.server)

    @property
    def can_multiappend(self) -> bool:
        return self.session.has_capability("MULTIAPPEND")

    @property
    def append_limit(self) -> int | None:
        """RFC 7889 APPENDLIMIT=N: messages above N bytes are refused before sending."""
        with self.session.translated():
            for capability in self.client.capabilities():
                text = _text(capability).upper()
                if text.startswith("APPENDLIMIT=") and text[12:].isdigit():
                    return int(text[12:])
        return None

    def namespace(self) -> Namespace:
        return read_namespace(self.session)

    # -- folders ------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        return self.session.list_folders()

    def create(self, name: str) -> None:
        """CREATE and SUBSCRIBE; an existing folder is fine, a refusal is a FolderError."""
        try:
            with self.session.translated():
                self.client.create_folder(name)
        except ServerError as exc:
            if "ALREADYEXISTS" not in exc.message.upper():
                raise FolderError(_("the target refused to create folder {folder!r}: {error}").format(
                    folder=name, error=exc.message)) from None
        try:
            with self.session.translated():
                self.client.subscribe_folder(name)
        except ServerError:
            pass  # unsubscribed folders still hold their mail; webmail can subscribe later

    def select(self, name: str) -> TargetFolder:
        """SELECT read-write: only then does PERMANENTFLAGS say which flags APPEND keeps."""
        try:
            with self.session.translated():
                response = self.client.select_folder(name)
        except ServerError as exc:
            raise FolderError(_("cannot open folder {folder!r} on the target: {error}").format(
                folder=name, error=exc.message)) from None
        self.session.selected = name
        values = {_text(key).upper(): value for key, value in response.items()}
        self.session.exists = int(values.get("EXISTS", 0))
        with self.session.translated():
            wire.pop_untagged(self.client, "EXISTS")  # SELECT's own: counted above
        return TargetFolder(
            name=name, uidvalidity=int(values.get("UIDVALIDITY", 0)), uidnext=int(values.get("UIDNEXT", 0) or 0),
            exists=int(values.get("EXISTS", 0)),
            permanent_flags=tuple(_text(flag) for flag in values.get("PERMANENTFLAGS", ())),
        )

    # -- messages -----------------------------------------------------
    def append(self, folder: str, items: Sequence[AppendItem]) -> AppendResponse:
        """One APPEND (one item) or MULTIAPPEND (several; the server must offer it)."""
        if not items:
            raise ValueError("nothing to append")
        if len(items) > 1 and not self.can_multiappend:
            raise ValueError("several messages in one APPEND need MULTIAPPEND")
        multi = self.can_multiappend
        try:
            with self.session.translated():
                try:
                    if multi:
                        status, data = self.client.multiappend(folder, [_multiappend_item(item) for item in items])
                    else:
                        status, data = self._single_append(folder, items[0])
                except imaplib.IMAP4.abort as exc:
                    if wire.REFUSED_LITERAL not in str(exc):
                        raise  # a real connection loss
                    return _refused(str(exc))
        except ServerError as exc:  # BAD: the server would not even parse it
            return _refused(exc.message)
        return _response(status, data)

    def _single_append(self, folder: str, item: AppendItem) -> tuple[str, list[Any]]:
        """APPEND sent as imapclient sends MULTIAPPEND: the body as a literal, untouched."""
        return wire.append_raw(self.client, folder, item.flags, _internaldate(item.internaldate), item.body)

    def index(self, first_uid: int = 1) -> list[TargetMessage]:
        """Size, flags, date and Message-ID of every message from `first_uid` on,
        in the selected folder."""
        return self.index_listing(first_uid)[0]

    def index_listing(self, first_uid: int = 1) -> tuple[list[TargetMessage], Listing]:
        """`index`, and how the folder was listed: its UIDs are cross-checked
        with EXISTS (listing.py), so a target whose `UID SEARCH UID 1:*` answers
        nothing (imap4d) is listed another way, and one that contradicts itself
        says so (`Listing.consistent`)."""
        name = self.session.selected
        listing = list_folder(self.session, reopen=None if name is None else lambda: self.select(name))
        uids = [uid for uid in listing.uids if uid >= first_uid]
        messages: list[TargetMessage] = []
        for start in range(0, len(uids), INDEX_CHUNK):
            chunk = uids[start:start + INDEX_CHUNK]
            with self.session.translated(), wire.message_literals(self.client):
                rows = self.client.fetch(chunk, list(INDEX_ITEMS))
            messages.extend(_target_message(uid, rows[uid]) for uid in chunk if uid in rows)
        return messages, listing

    def flags_of(self, uids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The flags of messages of the selected folder, by UID (no \\Recent)."""
        found: dict[int, tuple[str, ...]] = {}
        for start in range(0, len(uids), INDEX_CHUNK):
            with self.session.translated():
                rows = self.client.fetch(list(uids[start:start + INDEX_CHUNK]), ["FLAGS"])
            found.update((uid, message_flags(_text(flag) for flag in row.get(b"FLAGS", ())))
                         for uid, row in rows.items() if isinstance(uid, int))
        return found

    def set_flags(self, uid: int, flags: tuple[str, ...]) -> None:
        """UID STORE FLAGS.SILENT: a server that dropped the flags given with APPEND."""
        with self.session.translated():
            self.client.set_flags([uid], list(flags), silent=True)

    def fetch_body(self, uid: int) -> bytes | None:
        with self.session.translated(), wire.message_literals(self.client):
            rows = self.client.fetch([uid], ["BODY.PEEK[]"])
        body = rows.get(uid, {}).get(b"BODY[]")
        return body if isinstance(body, bytes) else None


def read_namespace(session: ImapSession) -> Namespace:
    """The personal namespace of any server (source or target), or, without
    NAMESPACE, no prefix and the delimiter of ``LIST "" ""``."""
    client = session.client
    with session.translated():
        if client.has_capability("NAMESPACE"):
            personal = client.namespace().personal
            if personal:
                prefix, delimiter = personal[0]
                return Namespace(_text(prefix), _text(delimiter) if delimiter else None)
        root = client.list_folders("", "")
    delimiter = root[0][1] if root else None
    return Namespace("", _text(delimiter) if delimiter else None)


def expand_uid_set(text: str) -> list[int]:
    """``1:3,7`` → [1, 2, 3, 7] (RFC 4315 uid-set, in the order given)."""
    uids: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition(":")
        low, high = int(first), int(last or first)
        uids.extend(range(min(low, high), max(low, high) + 1))
    return uids


def _multiappend_item(item: AppendItem) -> dict[str, Any]:
    return {"msg": item.body, "flags": item.flags, "date": _aware(item.internaldate)}


def _internaldate(when: datetime) -> str:
    """RFC 3501 date-time in the message's own zone: ``05-Jan-2023 09:00:00 +0700``."""
    when = _aware(when)
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[when.month - 1]
    return f"{when.day:02d}-{month}-{when.year:04d} {when:%H:%M:%S %z}"


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _response(status: object, data: list[Any]) -> AppendResponse:
    raw = b" ".join(line for line in data if isinstance(line, bytes))
    text = " ".join(raw.decode("utf-8", "replace").split())[:300]
    code_match = RESPONSE_CODE.match(raw)
    code = code_match.group(1).decode("ascii").upper() if code_match else None
    if _text(status).upper() != "OK":
        return AppendResponse(ok=False, text=text or _text(status), code=code)
    uid_match = APPENDUID.search(raw)
    if uid_match is None:
        return AppendResponse(ok=True, text=text, code=code)
    return AppendResponse(ok=True, text=text, code=code, uidvalidity=int(uid_match.group(1)),
                          uids=tuple(expand_uid_set(uid_match.group(2).decode("ascii"))))


def _refused(text: str) -> AppendResponse:
    if wire.REFUSED_LITERAL in text:
        text = text.split(wire.REFUSED_LITERAL, 1)[1].strip(": ")
    code_match = re.search(r"\[([A-Za-z0-9.-]+)", text)
    return AppendResponse(ok=False, text=" ".join(text.split())[:300], code=code_match.group(1).upper()
                          if code_match else None)


def _target_message(uid: int, data: dict[bytes, Any]) -> TargetMessage:
    header = next((value for key, value in data.items()
                   if key.upper().startswith(b"BODY[HEADER.FIELDS") and isinstance(value, bytes)), b"")
    when = data.get(b"INTERNALDATE")
    if isinstance(when, datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    flags = message_flags(_text(flag) for flag in data.get(b"FLAGS", ()))
    return TargetMessage(uid=uid, size=int(data.get(b"RFC822.SIZE", 0)), flags=flags,
                         internaldate=when if isinstance(when, datetime) else None, header=header)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
