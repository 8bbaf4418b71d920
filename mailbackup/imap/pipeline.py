"""Pipelined UID FETCH of whole messages, read straight off the connection.

Why not imapclient's `fetch()`: it waits for each command to finish before
the next is sent (one round trip per batch: on a 50 ms link that dominates),
holds every literal of a batch in memory, and runs its generic pure-Python
parser over every response (the CPU hot spot on a fast link).  Here several
FETCH commands are in flight at once; each response is read line by line
(lexer.py), message bodies are taken as literals without parsing them, and a
body larger than `spool_above` is streamed to a file so memory stays flat.

The protocol shape handled (RFC 3501 §7.4.2): untagged ``* n FETCH (...)``
lines whose items may carry ``{size}`` literals anywhere, unrelated untagged
responses (EXISTS, EXPUNGE, OK, flag updates), and our tagged completions in
command order.  A ``* BYE`` or a closed socket is a lost connection.

Some servers mishandle pipelined commands (Exchange 2003 and Office 365:
mbsync users set `PipelineDepth 1`): a command sent while another was still
unanswered is answered BAD, or tagged answers come in another order.  Either
sets `pipelining_refused`; from then on this pipeline keeps one command in
flight, and the session remembers it for its later pipelines (session.py).

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
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from mailbackup.errors import ConnectionLost, ServerBusy, ServerError
from mailbackup.i18n import _
from mailbackup.imap.lexer import ProtocolViolation, Quoted, discard, gather, read_line
from mailbackup.imap.parse import MetaRow, fetch_flags, internaldate, meta_row, parse_items
from mailbackup.imap.pushback import busy_error
from mailbackup.imap.uidset import to_sequence_set
from mailbackup.store.body import MessageBody
from mailbackup.text import printable, system_error

OUR_TAG = re.compile(rb"MB\d+ ")
TAGGED_END = re.compile(rb"[A-Za-z0-9]+ (OK|NO|BAD)\b", re.IGNORECASE)
EXISTS_LINE = re.compile(rb"\* (\d+) EXISTS\s*$", re.I)
_tags = itertools.count(1)


def send_or_lost(send: Callable[[bytes], object], data: bytes) -> None:
    """Send a command; a broken connection is ConnectionLost, as when reading."""
    try:
        send(data)
    except OSError as exc:
        raise ConnectionLost(_("connection lost while sending: {error}").format(error=system_error(exc))) from None


def new_tag() -> bytes:
    """A tag of ours for a command sent past imaplib (`OUR_TAG` recognises it)."""
    return f"MB{next(_tags)}".encode()


class PipelinedCommandRefused(ServerError):
    """BAD to a FETCH of sizes: a mistake, or (sent before the answer to EXAMINE)
    a server that refuses pipelined commands."""


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
                 spool_above: int, depth: int = 3, progress: Callable[[], None] = lambda: None) -> None:
        self.reader = reader
        self.send = send
        # Called when waiting begins and with each answer that moves a command on (imap/deadline.py).
        self.progress = progress
        self.spool_dir = spool_dir
        self.spool_above = spool_above
        self.depth = max(1, depth)
        self.pipelining_refused = False
        self._sent_behind: set[bytes] = set()  # tags sent while an earlier command was unanswered
        self.exists_seen: int | None = None  # the last untagged EXISTS a listing read

    def run(self, batches: Iterable[list[int]]) -> Generator[BatchResult, None, None]:
        """Yield each batch's result, in order, as its command completes."""
        todo = iter(enumerate(batches))
        in_flight: deque[tuple[bytes, BatchResult]] = deque()
        owner: dict[int, BatchResult] = {}
        self._fill(todo, in_flight, owner)
        while in_flight:
            tag, batch = in_flight[0]
            try:
                self._read_until_tagged(tag, batch, owner, {later for later, _batch in in_flight} - {tag})
            except BaseException:
                _discard_in_flight(in_flight)  # no spooled body outlives a broken stream
                raise
            in_flight.popleft()
            if batch.status == "BAD" and tag in self._sent_behind:
                self._refuse_pipelining()
            for uid in batch.uids:
                owner.pop(uid, None)
            try:
                yield batch
            except GeneratorExit:
                self._drain(in_flight, owner)  # the consumer stopped: read what is still on the wire
                raise
            self._fill(todo, in_flight, owner)

    def fetch_meta(self, sequence: str, *, by_sequence: bool = False) -> list[MetaRow]:
        """UID, size, flags and INTERNALDATE of the messages in `sequence`,
        read with the same reader as bodies (imapclient's generic parser
        costs more than the rest of an incremental run).  `by_sequence`:
        message sequence numbers (plain FETCH) instead of UIDs."""
        return self.read_meta(self.send_meta(sequence, by_sequence=by_sequence))

    def send_meta(self, sequence: str, *, by_sequence: bool = False) -> bytes:
        """Send the FETCH of `fetch_meta` without waiting: its tag, for `read_meta`."""
        tag = new_tag()
        command = b" FETCH " if by_sequence else b" UID FETCH "
        self._send(tag + command + sequence.encode("ascii") + b" (UID RFC822.SIZE FLAGS INTERNALDATE)\r\n")
        return tag

    def read_meta(self, tag: bytes) -> list[MetaRow]:
        rows: list[MetaRow] = []
        self.progress()
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                status, _separator, text = line[len(tag) + 1:].partition(b" ")
                if status.upper() != b"OK":
                    refused = PipelinedCommandRefused if status.upper() == b"BAD" else ServerError
                    raise refused(_("the server refused to list messages: {reply}").format(
                        reply=printable(text.decode("utf-8", "replace").strip())))
                return rows
            if not line.startswith(b"* "):
                raise self._stray(line)
            text, literals = self._gather(line)
            discard(literals)
            if text[2:40].upper().startswith(b"BYE"):
                raise closed(text)
            exists = EXISTS_LINE.match(text)
            if exists:  # mail arrived (or left) meanwhile: the folder's count now
                self.exists_seen = int(exists.group(1))
            row = meta_row(text)
            if row is not None:
                rows.append(row)
                self.progress()

    def send_first_bodies(self, count: int) -> bytes:
        """Send, without waiting, a FETCH of the whole of the first `count`
        messages by sequence number (never more, whatever the folder turns
        out to hold): its tag, for `read_first_bodies`."""
        tag = f"MB{next(_tags)}".encode()
        self._send(tag + b" FETCH 1:" + str(count).encode() + b" (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n")
        return tag

    def read_listing_and_bodies(self, listing_tag: bytes, bodies_tag: bytes) -> tuple[list[MetaRow], BatchResult]:
        """The answers to `send_meta` and `send_first_bodies` sent together.  A
        server may answer pipelined FETCHes interleaved (Dovecot does: RFC 3501
        5.5), so every line is routed by what it carries, not by its place:
        a body belongs to the second, sizes alone to the first.  The listing's
        refusal raises as in `read_meta`; the bodies' is in the result."""
        rows: list[MetaRow] = []
        bodies: dict[int, StreamedMessage] = {}
        answers: dict[bytes, tuple[bytes, bytes]] = {}
        try:
            while len(answers) < 2:
                self.progress()
                line = self._line()
                if not line.startswith(b"* "):
                    answers.update(self._tagged(line, (listing_tag, bodies_tag)))
                    continue
                message = self._listed_or_body(line, rows)
                if message is not None and message.uid not in bodies:
                    bodies[message.uid] = message
                elif message is not None:
                    message.body.discard()  # a second answer for one UID: keep the first
        except BaseException:
            discard([message.body for message in bodies.values()])
            raise
        status, text = answers[listing_tag]
        if status != b"OK":
            discard([message.body for message in bodies.values()])
            refused = PipelinedCommandRefused if status == b"BAD" else ServerError
            raise refused(_("the server refused to list messages: {reply}").format(
                reply=printable(text.decode("utf-8", "replace").strip())))
        status, text = answers[bodies_tag]
        batch = BatchResult(index=0, uids=sorted(bodies), messages=[bodies[uid] for uid in sorted(bodies)],
                            status=status.decode("ascii", "replace"),
                            text=printable(text.decode("utf-8", "replace").strip()))
        return rows, batch

    def _tagged(self, line: bytes, tags: tuple[bytes, ...]) -> dict[bytes, tuple[bytes, bytes]]:
        tag, _separator, rest = line.partition(b" ")
        if tag not in tags:
            raise self._stray(line)
        status, _separator, text = rest.partition(b" ")
        return {tag: (status.upper(), text)}

    def _stray(self, line: bytes) -> ProtocolViolation:
        """A line where an answer to a listing was due.  The end of another
        command (an EXAMINE sent behind it, opening.py) means the server
        answered pipelined commands out of order: pipelining is given up."""
        if not TAGGED_END.match(line):
            return ProtocolViolation(_("server sent a line that is not an IMAP response: {line!r}").format(
                line=line[:60]))
        return self._out_of_order(line)

    def _out_of_order(self, line: bytes) -> ProtocolViolation:
        self._refuse_pipelining()
        return ProtocolViolation(_("the server answered pipelined commands out of order: {line!r}").format(
            line=line[:60]))

    def _listed_or_body(self, line: bytes, rows: list[MetaRow]) -> StreamedMessage | None:
        """One untagged line of a listing sent with a FETCH of bodies: a row of
        the listing is added to `rows`; a message with its body is returned."""
        text, literals = self._gather(line)
        if text[2:40].upper().startswith(b"BYE"):
            discard(literals)
            raise closed(text)
        exists = EXISTS_LINE.match(text)
        if exists:
            self.exists_seen = int(exists.group(1))
        if not literals and b"BODY[" not in text.upper():
            row = meta_row(text)
            if row is not None:
                rows.append(row)
            return None
        return self._message(text, literals)

    def _refuse_pipelining(self) -> None:
        self.pipelining_refused = True
        self.depth = 1

    def _drain(self, in_flight: deque[tuple[bytes, BatchResult]], owner: dict[int, BatchResult]) -> None:
        for tag, batch in in_flight:
            self._read_until_tagged(tag, batch, owner, set())
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
            tag = new_tag()
            batch = BatchResult(index=index, uids=list(uids))
            command = tag + b" UID FETCH " + to_sequence_set(uids).encode() + \
                b" (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"
            self._send(command)
            if in_flight:
                self._sent_behind.add(tag)
            in_flight.append((tag, batch))
            owner.update((uid, batch) for uid in batch.uids)

    def _send(self, data: bytes) -> None:
        send_or_lost(self.send, data)

    def _read_until_tagged(self, tag: bytes, batch: BatchResult, owner: dict[int, BatchResult],
                           later: set[bytes]) -> None:
        self.progress()  # the wait starts now, not when the engine last read (it may have been writing)
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
            elif line.split(b" ", 1)[0] in later:
                # A later command answered before this one: which answers belong to which
                # command can no longer be told; the connection is given up, pipelining too.
                raise self._out_of_order(line)
            # a tagged answer to an earlier command of ours: already handled, ignore

    def _untagged(self, line: bytes, owner: dict[int, BatchResult]) -> None:
        text, literals = self._gather(line)
        head = text[2:40].upper()
        if head.startswith(b"BYE"):
            discard(literals)
            raise closed(text)
        message = self._message(text, literals)
        if message is None:
            return
        if message.uid not in owner:  # a UID we did not ask for
            message.body.discard()
            return
        owner[message.uid].messages.append(message)
        self.progress()

    def _message(self, text: bytes, literals: list[MessageBody]) -> StreamedMessage | None:
        """The message a ``* n FETCH`` line with its body carries; None (its
        literals let go) for any other line, e.g. an unsolicited flag update."""
        match = re.match(rb"\* \d+ FETCH ", text, re.I)
        if not match:
            discard(literals)
            return None
        try:
            items = parse_items(text[match.end():], literals)
            flags = fetch_flags(items.get("FLAGS"))
        except ProtocolViolation:
            discard(literals)
            raise
        uid = items.get("UID")
        body = items.get("BODY[]")
        if isinstance(body, Quoted):  # RFC 3501 allows a string of either kind; no CR/LF fits in a quoted one
            body = MessageBody.from_bytes(body.raw)
        if not isinstance(uid, int) or not isinstance(body, MessageBody):
            discard(literals)
            return None
        discard([literal for literal in literals if literal is not body])  # e.g. one swallowed by a quote
        return StreamedMessage(uid=uid, size=body.size, body=body, flags=flags,
                               internaldate=internaldate(items.get("INTERNALDATE")))

    def _gather(self, line: bytes) -> tuple[bytes, list[MessageBody]]:
        return gather(self.reader, line, spool_dir=self.spool_dir, spool_above=self.spool_above,
                      progress=self.progress)

    def _line(self) -> bytes:
        return read_line(self.reader)


def closed(text: bytes) -> ConnectionLost | ServerBusy:
    """What a ``* BYE`` means: a lost connection, or pushback (Gmail's
    ``* BYE [ALERT] Account exceeded ... bandwidth limits``) to be waited out."""
    reply = text[6:].decode("utf-8", "replace").strip()
    return busy_error(_("the server"), reply) or ConnectionLost(
        _("server closed the connection: {reply}").format(reply=reply))


def _discard_in_flight(in_flight: deque[tuple[bytes, BatchResult]]) -> None:
    for _tag, batch in in_flight:
        discard([message.body for message in batch.messages])
