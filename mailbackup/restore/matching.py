"""Which message on a target folder is an archived copy: the same
Message-ID and size (the size a CRLF-storing server serves back counts too,
and a final newline a line-storing one adds),
or the same Message-ID and bytes (a server whose RFC822.SIZE is an estimate),
and, without a Message-ID, the same bytes.  Restoring uses it to find what a
killed run had already sent; checking the target, to find every copy.

Public API: `TargetIndex` (one target folder; each message claimed once),
`ArchivedBody` (an archived copy's bytes, read only when needed),
`crlf_normalized`, `line_stored`, `same_content` and `describe_change` (did the target
keep the bytes a restore sent, and if not, how it changed them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable

from mailbackup.headers import summarize
from mailbackup.i18n import _
from mailbackup.imap.append import TargetMessage
from mailbackup.model import StoredMessage

LINE_ENDS = re.compile(rb"\r?\n")
SAME_ID_COMPARED = 5  # target copies with an archived Message-ID but another size, compared byte for byte


def crlf_normalized(body: bytes) -> bytes:
    """What a server that stores mail with CRLF line ends serves back (Dovecot does)."""
    return LINE_ENDS.sub(b"\r\n", body)


def line_stored(normalized: bytes) -> bytes:
    """What a server that stores mail as lines serves back: a message without
    a final newline gains one (Courier-IMAP, docs/servers.md)."""
    return normalized if normalized.endswith(b"\r\n") or not normalized else normalized + b"\r\n"


def same_content(served: bytes, archived_sha256: str, sent: bytes) -> bool:
    """The target serves what was uploaded: the archived bytes, or those bytes
    with CRLF line ends (a server that stores mail so, as Dovecot does), or as
    lines with a final newline added (Courier-IMAP)."""
    return (hashlib.sha256(served).hexdigest() == archived_sha256
            or served in (crlf_normalized(sent), line_stored(crlf_normalized(sent))))


def describe_change(sent: bytes, served: bytes) -> str:
    """How a target changed a message, in a few words, for the check's report."""
    if len(sent) != len(served):
        if crlf_normalized(sent) == crlf_normalized(served):
            return _("its line ends were rewritten")
        return _("{served} bytes where {sent} were sent").format(served=len(served), sent=len(sent))
    differing = [index for index, (old, new) in enumerate(zip(sent, served, strict=True)) if old != new]
    if not differing:
        return _("the same bytes")
    header_end = sent.find(b"\n\r\n") if b"\n\r\n" in sent else sent.find(b"\n\n")
    in_header = header_end < 0 or differing[-1] < header_end
    if in_header and all(sent[index] >= 0x80 and served[index] == ord("X") for index in differing):
        # Cyrus 3.6 does this to raw 8-bit header bytes of an APPENDed message.
        return _("{count} raw 8-bit header bytes replaced with 'X'").format(count=len(differing))
    return _("{count} bytes differ, the first at byte {offset}").format(count=len(differing), offset=differing[0])


class ArchivedBody:
    """An archived message's bytes, read only when a match needs them.  A copy
    that cannot be read or is damaged matches nothing by its bytes."""

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._normalized: bytes | None = None
        self.damaged = False

    def normalized(self) -> bytes:
        if self._normalized is None and not self.damaged:
            try:
                self._normalized = crlf_normalized(self._read())
            except (OSError, ValueError):
                self.damaged = True
        return self._normalized if self._normalized is not None else b""


class TargetIndex:
    """The messages of one target folder; each can be claimed by one archived copy."""

    def __init__(self, messages: Iterable[TargetMessage], claimed: set[int],
                 fetch_body: Callable[[int], bytes | None]) -> None:
        self.claimed = claimed  # shared with the caller: UIDs already paired
        self.by_uid = {message.uid: message for message in messages}
        self.by_message_id: dict[str | None, list[TargetMessage]] = {}
        for message in self.by_uid.values():
            key = summarize(message.header).message_id if message.header else None
            self.by_message_id.setdefault(key, []).append(message)
        self._fetch_body = fetch_body

    def claim(self, message: StoredMessage, body: ArchivedBody) -> TargetMessage | None:
        """The first unclaimed target message with the same Message-ID and size
        (and, without a Message-ID, the same bytes); claimed when found."""
        candidates = [m for m in self.by_message_id.get(message.message_id, []) if m.uid not in self.claimed]
        same_size = [m for m in candidates if m.size == message.size]
        if not same_size and candidates:
            wire_size = len(body.normalized())
            same_size = [] if body.damaged else [m for m in candidates if m.size == wire_size]
        if not same_size and message.message_id is not None and not body.damaged:
            # RFC822.SIZE may be an estimate (Exchange without EnableExactRFC822Size): the bytes tell
            same_size = [m for m in candidates[:SAME_ID_COMPARED] if self._same_bytes(m.uid, message, body)]
        if message.message_id is None:  # the size alone proves nothing: compare the bytes
            match = next((m for m in same_size if self._same_bytes(m.uid, message, body)), None)
        else:
            match = same_size[0] if same_size else None
        if match is not None:
            self.claimed.add(match.uid)
        return match

    def _same_bytes(self, uid: int, message: StoredMessage, body: ArchivedBody) -> bool:
        on_target = self._fetch_body(uid)
        if on_target is None:
            return False
        digest = hashlib.sha256(on_target).hexdigest()
        if body.damaged:  # a damaged or unreadable archived copy never matches by its bytes
            return digest == message.sha256
        return digest == message.sha256 or on_target in (body.normalized(), line_stored(body.normalized()))

    def size_matches(self, found: TargetMessage, message: StoredMessage, body: ArchivedBody) -> bool:
        """The same size, or the same bytes as the server serves them (its size an estimate, line ends changed)."""
        if body.damaged:
            return found.size == message.size
        return (found.size == message.size or found.size == len(body.normalized())
                or self._same_bytes(found.uid, message, body))
