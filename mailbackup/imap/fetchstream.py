"""Pipelined UID FETCH of whole messages, read straight off the connection.

Why not imapclient's `fetch()`: it waits for each command to finish before
the next is sent (one round trip per batch: on a 50 ms link that dominates),
holds every literal of a batch in memory, and runs its generic pure-Python
parser over every response (the CPU hot spot on a fast link).  Here several
FETCH commands are in flight at once; each response is read line by line,
message bodies are taken as literals without parsing them, and a body larger
than `spool_above` is streamed to a file so memory stays flat.

The protocol shape handled (RFC 3501 §7.4.2): untagged ``* n FETCH (...)``
lines whose items may carry ``{size}`` literals anywhere, unrelated untagged
responses (EXISTS, EXPUNGE, OK, flag updates), and our tagged completions in
command order.  A ``* BYE`` or a closed socket is a lost connection.

A response that breaks the protocol (a malformed FETCH, a literal whose
announced length does not match what follows, a line that is not IMAP, a
line or literal beyond our limits) raises `ProtocolViolation`: nothing after
it on the connection can be trusted, so the engine drops the connection and
isolates the batch exactly as after a lost link, and a message the server
always garbles ends up recorded as failed with the reason.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

from mailbackup import faults
from mailbackup.errors import ConnectionLost, ExitCode, ServerError, StorageError
from mailbackup.i18n import _
from mailbackup.imap.uidset import to_sequence_set
from mailbackup.model import message_flags
from mailbackup.store.body import MessageBody, SpoolFile

MAX_LINE = 1 << 20  # a response line longer than this (without its literals) is hostile
MAX_LITERAL = 1 << 31  # no message of 2 GB exists on a mail server we back up
READ_CHUNK = 1 << 20
LITERAL_AT_END = re.compile(rb"\{(\d{1,12})\+?\}\r?\n\Z")
TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\x00(\d+)\x00|([^\s()"\x00]+))', re.S)
OUR_TAG = re.compile(rb"MB\d+ ")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and line feed
_tags = itertools.count(1)


class ProtocolViolation(ConnectionLost):
    """The server broke IMAP mid-response; the connection must be dropped (see the module docstring)."""

    exit_code = ExitCode.PROTOCOL


@dataclass
class StreamedMessage:
    uid: int
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None
    body: MessageBody


@dataclass
class BatchResult:
    index: int
    uids: list[int]
    messages: list[StreamedMessage] = field(default_factory=list)
    status: str = "OK"
    text: str = ""


class FetchPipeline:
    """Fetch batches of UIDs with up to `depth` commands in flight."""

    def __init__(self, reader: BinaryIO, send: Callable[[bytes], None], *, spool_dir: Path | None,
                 spool_above: int, depth: int = 3) -> None:
        self.reader = reader
        self.send = send
        self.spool_dir = spool_dir
        self.spool_above = spool_above
        self.depth = max(1, depth)

    def run(self, batches: Iterable[list[int]]) -> Generator[BatchResult, None, None]:
        """Yield each batch's result, in order, as its command completes."""
        todo = iter(enumerate(batches))
        in_flight: deque[tuple[bytes, BatchResult]] = deque()
        owner: dict[int, BatchResult] = {}
        self._fill(todo, in_flight, owner)
        while in_flight:
            tag, batch = in_flight[0]
            try:
                self._read_until_tagged(tag, batch, owner)
            except BaseException:
                _discard_in_flight(in_flight)  # no spooled body outlives a broken stream
                raise
            in_flight.popleft()
            for uid in batch.uids:
                owner.pop(uid, None)
            try:
                yield batch
            except GeneratorExit:
                self._drain(in_flight, owner)  # the consumer stopped: read what is still on the wire
                raise
            self._fill(todo, in_flight, owner)

    def fetch_meta(self, sequence: str) -> list[MetaRow]:
        """UID, size, flags and INTERNALDATE of the messages in `sequence`,
        read with the same reader as bodies (imapclient's generic parser
        costs more than the rest of an incremental run)."""
        return self.read_meta(self.send_meta(sequence))

    def send_meta(self, sequence: str) -> bytes:
        """Send the FETCH of `fetch_meta` without waiting: its tag, for `read_meta`."""
        tag = f"MB{next(_tags)}".encode()
        self._send(tag + b" UID FETCH " + sequence.encode("ascii") + b" (UID RFC822.SIZE FLAGS INTERNALDATE)\r\n")
        return tag

    def read_meta(self, tag: bytes) -> list[MetaRow]:
        rows: list[MetaRow] = []
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                status, _separator, text = line[len(tag) + 1:].partition(b" ")
                if status.upper() != b"OK":
                    raise ServerError(_("the server refused to list messages: {reply}").format(
                        reply=printable(text.decode("utf-8", "replace").strip())))
                return rows
            if not line.startswith(b"* "):
                raise ProtocolViolation(_("server sent a line that is not an IMAP response: {line!r}").format(
                    line=line[:60]))
            text, literals = self._gather(line)
            _discard(literals)
            if text[2:40].upper().startswith(b"BYE"):
                raise ConnectionLost(_("server closed the connection: {reply}").format(
                    reply=text[6:].decode("utf-8", "replace").strip()))
            row = _meta_row(text)
            if row is not None:
                rows.append(row)

    def _drain(self, in_flight: deque[tuple[bytes, BatchResult]], owner: dict[int, BatchResult]) -> None:
        for tag, batch in in_flight:
            self._read_until_tagged(tag, batch, owner)
            for message in batch.messages:
                message.body.discard()
        in_flight.clear()

    def _fill(self, todo: Iterator[tuple[int, list[int]]], in_flight: deque[tuple[bytes, BatchResult]],
              owner: dict[int, BatchResult]) -> None:
        while len(in_flight) < self.depth:
            item = next(todo, None)
            if item is None:
                return
            index, uids = item
            tag = f"MB{next(_tags)}".encode()
            batch = BatchResult(index=index, uids=list(uids))
            command = tag + b" UID FETCH " + to_sequence_set(uids).encode() + \
                b" (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"
            self._send(command)
            in_flight.append((tag, batch))
            owner.update((uid, batch) for uid in batch.uids)

    def _send(self, data: bytes) -> None:
        try:
            self.send(data)
        except OSError as exc:
            raise ConnectionLost(_("connection lost while sending: {error}").format(error=exc.strerror or exc)) \
                from None

    def _read_until_tagged(self, tag: bytes, batch: BatchResult, owner: dict[int, BatchResult]) -> None:
        while True:
            line = self._line()
            if line.startswith(b"* "):
                self._untagged(line, owner)
            elif line.startswith(tag + b" "):
                status, _separator, text = line[len(tag) + 1:].partition(b" ")
                batch.status = status.decode("ascii", "replace").upper()
                batch.text = printable(text.decode("utf-8", "replace").strip())
                return
            elif line.startswith(b"+"):
                raise ProtocolViolation("server asked for a continuation nobody sent")
            elif not OUR_TAG.match(line):
                # e.g. the rest of a message body after a literal whose length lied
                raise ProtocolViolation(_("server sent a line that is not an IMAP response: {line!r}").format(
                    line=line[:60]))
            # a tagged answer to an earlier command of ours: already handled, ignore

    def _untagged(self, line: bytes, owner: dict[int, BatchResult]) -> None:
        text, literals = self._gather(line)
        head = text[2:40].upper()
        if head.startswith(b"BYE"):
            _discard(literals)
            raise ConnectionLost(_("server closed the connection: {reply}").format(
                reply=text[6:].decode("utf-8", "replace").strip()))
        match = re.match(rb"\* \d+ FETCH ", text, re.I)
        if not match:
            _discard(literals)
            return
        try:
            items = _parse_items(text[match.end():], literals)
            flags = _flags(items.get("FLAGS"))
        except ProtocolViolation:
            _discard(literals)
            raise
        uid = items.get("UID")
        body = items.get("BODY[]")
        if isinstance(body, _Quoted):  # RFC 3501 allows a string of either kind; no CR/LF fits in a quoted one
            body = MessageBody.from_bytes(body.raw)
        if not isinstance(uid, int) or uid not in owner or not isinstance(body, MessageBody):
            _discard(literals)  # an unsolicited flag update, or a UID we did not ask for
            return
        _discard([literal for literal in literals if literal is not body])  # e.g. one swallowed by a quote
        owner[uid].messages.append(StreamedMessage(
            uid=uid, size=body.size, body=body, flags=flags,
            internaldate=_internaldate(items.get("INTERNALDATE")),
        ))

    def _gather(self, line: bytes) -> tuple[bytes, list[MessageBody]]:
        """The response's text with each literal replaced by a NUL-framed index."""
        parts: list[bytes] = []
        literals: list[MessageBody] = []
        try:
            while True:
                match = LITERAL_AT_END.search(line)
                if not match:
                    parts.append(line.rstrip(b"\r\n"))
                    return b"".join(parts), literals
                size = int(match.group(1))
                if size > MAX_LITERAL:
                    raise ProtocolViolation(_("server announced a literal of {size} bytes; refusing").format(size=size))
                parts.append(line[: match.start()] + b"\x00%d\x00" % len(literals))
                literals.append(self._literal(size))
                line = self._line()
        except BaseException:
            _discard(literals)
            raise

    def _literal(self, size: int) -> MessageBody:
        if size <= self.spool_above:
            data = self.reader.read(size)
            if len(data) != size:
                raise ConnectionLost(_("connection closed in the middle of a message"))
            return MessageBody.from_bytes(data)
        if self.spool_dir is None:  # reading sizes and flags: no literal this big belongs here
            raise ProtocolViolation(_("server sent an unexpected literal of {size} bytes").format(size=size))
        try:
            spool = SpoolFile(self.spool_dir, f"fetch-{next(_tags)}.part")
        except OSError as exc:  # a local disk problem, not the connection's
            raise StorageError(_("cannot write {path}: {error}").format(
                path=self.spool_dir, error=exc.strerror or exc)) from None
        try:
            left = size
            while left:
                chunk = self.reader.read(min(READ_CHUNK, left))
                if not chunk:
                    raise ConnectionLost(_("connection closed in the middle of a message"))
                try:
                    spool.write(chunk)
                except OSError as exc:
                    raise StorageError(_("cannot write {path}: {error}").format(
                        path=spool.path, error=exc.strerror or exc)) from None
                left -= len(chunk)
                if left <= size // 2:
                    faults.point("mid-large")
        except BaseException:
            spool.abort()
            raise
        return spool.finish()

    def _line(self) -> bytes:
        line = self.reader.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionLost(_("server closed the connection"))
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            if len(line) > MAX_LINE:
                raise ProtocolViolation(_("server sent a response line longer than {limit} bytes").format(
                    limit=MAX_LINE))
            raise ConnectionLost(_("connection closed in the middle of a response"))
        return line


