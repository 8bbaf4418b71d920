"""Read the few header fields we record (Message-ID, Subject, From, Date) from
raw message bytes, tolerating malformed mail.  Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import MessageError
from email.header import decode_header, make_header
from email.utils import parseaddr

# A field at the start of a line (the block is searched with a newline put before it).  The
# newline leads, not `^` under MULTILINE: the regex engine then skips to each newline at C speed
# instead of trying the pattern at every byte (a third of a sweep's header reading).
WANTED_FIELD = re.compile(rb"\n(?i:(message-id|subject|from|return-path|date))[ \t]*:(.*(?:\r?\n[ \t].*)*)")
UNFOLD = re.compile(rb"\r?\n(?=[ \t])|\r$")
MAX_HEADER_BYTES = 256 * 1024
_ADDR = r'[^\s<>"(),;:\\@\[\]]+@[^\s<>"(),;:\\@\[\]]+'
PLAIN_ADDRESS = re.compile(rf'\s*(?:({_ADDR})|[^"()<>\\,;:@\[\]]*<({_ADDR})>)\s*\Z')
SURROGATE = re.compile("[\udc80-\udcff]")  # an 8-bit byte kept by surrogateescape


@dataclass(frozen=True)
class HeaderSummary:
    message_id: str | None
    subject: str | None
    sender: str | None  # bare address, for the mbox From_ line
    date: str | None


def header_block(head: bytes) -> bytes:
    """Up to the empty line (its line ending excluded), within MAX_HEADER_BYTES."""
    ends = [found for found in (head.find(b"\n\n", 0, MAX_HEADER_BYTES), head.find(b"\n\r\n", 0, MAX_HEADER_BYTES))
            if found >= 0]
    if not ends:
        return head[:MAX_HEADER_BYTES]
    end = min(ends)
    return head[: end - 1 if end and head[end - 1] == 0x0D else end]


def summarize(head: bytes) -> HeaderSummary:
    """`head` is the start of the message (its header block is enough)."""
    fields = header_fields(header_block(head))
    return HeaderSummary(
        message_id=_clean(fields.get("message-id")),
        subject=decode_text(fields.get("subject")),
        sender=_address(fields.get("return-path")) or _address(fields.get("from")),
        date=_clean(fields.get("date")),
    )


def header_fields(block: bytes) -> dict[str, str]:
    """The first occurrence of each field we record, unfolded, 8-bit bytes kept
    as surrogates (as the email package's compat32 does).  A regular
    expression instead of the email parser: this runs once per message."""
    fields: dict[str, str] = {}
    for match in WANTED_FIELD.finditer(b"\n" + block):
        name = match.group(1).decode("ascii").lower()
        if name not in fields:
            value = UNFOLD.sub(b" ", match.group(2)).strip()
            fields[name] = value.decode("ascii", "surrogateescape")
    return fields


def decode_text(value: object) -> str | None:
    """RFC 2047 words to text; raw 8-bit headers are read as UTF-8, then TIS-620."""
    if value is None:
        return None
    raw = str(value)
    if "=?" not in raw:  # no encoded word (most Subjects): the email package would give it back as it is
        return " ".join(_fix_surrogates(raw).split()) or None
    try:
        text = str(make_header(decode_header(raw)))
    except (UnicodeError, LookupError, ValueError, TypeError, MessageError):  # a broken encoded word
        text = raw
    text = _fix_surrogates(text)
    return " ".join(text.split()) or None


def _fix_surrogates(text: str) -> str:
    if text.isascii() or not SURROGATE.search(text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    for charset in ("utf-8", "tis-620"):
        try:
            return raw.decode(charset)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace")


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = _fix_surrogates(" ".join(str(value).split()))
    return text[:998] or None


def _address(value: object) -> str | None:
    if value is None:
        return None
    text = _fix_surrogates(str(value))
    plain = PLAIN_ADDRESS.match(text)  # `a@b`, `<a@b>`, `Name <a@b>`: parseaddr is most of a summary's cost
    address = plain.group(1) or plain.group(2) if plain else parseaddr(text)[1]
    return address or None
