"""STATUS of many folders with several commands in flight, read off the connection.

A server without LIST-STATUS (RFC 5819) is asked folder by folder.  One
round trip per folder, each answer run through imapclient's generic parser,
was most of the time a hostile server's 100,000 folders cost (a profile of
`mailbackup folders`: 51 s of 70 s in `session.status`).  Here up to
`WINDOW` STATUS commands are in flight at once (RFC 3501 §5.5 allows it:
they do not depend on each other), and each ``* STATUS name (...)`` answer
names its folder, so answers are matched by name, whatever order the
tagged completions come in.

Best effort by design: a folder whose STATUS is refused, or not answered
because the server mishandles pipelined commands, is simply left out of the
result, and the caller asks for it on its own (which reports its error as
before).  The answers are held to the limits of imap/wire.py: at most
`MAX_RESPONSE_ENTRIES` lines and `MAX_RESPONSE_BYTES` bytes between two
completions, literals of at most `MAX_RESPONSE_LITERAL` bytes.

Public API: `wire_names(names, unusable)`, then
`pipelined_statuses(reader, send, wanted, items, progress, result)` into a `StatusRead`.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping
from typing import BinaryIO

from mailbackup.i18n import _
from mailbackup.imap import utf7
from mailbackup.imap.lexer import ProtocolViolation, Quoted, discard, gather, read_line, read_value, tokens
from mailbackup.imap.pipeline import closed, new_tag
from mailbackup.imap.wire import MAX_RESPONSE_BYTES, MAX_RESPONSE_ENTRIES, MAX_RESPONSE_LITERAL, too_large
from mailbackup.store.body import MessageBody

COMMON_SHAPE = re.compile(rb'\* STATUS "([^"\\\x00]*)" \(([A-Za-z0-9. =-]*)\)\r?\n\Z', re.IGNORECASE)
WINDOW = 64  # commands in flight: a few KB each way, well inside the socket buffers (no send/receive deadlock)


class StatusRead:
    """What a pipelined STATUS run learnt: values per folder name, and whether
    the server answered a command sent behind another with BAD."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, object]] = {}
        self.pipelining_refused = False


def pipelined_statuses(reader: BinaryIO, send: Callable[[bytes], None], wanted: Mapping[bytes, str],
                       items: list[str], progress: Callable[[], None], result: StatusRead) -> None:
    """STATUS (`items`) of every folder in `wanted` (wire name → name), into
    `result` as the answers arrive (what was read stays there if a later
    answer breaks the connection)."""
    todo = iter(wanted)
    in_flight: deque[bytes] = deque()
    behind: set[bytes] = set()  # sent while an earlier command was unanswered
    suffix = (" (" + " ".join(items) + ")\r\n").encode("ascii")
    lines = size = 0
    while True:
        if len(in_flight) <= WINDOW // 2:
            commands = []
            for wire_name in todo:
                tag = new_tag()
                commands.append(tag + b" STATUS " + quoted(wire_name) + suffix)
                if in_flight:
                    behind.add(tag)
                in_flight.append(tag)
                if len(in_flight) >= WINDOW:
                    break
            if commands:
                send(b"".join(commands))
                progress()
        if not in_flight:
            return
        line = read_line(reader)
        if line.startswith(b"* "):
            lines, size = lines + 1, size + len(line)
            if lines > MAX_RESPONSE_ENTRIES or size > MAX_RESPONSE_BYTES:
                raise too_large()
            _untagged(reader, line, wanted, result)
            continue
        tag, _space, rest = line.partition(b" ")
        if tag not in in_flight:
            raise ProtocolViolation(_("server sent a line that is not an IMAP response: {line!r}").format(
                line=line[:60]))
        if rest[:3].upper() == b"BAD" and tag in behind:
            result.pipelining_refused = True
        in_flight.remove(tag)
        behind.discard(tag)
        lines = size = 0
        progress()


def wire_names(names: Iterable[str], unusable: Container[str]) -> dict[bytes, str]:
    """Wire name → name of each folder that can be named back to the server."""
    wanted = {}
    for name in names:
        if name in unusable:
            continue
        with contextlib.suppress(ValueError):
            wanted[b"INBOX" if name.upper() == "INBOX" else utf7.encode(name)] = name
    return wanted


def quoted(wire_name: bytes) -> bytes:
    """A modified UTF-7 name (ASCII, no CR or LF) as an IMAP quoted string."""
    return b'"' + wire_name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _untagged(reader: BinaryIO, line: bytes, wanted: Mapping[bytes, str], result: StatusRead) -> None:
    common = COMMON_SHAPE.match(line)
    if common:  # the usual answer, read by one expression: the tokenizer below cost 3× as much
        raw, pairs = common.group(1), common.group(2).decode("ascii").upper().split()
        if raw in wanted and len(pairs) % 2 == 0:
            result.values[wanted[raw]] = dict(zip(pairs[::2], pairs[1::2], strict=True))
            return
    text, literals = gather(reader, line, spool_dir=None, spool_above=MAX_RESPONSE_LITERAL)
    try:
        if text[2:40].upper().startswith(b"BYE"):
            raise closed(text)
        if text[2:9].upper() != b"STATUS ":
            return  # EXISTS of the selected folder, an alert: not ours
        parsed = _status_answer(list(tokens(text[9:], literals)))
        if parsed is not None and parsed[0] in wanted:
            result.values[wanted[parsed[0]]] = parsed[1]
    finally:
        discard(literals)


def _status_answer(token_list: list[object]) -> tuple[bytes, dict[str, object]] | None:
    """(wire name, {ITEM: value}) of ``name (ITEM value ...)``; None for an answer that does not read so."""
    if len(token_list) < 2:
        return None
    name = token_list[0]
    if isinstance(name, Quoted):
        raw = name.raw
    elif isinstance(name, MessageBody):
        raw = name.data or b""
    elif isinstance(name, str):
        raw = name.encode("utf-8", "replace")
    else:
        return None
    values, end = read_value(token_list, 1)
    if end != len(token_list) or not isinstance(values, tuple) or len(values) % 2:
        return None
    return raw, {str(key).upper(): value for key, value in zip(values[::2], values[1::2], strict=True)}