@dataclass(frozen=True)
class MetaRow:
    uid: int
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None


META_SHAPE = re.compile(
    rb'\* \d+ FETCH \(UID (\d+) RFC822\.SIZE (\d+) FLAGS \(([^()"\x00]*)\) INTERNALDATE "([^"\\\x00]*)"\)\Z')
FETCH_HEAD = re.compile(rb"\* \d+ FETCH ", re.IGNORECASE)


def _meta_row(text: bytes) -> MetaRow | None:
    """One ``* n FETCH (UID … RFC822.SIZE … FLAGS … INTERNALDATE …)`` line, or
    None for an untagged response that is not about a message's size."""
    common = META_SHAPE.match(text)
    if common:
        uid, size, flags, date = common.groups()
        return MetaRow(int(uid), int(size), _flags(tuple(flags.decode("utf-8", "replace").split())),
                       _internaldate(date.decode("ascii", "replace")))
    head = FETCH_HEAD.match(text)
    if not head:
        return None
    items = _parse_general(text[head.end():], [])
    uid, size = items.get("UID"), items.get("RFC822.SIZE")
    if not isinstance(uid, int) or "RFC822.SIZE" not in items:
        return None  # an unsolicited flag update
    # The body's own FETCH brings its size, flags and date again: nonsense here only
    # sizes a batch wrongly, whereas dropping the row would silently lose the message.
    try:
        flags = _flags(items.get("FLAGS"))
    except ProtocolViolation:
        flags = ()
    return MetaRow(uid, size if isinstance(size, int) else 0, flags, _internaldate(items.get("INTERNALDATE")))


