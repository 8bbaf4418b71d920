"""Opening a folder in one round trip, and the next one's before this one's
answers are read.

An opening is EXAMINE, the FETCH of every message's UID, size, flags and
date, and, for a small folder backed up the first time, the FETCH of its
whole messages, all sent before EXAMINE is answered.  Should the EXAMINE
fail, no folder is selected and both FETCHes are refused (RFC 3501 6.3.1),
so nothing is read from a folder we did not ask for.

A connection that works through small new folders one after the other
would still wait a round trip between them, the next opening going out only
once the last folder is stored (a rawlog timeline of 1,500 messages in 12
folders on 4 connections, 100 ms each way: 0.2-0.3 s between a
connection's folders).  So the next folders' openings may be sent right
behind this one's (`Ahead`), and their answers wait on the connection until
those folders are asked for.  RFC 3501 5.5: where a later command would
change what an earlier one answers (here: another folder selected), the
server runs them to completion in the order sent, so the second EXAMINE
takes effect only after the first folder's FETCHes were answered.  A
server seen to mishandle pipelined commands gets one command at a time,
and nothing is sent ahead (session.py).

Public API: `FirstBodies`, `Ahead`, `Opening`, `send_opening(client, name,
first_bodies)`, `read_rows(opening)` (the listing's rows and the bodies
that are exactly the first `count` messages), `discard(client, openings)`
(openings nobody asked for: their answers read and let go) and
`discard_rows(opening)` (the same, its EXAMINE answered already) and
`refusal(typ, data)` (the text of a refused EXAMINE).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imapclient

from mailbackup.errors import ServerError
from mailbackup.imap import wire
from mailbackup.imap.answers import text_of
from mailbackup.imap.parse import MetaRow
from mailbackup.imap.pipeline import BatchResult, FetchPipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FirstBodies:
    """Fetch the whole of a folder's first `count` messages with its listing (a
    small folder backed up the first time: one round trip instead of two);
    bodies above `spool_above` bytes go to files in `spool_dir`."""

    count: int
    spool_dir: Path
    spool_above: int


Ahead = tuple[str, FirstBodies | None]  # a folder to open ahead: its name, and its first bodies


@dataclass(frozen=True)
class Opening:
    """The commands of one opening, sent, with the tags their answers will carry."""

    name: str
    first_bodies: FirstBodies | None
    reader: FetchPipeline
    examine_tag: bytes
    listing_tag: bytes
    bodies_tag: bytes | None

    def is_for(self, name: str, first_bodies: FirstBodies | None) -> bool:
        return self.name == name and self.first_bodies == first_bodies


def send_opening(client: imapclient.IMAPClient, name: str, first_bodies: FirstBodies | None) -> Opening:
    spool_dir, spool_above = (None, 1 << 16) if first_bodies is None else \
        (first_bodies.spool_dir, first_bodies.spool_above)
    reader = FetchPipeline(*wire.stream_of(client), spool_dir=spool_dir, spool_above=spool_above,
                           progress=wire.progress_of(client))
    examine_tag = wire.send_examine(client, name)
    listing_tag = reader.send_meta("1:*")
    bodies_tag = None if first_bodies is None else reader.send_first_bodies(first_bodies.count)
    return Opening(name, first_bodies, reader, examine_tag, listing_tag, bodies_tag)


def read_rows(opening: Opening) -> tuple[list[MetaRow], BatchResult | None]:
    """The listing's rows, and the bodies of the first `count` messages (None
    when there are none); any other body the server sent is let go."""
    reader, first_bodies = opening.reader, opening.first_bodies
    if opening.bodies_tag is None or first_bodies is None:
        return reader.read_meta(opening.listing_tag), None
    rows, batch = reader.read_listing_and_bodies(opening.listing_tag, opening.bodies_tag)
    # Sequence numbers 1..count are the `count` lowest UIDs (RFC 3501 2.3.1.2): the batch those
    # are, whatever else the server sent.
    wanted = set(sorted(row.uid for row in rows)[:first_bodies.count])
    for message in batch.messages:
        if message.uid not in wanted:
            message.body.discard()
    batch.messages = [message for message in batch.messages if message.uid in wanted]
    batch.uids = sorted(wanted)
    return rows, batch if wanted else None


def discard(client: imapclient.IMAPClient, openings: deque[Opening]) -> tuple[bool, list[str]]:
    """Read the answers of the openings sent, in order, and let them go:
    whether the last EXAMINE succeeded (the server has that folder selected
    now), and what the server said to those it refused (a "not now" is
    waited out by the caller, as for any other command)."""
    opened, refusals = False, []
    while openings:
        opening = openings[0]
        log.debug("folder %r was opened ahead, then not asked for; its answers are let go", opening.name)
        typ, data = wire.complete_examine(client, opening.examine_tag)
        discard_rows(opening)
        openings.popleft()
        opened = typ == "OK"
        if not opened:
            refusals.append(refusal(typ, data))
    return opened, refusals


def refusal(typ: str, data: list[Any]) -> str:
    """What the server said when it refused an EXAMINE."""
    return text_of(data[-1]) if data and data[-1] else typ


def discard_rows(opening: Opening) -> None:
    """Read the answers to an opening's FETCHes and let them go (its EXAMINE's are read)."""
    with contextlib.suppress(ServerError):  # a refused FETCH (PipelinedCommandRefused is one) is read all the same
        _rows, batch = read_rows(opening)
        if batch is not None:
            for message in batch.messages:
                message.body.discard()
