"""Read/replied/flagged marks in the header lines mail readers take them from.

An archive keeps IMAP flags in its state (and, for Maildir, in file names);
a reader opening an exported mbox sees only the messages.  So exported
copies (never the archive) get the headers each reader looks at:

* Thunderbird's Local Folders read ``X-Mozilla-Status`` (4 hex digits) and
  ``X-Mozilla-Status2`` (8 hex digits) with the bits of nsMsgMessageFlags,
  and ``X-Mozilla-Keys`` for tags.  Without them every message shows unread.
* mutt and Dovecot's mbox driver read ``Status:`` (``R`` read, ``O`` old)
  and ``X-Status:`` (``A`` answered, ``F`` flagged, ``T`` draft, ``D``
  deleted).

The headers go first, in the message's own line ending; any earlier copy of
the same headers in the message (a message that once lived in Thunderbird)
is dropped from the header block, so a reader never sees two answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# nsMsgMessageFlags (mailnews/base/public/nsMsgMessageFlags.idl)
MOZ_READ = 0x0001
MOZ_REPLIED = 0x0002
MOZ_MARKED = 0x0004
MOZ_FORWARDED = 0x1000
# \Deleted (not yet expunged) as Thunderbird's IMAP-deleted mark, not as
# Expunged (0x0008): an expunged message is hidden and compacted away, and an
# export must not hide mail the server still holds.
MOZ_IMAP_DELETED = 0x00200000

MOZILLA_NAMES = (b"x-mozilla-status", b"x-mozilla-status2", b"x-mozilla-keys")
MBOX_NAMES = (b"status", b"x-status")
BLANK_LINE = re.compile(rb"\r?\n(\r?\n)")


def _has(flags: Iterable[str], name: str) -> bool:
    return any(flag.lower() == name.lower() for flag in flags)  # flag names are case-insensitive (RFC 3501)


def _keywords(flags: Iterable[str]) -> list[str]:
    return [flag for flag in flags if not flag.startswith("\\") and flag.lower() != "$forwarded"]


def mozilla_headers(flags: Iterable[str]) -> list[bytes]:
    flags = tuple(flags)
    status = ((MOZ_READ if _has(flags, "\\Seen") else 0) | (MOZ_REPLIED if _has(flags, "\\Answered") else 0)
              | (MOZ_MARKED if _has(flags, "\\Flagged") else 0)
              | (MOZ_FORWARDED if _has(flags, "$Forwarded") else 0))
    status2 = MOZ_IMAP_DELETED if _has(flags, "\\Deleted") else 0
    headers = [b"X-Mozilla-Status: %04x" % status, b"X-Mozilla-Status2: %08x" % status2]
    keywords = _keywords(flags)
    if keywords:
        headers.append(b"X-Mozilla-Keys: " + " ".join(keywords).encode("utf-8"))
    return headers


def mbox_headers(flags: Iterable[str]) -> list[bytes]:
    flags = tuple(flags)
    status = ("R" if _has(flags, "\\Seen") else "") + "O"  # O: seen by a reader before, not "new"
    extra = "".join(letter for letter, flag in (("A", "\\Answered"), ("F", "\\Flagged"), ("T", "\\Draft"),
                                                 ("D", "\\Deleted")) if _has(flags, flag))
    headers = [b"Status: " + status.encode("ascii")]
    if extra:
        headers.append(b"X-Status: " + extra.encode("ascii"))
    return headers


def with_headers(body: bytes, headers: list[bytes], replaced: tuple[bytes, ...]) -> bytes:
    """`body` with `headers` first and any header named in `replaced` dropped from its header block."""
    newline = b"\r\n" if body.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    head, separator, rest = _split_header_block(body)
    kept = _without(head, replaced)
    return b"".join(line + newline for line in headers) + kept + separator + rest


def _split_header_block(body: bytes) -> tuple[bytes, bytes, bytes]:
    """(headers with their line endings, the blank line, the rest); no blank line: all headers."""
    if body.startswith((b"\n", b"\r\n")):  # no header at all
        blank = body[:body.index(b"\n") + 1]
        return b"", blank, body[len(blank):]
    found = BLANK_LINE.search(body)
    if found is None:
        return body, b"", b""
    return body[:found.start(1)], found.group(1), body[found.end():]


def _without(head: bytes, names: tuple[bytes, ...]) -> bytes:
    out: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):  # a folded continuation belongs to the header before it
            if not dropping:
                out.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() in names
        if not dropping:
            out.append(line)
    return b"".join(out)
