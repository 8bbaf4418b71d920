"""The lowest layer of reading a server's response: lines, literals and tokens.

A response is read line by line; a line ending in ``{n}`` announces a literal
of n bytes that follows it, after which the response goes on with the next
line (RFC 3501 §4.3).  `gather` reads one whole response and hands back its
text with each literal replaced by a NUL-framed index (``\\x000\\x00``), so the
parser never sees literal bytes; `tokens` splits such a text.

A line may end in CRLF or in a bare LF: GNU mailutils imap4d sends a bare LF
after ``AUTHENTICATE PLAIN``, and nothing in a response is lost by taking LF
alone as the end of a line.

Whatever breaks the protocol raises `ProtocolViolation`: nothing after it on
the connection can be trusted.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from mailbackup import faults
from mailbackup.errors import ConnectionLost, ExitCode, ServerError, StorageError
from mailbackup.i18n import _
from mailbackup.store.body import MessageBody, SpoolFile
from mailbackup.text import system_error

MAX_LINE = 1 << 20  # a response line longer than this (without its literals) is hostile
MAX_LITERAL = 1 << 31  # no message of 2 GB exists on a mail server we back up
# A message body arriving on a slow link is progress piece by piece (imap/deadline.py):
# 64 KB must come within --timeout, so a link of a few KB/s is still fine.
PROGRESS_CHUNK = 64 * 1024
LITERAL_AT_END = re.compile(rb"\{(\d{1,12})\+?\}\r?\n\Z")
TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\x00(\d+)\x00|([^\s()"\x00]+))', re.S)
_spool_names = itertools.count(1)


class ProtocolViolation(ConnectionLost):
    """The server broke IMAP mid-response; the connection must be dropped (see the module docstring)."""

    exit_code = ExitCode.PROTOCOL


class ResponseTooLarge(ServerError):
    """A server's answer outside a message body passed our limits (imap/wire.py);
    the connection is dropped rather than hold the answer in memory."""


def read_line(reader: BinaryIO) -> bytes:
    """One response line, with its line end (CRLF or a bare LF)."""
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise ConnectionLost(_("server closed the connection"))
    if len(line) > MAX_LINE:
        raise ProtocolViolation(_("server sent a response line longer than {limit} bytes").format(limit=MAX_LINE))
    if not line.endswith(b"\n"):
        raise ConnectionLost(_("connection closed in the middle of a response"))
    return line


def gather(reader: BinaryIO, line: bytes, *, spool_dir: Path | None, spool_above: int,
           progress: Callable[[], None] = lambda: None) -> tuple[bytes, list[MessageBody]]:
    """The response starting with `line`: its text with each literal replaced
    by a NUL-framed index, and the literals (bodies above `spool_above` bytes
    spooled to `spool_dir`; without one, such a literal is refused)."""
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
            literals.append(read_literal(reader, size, spool_dir=spool_dir, spool_above=spool_above,
                                         progress=progress))
            line = read_line(reader)
    except BaseException:
        discard(literals)
        raise


def read_literal(reader: BinaryIO, size: int, *, spool_dir: Path | None, spool_above: int,
                 progress: Callable[[], None] = lambda: None) -> MessageBody:
    if size <= spool_above:
        data = reader.read(size) if size <= PROGRESS_CHUNK else _read_in_pieces(reader, size, progress)
        if len(data) != size:
            raise ConnectionLost(_("connection closed in the middle of a message"))
        return MessageBody.from_bytes(data)
    if spool_dir is None:  # reading sizes and flags: no literal this big belongs here
        raise ProtocolViolation(_("server sent an unexpected literal of {size} bytes").format(size=size))
    try:
        spool = SpoolFile(spool_dir, f"fetch-{next(_spool_names)}.part")
    except OSError as exc:  # a local disk problem, not the connection's
        raise StorageError(_("cannot write {path}: {error}").format(
            path=spool_dir, error=system_error(exc))) from None
    try:
        _copy_to_spool(reader, size, spool, progress)
    except BaseException:
        spool.abort()
        raise
    return spool.finish()


def _read_in_pieces(reader: BinaryIO, size: int, progress: Callable[[], None]) -> bytes:
    data = bytearray()
    while len(data) < size:
        piece = reader.read(min(PROGRESS_CHUNK, size - len(data)))
        if not piece:
            break
        data += piece
        progress()
    return bytes(data)


def _copy_to_spool(reader: BinaryIO, size: int, spool: SpoolFile, progress: Callable[[], None]) -> None:
    left = size
    while left:
        chunk = reader.read(min(PROGRESS_CHUNK, left))
        progress()
        if not chunk:
            raise ConnectionLost(_("connection closed in the middle of a message"))
        try:
            spool.write(chunk)
        except OSError as exc:
            raise StorageError(_("cannot write {path}: {error}").format(
                path=spool.path, error=system_error(exc))) from None
        left -= len(chunk)
        if left <= size // 2:
            faults.point("mid-large")


def discard(literals: list[MessageBody]) -> None:
    for literal in literals:
        literal.discard()


class Quoted(str):
    """A quoted string, kept apart from atoms (NIL is an atom, "NIL" is text),
    with its bytes (a body may come quoted: `BODY[] ""` for an empty message)."""

    raw: bytes = b""


def tokens(text: bytes, literals: list[MessageBody]) -> Iterator[object]:
    """``(``, ``)``, atoms (str), `Quoted` strings and literals (MessageBody) of a gathered text."""
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
            token = Quoted(raw.decode("utf-8", "replace"))
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


def is_bare(token: object, text: str) -> bool:
    """Whether `token` is the bracket or atom `text` itself, not a quoted string that reads the same."""
    return token == text and not isinstance(token, Quoted)


def read_value(token_list: list[object], index: int) -> tuple[object, int]:
    """The value starting at `index` (a parenthesised list becomes a tuple, NIL None) and the index after it."""
    token = token_list[index]
    if is_bare(token, "("):
        items: list[object] = []
        index += 1
        while index < len(token_list) and not is_bare(token_list[index], ")"):
            item, index = read_value(token_list, index)
            items.append(item)
        return tuple(items), index + 1
    if is_bare(token, "NIL"):
        return None, index + 1
    return token, index + 1
