"""``* SEARCH`` answers read into a `SortedUids` without an object per UID.

A big folder's ``UID SEARCH UID 1:*`` is one line of 100,000 numbers.
imapclient decodes it to text, splits it into 100,000 strings and converts
each to an int: a tracemalloc profile of an incremental run of a
100,000-message folder measured 21.7 MB allocated at the peak of that one
call, most of the run's peak.  Here the line is cut into pieces of about
`PIECE` bytes at spaces and each piece's numbers go straight into the array.

An answer of another shape (a MODSEQ part, anything but digits and spaces)
gives None: the caller asks imapclient, which parses everything.

Public API: `uid_search(client, *criteria)`, `search_answer(lines)`.
"""

from __future__ import annotations

import itertools
import re
from array import array
from collections.abc import Iterable

import imapclient

from mailbackup.imap import wire
from mailbackup.uids import UID_TYPECODE, SortedUids

PIECE = 64 * 1024
PLAIN = re.compile(rb"[0-9 ]*\Z")


def uid_search(client: imapclient.IMAPClient, *criteria: str) -> SortedUids:
    """`UID SEARCH criteria`; a refusal, or an answer of another shape, is
    asked again through imapclient (which reports a refusal as for any command)."""
    wire.pop_untagged(client, "SEARCH")
    typ, _data = wire.simple_command(client, "UID", "SEARCH", *criteria)
    found = search_answer(wire.pop_untagged(client, "SEARCH")) if typ == "OK" else None
    if found is None:
        found = SortedUids.of(client.search(list(criteria)))
    return found


def search_answer(lines: Iterable[object]) -> SortedUids | None:
    """The UIDs of the ``* SEARCH`` answers imaplib kept (text after the word
    SEARCH), ascending and without repeats; None for an answer of another shape."""
    numbers: array[int] = array(UID_TYPECODE)
    for line in lines:
        if line in (b"", None):
            continue
        if not isinstance(line, bytes) or not PLAIN.match(line):
            return None
        try:
            _extend(numbers, line)
        except OverflowError:  # no UID is that big (they are 32-bit): let imapclient's parser judge it
            return None
    if _strictly_ascending(numbers):
        return SortedUids.adopt(numbers)
    return SortedUids.of(numbers)  # a server may answer in any order (RFC 3501 leaves it open)


def _extend(numbers: array[int], line: bytes) -> None:
    start, end = 0, len(line)
    while start < end:
        stop = line.find(b" ", start + PIECE)
        stop = end if stop < 0 else stop
        numbers.extend(map(int, line[start:stop].split()))
        start = stop


def _strictly_ascending(numbers: array[int]) -> bool:
    return all(earlier < later for earlier, later in itertools.pairwise(numbers))
