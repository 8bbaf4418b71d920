"""Read the few header fields we record (Message-ID, Subject, From, Date) from
raw message bytes, tolerating malformed mail.  Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import MessageError
from email.header import decode_header, make_header
from email.utils import parseaddr

HEADER_END = re.compile(rb"\r?\n\r?\n")
WANTED_FIELD = re.compile(rb"^(message-id|subject|from|return-path|date)[ \t]*:(.*(?:\r?\n[ \t].*)*)",
                          re.IGNORECASE | re.MULTILINE)
UNFOLD = re.compile(rb"\r?\n(?=[ \t])|\r$")
MAX_HEADER_BYTES = 256 * 1024
_ADDR = r'[^\s<>"(),;:\\@\[\]]+@[^\s<>"(),;:\\@\[\]]+'
PLAIN_ADDRESS = re.compile(rf'\s*(?:({_ADDR})|[^"()<>\\,;:@\[\]]*<({_ADDR})>)\s*\Z')


@dataclass(frozen=True)
class HeaderSummary:
    message_id: str | None
    subject: str | None
    sender: str | None  # bare address, for the mbox From_ line
    date: str | None


def header_block(head: bytes) -> bytes:
    match = HEADER_END.search(head, 0, MAX_HEADER_BYTES)
    return head[: match.start()] if match else head[:MAX_HEADER_BYTES]


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
    for match in WANTED_FIELD.finditer(block):
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
    if not any("\udc80" <= char <= "\udcff" for char in text):
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
