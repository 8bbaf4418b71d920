"""A second look at messages whose size the server reports otherwise than
the archive holds them.

Exchange and Office 365 report an estimate as RFC822.SIZE unless the
administrator set `EnableExactRFC822Size` (docs/servers.md): every copy would
look damaged, and `--repair` could never make it look otherwise.  For such a
message the only comparison that means anything is of content: the server's
BODY[] is fetched, and its length and SHA-256 are compared with what the
archive recorded when it was saved.

Public API: `server_contents(session, spool_dir, uids)` → {uid: (length, sha256)}.
"""

from __future__ import annotations

from pathlib import Path

from mailbackup.imap.session import ImapSession

CONTENT_CHECK_LIMIT = 2000  # messages per folder fetched whole to compare; the rest stay size mismatches
BATCH = 50
SPOOL_ABOVE = 1 << 20  # a larger body is hashed from a spool file, not held in memory


def server_contents(session: ImapSession, spool_dir: Path, uids: list[int]) -> dict[int, tuple[int, str]]:
    """Length and SHA-256 of the BODY[] the server sends for each of `uids`
    (one FETCH in flight: this is the path for servers that dislike pipelining)."""
    batches = [uids[start:start + BATCH] for start in range(0, len(uids), BATCH)]
    found: dict[int, tuple[int, str]] = {}
    results = session.stream_bodies(batches, spool_dir=spool_dir, spool_above=SPOOL_ABOVE, depth=1)
    try:
        for result in results:
            for message in result.messages:
                found.setdefault(message.uid, (message.body.size, message.body.sha256))
                message.body.discard()
    finally:
        results.close()
    return found