# Dovecot's answer to our FETCH, in the order we ask, matched whole by one
# expression: the general parser below costs several times more per message.
COMMON_SHAPE = re.compile(
    rb'\(UID (\d+) FLAGS \(([^()"\x00]*)\) INTERNALDATE "([^"\\\x00]*)" RFC822\.SIZE (\d+) BODY\[\] \x000\x00\)\Z')


def _parse_items(text: bytes, literals: list[MessageBody]) -> dict[str, object]:
    """``(KEY value KEY value ...)`` → dict; values: int, str, tuple, MessageBody or None."""
    common = COMMON_SHAPE.match(text) if len(literals) == 1 else None
    if common:
        uid, flags, date, size = common.groups()
        return {"UID": int(uid), "FLAGS": tuple(flags.decode("utf-8", "replace").split()),
                "INTERNALDATE": _Quoted(date.decode("ascii", "replace")), "RFC822.SIZE": int(size),
                "BODY[]": literals[0]}
    return _parse_general(text, literals)


def _parse_general(text: bytes, literals: list[MessageBody]) -> dict[str, object]:
    """Any item list, in any order (other servers, other shapes)."""
    tokens = list(_tokens(text, literals))
    if not tokens or tokens[0] != "(" or isinstance(tokens[0], _Quoted):
        raise ProtocolViolation(_("malformed FETCH response: {text!r}").format(text=text[:80]))
    value, end = _value(tokens, 0)
    # The list must close exactly at the end of the response: anything else is
    # a broken server, or the rest of a body whose literal length lied.
    if end != len(tokens) or not isinstance(value, tuple) or len(value) % 2:
        raise ProtocolViolation(_("malformed FETCH response: {text!r}").format(text=text[:80]))
    items: dict[str, object] = {}
    for key, item in zip(value[0::2], value[1::2], strict=True):
        if not isinstance(key, str) or isinstance(key, _Quoted) or key.upper() in items:
            raise ProtocolViolation(_("malformed FETCH response: {text!r}").format(text=text[:80]))
        items[key.upper()] = _number(key.upper(), item)
    return items


