"""Compact IMAP sequence sets (``1:5,7,9:12``) from UID lists."""

from __future__ import annotations

from collections.abc import Iterable


def to_sequence_set(uids: Iterable[int]) -> str:
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts: list[str] = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        parts.append(_span(start, previous))
        start = previous = uid
    parts.append(_span(start, previous))
    return ",".join(parts)


def _span(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}:{end}"
