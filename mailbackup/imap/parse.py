"""FETCH responses into values: the item list, FLAGS, INTERNALDATE, and the
size listing's `MetaRow`.  Reads texts gathered by lexer.py; never touches
the connection."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mailbackup.i18n import _
from mailbackup.imap.lexer import ProtocolViolation, Quoted, is_bare, read_value, tokens
from mailbackup.model import message_flags
from mailbackup.store.body import MessageBody


@dataclass(frozen=True)
class MetaRow:
    uid: int
    size: int
    flags: tuple[str, ...]
    internaldate: datetime | None


META_SHAPE = re.compile(
    rb'\* \d+ FETCH \(UID (\d+) RFC822\.SIZE (\d+) FLAGS \(([^()"\x00]*)\) INTERNALDATE "([^"\\\x00]*)"\)\Z')
FETCH_HEAD = re.compile(rb"\* \d+ FETCH ", re.IGNORECASE)
# Dovecot's answer to our FETCH, in the order we ask, matched whole by one
# expression: the general parser below costs several times more per message.
COMMON_SHAPE = re.compile(
    rb'\(UID (\d+) FLAGS \(([^()"\x00]*)\) INTERNALDATE "([^"\\\x00]*)" RFC822\.SIZE (\d+) BODY\[\] \x000\x00\)\Z')


def meta_row(text: bytes) -> MetaRow | None:
    """One ``* n FETCH (UID … RFC822.SIZE … FLAGS … INTERNALDATE …)`` line, or
    None for an untagged response that is not about a message's size."""
    common = META_SHAPE.match(text)
    if common:
        uid, size, flags, date = common.groups()
        return MetaRow(int(uid), int(size), fetch_flags(tuple(flags.decode("utf-8", "replace").split())),
                       internaldate(date.decode("ascii", "replace")))
    head = FETCH_HEAD.match(text)
    if not head:
        return None
    items = parse_general(text[head.end():], [])
    uid, size = items.get("UID"), items.get("RFC822.SIZE")
    if not isinstance(uid, int) or "RFC822.SIZE" not in items:
        return None  # an unsolicited flag update
    # The body's own FETCH brings its size, flags and date again: nonsense here only
    # sizes a batch wrongly, whereas dropping the row would silently lose the message.
    try:
        flags = fetch_flags(items.get("FLAGS"))
    except ProtocolViolation:
        flags = ()
    return MetaRow(uid, size if isinstance(size, int) else 0, flags, internaldate(items.get("INTERNALDATE")))


def parse_items(text: bytes, literals: list[MessageBody]) -> dict[str, object]:
    """``(KEY value KEY value ...)`` → dict; values: int, str, tuple, MessageBody or None."""
    common = COMMON_SHAPE.match(text) if len(literals) == 1 else None
    if common:
        uid, flags, date, size = common.groups()
        return {"UID": int(uid), "FLAGS": tuple(flags.decode("utf-8", "replace").split()),
                "INTERNALDATE": Quoted(date.decode("ascii", "replace")), "RFC822.SIZE": int(size),
                "BODY[]": literals[0]}
    return parse_general(text, literals)


def parse_general(text: bytes, literals: list[MessageBody]) -> dict[str, object]:
    """Any item list, in any order (other servers, other shapes)."""
    token_list = list(tokens(text, literals))
    if not token_list or not is_bare(token_list[0], "("):
        raise ProtocolViolation(_("malformed FETCH response: {text!r}").format(text=text[:80]))
    value, end = read_value(token_list, 0)
    # The list must close exactly at the end of the response: anything else is
    # a broken server, or the rest of a body whose literal length lied.
    if end != len(token_list) or not isinstance(value, tuple) or len(value) % 2:
        raise ProtocolViolation(_("malformed FETCH response: {text!r}").format(text=text[:80]))
    items: dict[str, object] = {}
    for key, item in zip(value[0::2], value[1::2], strict=True):
        if not isinstance(key, str) or isinstance(key, Quoted) or key.upper() in items:
            raise ProtocolViolation(_("malformed FETCH response: {text!r}").format(text=text[:80]))
        items[key.upper()] = _number(key.upper(), item)
    return items


def fetch_flags(value: object) -> tuple[str, ...]:
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


MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
DATE_TIME = re.compile(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\s*\Z")


def internaldate(value: object) -> datetime | None:
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