def _flags(value: object) -> tuple[str, ...]:
    """FLAGS as sorted text, without the session-only \\Recent (model.message_flags)."""
    if value is None:
        return ()
    if not isinstance(value, tuple) or not all(isinstance(flag, str) for flag in value):
        raise ProtocolViolation(_("malformed FLAGS in a FETCH response: {value!r:.80}").format(value=value))
    return message_flags(value)


def _number(key: str, value: object) -> object:
    if key in ("UID", "RFC822.SIZE") and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _tokens(text: bytes, literals: list[MessageBody]) -> Iterator[object]:
    position = 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            if text[position:].strip():
                raise ProtocolViolation(_("malformed FETCH response near {text!r}").format(
                    text=text[position:position + 40]))
            return
        position = match.end()
        opening, closing, quoted, literal, atom = match.groups()
        if opening:
            yield "("
        elif closing:
            yield ")"
        elif quoted is not None:
            raw = re.sub(rb"\\(.)", rb"\1", quoted)
            token = _Quoted(raw.decode("utf-8", "replace"))
            token.raw = raw
            yield token
        elif literal is not None:
            index = int(literal)
            if index >= len(literals):  # a NUL-framed number the server sent itself
                raise ProtocolViolation(_("malformed FETCH response near {text!r}").format(
                    text=text[position - 40:position]))
            yield literals[index]
        elif atom is not None:
            yield atom.decode("utf-8", "replace")


class _Quoted(str):
    """A quoted string, kept apart from atoms (NIL is an atom, "NIL" is text),
    with its bytes (a body may come quoted: `BODY[] ""` for an empty message)."""

    raw: bytes = b""


def _value(tokens: list[object], index: int) -> tuple[object, int]:
    token = tokens[index]
    if token == "(" and not isinstance(token, _Quoted):
        items: list[object] = []
        index += 1
        while index < len(tokens) and not (tokens[index] == ")" and not isinstance(tokens[index], _Quoted)):
            item, index = _value(tokens, index)
            items.append(item)
        return tuple(items), index + 1
    if token == "NIL" and not isinstance(token, _Quoted):
        return None, index + 1
    return token, index + 1


MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
DATE_TIME = re.compile(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\s*\Z")


def _internaldate(value: object) -> datetime | None:
    """RFC 3501 date-time, parsed without the locale (strptime's %b is locale-bound)."""
    match = DATE_TIME.match(value) if isinstance(value, str) else None
    if not match or match.group(2).lower() not in MONTHS:
        return None
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes)) * (-1 if sign == "-" else 1)
    try:
        return datetime(int(year), MONTHS[month.lower()], int(day), int(hour), int(minute), int(second),
                        tzinfo=timezone(offset))
    except ValueError:
        return None


def printable(text: str) -> str:
    """Server text made safe to print: control characters but tab and line
    feed (a terminal escape sequence from a hostile server, a carriage return
    that would overwrite the line, a NUL) are shown as ``\\xNN``."""
    return CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _discard(literals: list[MessageBody]) -> None:
    for literal in literals:
        literal.discard()


def _discard_in_flight(in_flight: deque[tuple[bytes, BatchResult]]) -> None:
    for _tag, batch in in_flight:
        _discard([message.body for message in batch.messages])
