"""Pure planning for a sync: which folders, whether a folder changed, which
UIDs to fetch or mark gone, and how to cut them into batches.  No I/O, so it
is property-tested on its own (tests/test_sync_property.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from mailbackup.model import FolderInfo, FolderStatus, MessageMeta
from mailbackup.state.db import FolderRecord


def select_folders(folders: Iterable[FolderInfo], include: Sequence[str], exclude: Sequence[str]) -> list[FolderInfo]:
    """Selectable folders matching any include glob (all when none) and no exclude glob."""
    chosen = []
    for folder in folders:
        if not folder.selectable:
            continue
        if include and not any(fnmatchcase(folder.name, pattern) for pattern in include):
            continue
        if any(fnmatchcase(folder.name, pattern) for pattern in exclude):
            continue
        chosen.append(folder)
    return chosen


def is_unchanged(record: FolderRecord | None, status: FolderStatus, *, has_failures: bool) -> bool:
    """True when one STATUS proves there is nothing to do: same UIDVALIDITY,
    UIDNEXT, message count and (with CONDSTORE) HIGHESTMODSEQ as last time."""
    if record is None or has_failures or record.uidvalidity is None:
        return False
    same = (
        record.uidvalidity == status.uidvalidity
        and record.uidnext == status.uidnext
        and record.server_messages == status.messages
    )
    if status.highestmodseq is not None:
        same = same and record.highestmodseq == status.highestmodseq
    return same


@dataclass(frozen=True)
class UidDiff:
    new: list[int]  # on the server, not stored in this generation
    gone: list[int]  # stored and active, no longer on the server


def diff_uids(server_uids: Iterable[int], stored: set[int], active: set[int]) -> UidDiff:
    on_server = set(server_uids)
    return UidDiff(new=sorted(on_server - stored), gone=sorted(active - on_server))


def batches(metas: Sequence[MessageMeta], max_count: int, max_bytes: int) -> list[list[MessageMeta]]:
    """Consecutive batches bounded by count and by total size; a message larger
    than `max_bytes` travels alone."""
    result: list[list[MessageMeta]] = []
    current: list[MessageMeta] = []
    size = 0
    for meta in metas:
        if current and (len(current) >= max_count or size + meta.size > max_bytes):
            result.append(current)
            current, size = [], 0
        current.append(meta)
        size += meta.size
    if current:
        result.append(current)
    return result


def changed_flags(stored: dict[int, tuple[str, ...]], server: dict[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
    """Server flags for stored messages whose flags differ (sorted tuples compare)."""
    return {
        uid: tuple(sorted(flags))
        for uid, flags in server.items()
        if uid in stored and tuple(sorted(flags)) != tuple(sorted(stored[uid]))
    }
