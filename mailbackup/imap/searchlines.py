"""``* SEARCH`` answers read into a `SortedUids` without an object per UID.

A big folder's ``UID SEARCH UID 1:*`` is one line of 100,000 numbers.
imapclient decodes it to text, splits it into 100,000 strings and converts
each to an int: a tracemalloc profile of an incremental run of a
100,000-message folder measured 21.7 MB allocated at the peak of that one
call, most of the run's peak.  imaplib alone still held the line three
times (its reader's pieces, the line, the line without its tag), 2-3 MB at
100,000 UIDs and most of the peak of a run fetching new mail, and refused
it past 1,000,000 bytes (about 145,000 UIDs).  So the command goes past
imaplib, as FETCHes do (pipeline.py), and its answer is read off the stream
`PIECE` bytes at a time, each piece's numbers going straight into the array.

An answer of another shape (a MODSEQ part, anything but digits and spaces)
gives None: the caller asks imapclient, which parses everything.

Public API: `uid_search(client, *criteria)`, `read_search(reader, tag)`.
"""

from __future__ import annotations

import itertools
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import imapclient

from mailbackup.errors import ConnectionLost
from mailbackup.i18n import _
from mailbackup.imap import wire
from mailbackup.imap.lexer import ProtocolViolation, discard, gather, read_line
from mailbackup.imap.pipeline import EXISTS_LINE, closed, new_tag, send_or_lost
from mailbackup.uids import UID_TYPECODE, SortedUids

PIECE = 16 * 1024  # its numbers as Python objects cost about 6 times its size, for a moment
PLAIN = re.compile(rb"[0-9 ]*\Z")
SEARCH_LINE = re.compile(rb"\* SEARCH(?: |\r?\n|\Z)", re.I)
LONGEST_UID = 10  # digits of 4294967295; a longer "number" is no UID
MAX_SEARCH_BYTES = wire.MAX_RESPONSE_BYTES  # about 2,000,000 UIDs


@dataclass(frozen=True)
class SearchAnswer:
    uids: SortedUids | None  # None: refused, or not only numbers (imapclient's parser decides)
    exists: int | None  # the last EXISTS the server sent meanwhile


def uid_search(client: imapclient.IMAPClient, *criteria: str) -> tuple[SortedUids, int | None]:
    """`UID SEARCH criteria`, read off the stream, and the last EXISTS sent
    meanwhile; a refusal, or an answer of another shape, is asked again
    through imapclient (which reports a refusal as for any command)."""
    reader, send = wire.stream_of(client)
    tag = new_tag()
    send_or_lost(send, tag + b" UID SEARCH " + " ".join(criteria).encode("ascii") + b"\r\n")
    answer = read_search(reader, tag, wire.progress_of(client))
    if answer.uids is None:
        return SortedUids.of(client.search(list(criteria))), answer.exists
    return answer.uids, answer.exists


def read_search(reader: BinaryIO, tag: bytes, progress: Callable[[], None] = lambda: None) -> SearchAnswer:
    """The answer to the ``UID SEARCH`` sent with `tag`, up to its tagged line."""
    numbers: array[int] = array(UID_TYPECODE)
    plain, exists = True, None
    while True:
        progress()
        line = reader.readline(PIECE)
        if SEARCH_LINE.match(line):
            plain = _read_numbers(reader, line[len(b"* SEARCH"):], numbers, progress) and plain
            continue
        if not line.endswith(b"\n"):
            line += read_line(reader)  # the rest of a long line of another kind (bounded there)
        line, literals = gather(reader, line, spool_dir=None, spool_above=PIECE)  # e.g. an unsolicited FETCH
        discard(literals)
        if line.startswith(tag + b" "):
            if not line[len(tag) + 1:].upper().startswith(b"OK") or not plain:
                return SearchAnswer(None, exists)
            uids = SortedUids.adopt(numbers) if _strictly_ascending(numbers) else SortedUids.of(numbers)
            return SearchAnswer(uids, exists)
        if line[2:40].upper().startswith(b"BYE"):
            raise closed(line)
        if not line.startswith(b"* "):
            raise ProtocolViolation(_("server sent a line that is not an IMAP response: {line!r}").format(
                line=line[:60]))
        if found := EXISTS_LINE.match(line):
            exists = int(found.group(1))


def _read_numbers(reader: BinaryIO, piece: bytes, numbers: array[int], progress: Callable[[], None]) -> bool:
    """Read a ``* SEARCH`` line to its end, `piece` (after the word SEARCH)
    first; its numbers go into `numbers`.  False when it holds anything else."""
    plain, carried, total = True, b"", len(piece)
    while True:
        text = carried + piece
        if text.endswith(b"\n"):
            return _take(text.rstrip(b"\r\n"), numbers) and plain
        cut = text.rfind(b" ") + 1  # a number may go on in the next piece
        plain = _take(text[:cut], numbers) and plain
        carried = text[cut:]
        if len(carried) > LONGEST_UID:
            plain, carried = False, b""
        piece = reader.readline(PIECE)
        total += len(piece)
        progress()
        if not piece:
            raise ConnectionLost(_("connection closed in the middle of a response"))
        if total > MAX_SEARCH_BYTES:
            raise ProtocolViolation(_("server sent a response line longer than {limit} bytes").format(
                limit=MAX_SEARCH_BYTES))


def _take(text: bytes, numbers: array[int]) -> bool:
    if not PLAIN.match(text):
        return False
    try:
        numbers.extend(map(int, text.split()))
    except OverflowError:  # no UID is that big (they are 32-bit)
        return False
    return True


def _strictly_ascending(numbers: array[int]) -> bool:
    return all(earlier < later for earlier, later in itertools.pairwise(numbers))
