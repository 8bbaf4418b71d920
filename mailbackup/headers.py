"""Read the few header fields we record (Message-ID, Subject, From, Date) from
raw message bytes, tolerating malformed mail.  Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr

HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_HEADER_BYTES = 256 * 1024


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
    parsed = BytesHeaderParser(policy=compat32).parsebytes(header_block(head))
    return HeaderSummary(
        message_id=_clean(parsed.get("Message-ID")),
        subject=decode_text(parsed.get("Subject")),
        sender=_address(parsed.get("Return-Path")) or _address(parsed.get("From")),
        date=_clean(parsed.get("Date")),
    )


def decode_text(value: object) -> str | None:
    """RFC 2047 words to text; raw 8-bit headers are read as UTF-8, then TIS-620."""
    if value is None:
        return None
    raw = str(value)
    try:
        text = str(make_header(decode_header(raw)))
    except (UnicodeError, LookupError, ValueError, TypeError):
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
    address = parseaddr(_fix_surrogates(str(value)))[1]
    return address or None
