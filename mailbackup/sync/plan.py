"""Pure planning for a sync: which folders, whether a folder changed, how to
list it, which UIDs to fetch or mark gone, and how to cut them into batches.
No I/O, so it is property-tested on its own (tests/test_sync_property.py).

Per folder the engine asks twice: `plan_start()` after STATUS (skip it?
list it with EXAMINE?), then, with what EXAMINE and the state say gathered
in `FolderFacts`, `plan_folder()` returns the `FolderPlan` it executes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass
from fnmatch import fnmatchcase

from mailbackup.model import FolderInfo, FolderStatus, MessageMeta, SelectedFolder
from mailbackup.state.db import FolderRecord
from mailbackup.uids import SortedUids


def select_folders(folders: Iterable[FolderInfo], include: Sequence[str], exclude: Sequence[str]) -> list[FolderInfo]:
    """Selectable folders matching any include pattern (all when none) and no exclude pattern."""
    chosen = []
    for folder in folders:
        if not folder.selectable:
            continue
        if include and not any(folder_matches(folder, pattern) for pattern in include):
            continue
        if any(folder_matches(folder, pattern) for pattern in exclude):
            continue
        chosen.append(folder)
    return chosen


def folder_matches(folder: FolderInfo, pattern: str) -> bool:
    """A glob on the folder's name, or, for a pattern like ``\\All`` or ``\\Junk``, a
    special-use attribute of the folder (RFC 6154): Gmail names its All Mail folder
    in the user's language, but always marks it ``\\All``."""
    if pattern.startswith("\\") and fnmatchcase(pattern[1:], "[A-Za-z]*"):
        return pattern.lower() in {flag.lower() for flag in folder.flags}
    return fnmatchcase(folder.name, pattern)


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


def diff_uids(server_uids: SortedUids, stored: SortedUids, active: SortedUids) -> UidDiff:
    return UidDiff(new=server_uids.without(stored), gone=active.without(server_uids))


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


def batches_expected(new: int, size: int | None, batch_messages: int, batch_bytes: int) -> int:
    """About how many batches a folder's new mail makes (by count, and by bytes where known)."""
    by_count = -(-new // batch_messages)
    return max(by_count, -(-size // batch_bytes)) if size else by_count


def changed_flags(stored: dict[int, tuple[str, ...]], server: dict[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
    """Server flags for stored messages whose flags differ (sorted tuples compare)."""
    return {
        uid: tuple(sorted(flags))
        for uid, flags in server.items()
        if uid in stored and tuple(sorted(flags)) != tuple(sorted(stored[uid]))
    }


def expected_new(record: FolderRecord | None, status: FolderStatus) -> tuple[int, int | None]:
    """Messages (and bytes, when the server told the folder's size) a run can
    expect to fetch from a folder, from its STATUS alone: an upper bound, so a
    progress bar announced from it never has to grow."""
    if record is None or record.uidvalidity != status.uidvalidity or record.uidnext is None:
        return status.messages, status.size
    if is_unchanged(record, status, has_failures=False):
        return 0, 0
    new = min(status.messages, max(0, status.uidnext - record.uidnext))
    size = None if status.size is None else (status.size * new // status.messages if status.messages else 0)
    return new, size


@dataclass(frozen=True)
class FolderStart:
    skip: bool  # nothing changed since the last run (and no flags to re-read)
    list_with_examine: bool  # UIDs and sizes in EXAMINE's round trip


def plan_start(record: FolderRecord, status: FolderStatus, *, has_failures: bool, stored_any: bool,
               refresh_flags: bool, new_slice: int) -> FolderStart:
    """What one STATUS decides.  A folder with nothing stored yet and at most
    `new_slice` messages is listed together with EXAMINE (a round trip saved
    per folder on a slow link)."""
    unchanged = is_unchanged(record, status, has_failures=has_failures)
    return FolderStart(skip=unchanged and not refresh_flags,
                       list_with_examine=not stored_any and status.messages <= new_slice)


def wants_listing(selected: SelectedFolder, stored: Sized, new_slice: int) -> bool:
    """Nothing of this generation stored yet: the sizes come with the UIDs
    (on a 50 ms link, a round trip per folder is worth saving)."""
    return bool(selected.exists) and not stored and selected.exists <= new_slice


def trusted_listing(listing: Iterable[MessageMeta], selected: SelectedFolder) -> dict[int, MessageMeta] | None:
    """The listing by UID, or None when it disagrees with EXAMINE: a server
    that hides or invents messages is asked with SEARCH instead."""
    known = {meta.uid: meta for meta in below_uidnext(listing, selected)}
    return known if len(known) == selected.exists else None


def below_uidnext(listing: Iterable[MessageMeta], selected: SelectedFolder) -> list[MessageMeta]:
    """A UID at or past UIDNEXT is one the server invented, not a message."""
    return [meta for meta in listing if meta.uid < selected.uidnext]


@dataclass(frozen=True)
class FolderFacts:
    """What the state and the server said of one folder, gathered before deciding."""

    record: FolderRecord
    selected: SelectedFolder
    stored: SortedUids  # UIDs of this UIDVALIDITY in the state, gone ones included
    active: SortedUids  # of those, the ones not marked gone
    new_generation: bool  # the state holds mail of another UIDVALIDITY
    known: dict[int, MessageMeta] | None  # a trusted listing (UIDs with sizes), when there is one
    searched: SortedUids  # UID SEARCH's answer, asked when there is no trusted listing
    # The server's answers agreed with EXISTS (imap/listing.py); when not, nothing is taken as gone.
    consistent: bool = True


@dataclass(frozen=True)
class FolderPlan:
    """What the engine does to one folder."""

    fetch: list[int]  # new UIDs, ascending
    known: dict[int, MessageMeta] | None  # their sizes, when the listing gave them (no FETCH of sizes)
    gone: list[int]  # stored and active, no longer on the server: mark gone, never delete
    on_server: SortedUids  # every UID the server holds (failures of others are over)
    sync_flags: bool  # read flag changes of stored messages (not in a new generation: nothing to compare)


def plan_folder(facts: FolderFacts) -> FolderPlan:
    server_uids = SortedUids(sorted(facts.known)) if facts.known is not None else facts.searched
    diff = diff_uids(server_uids, facts.stored, facts.active)
    return FolderPlan(fetch=diff.new, known=facts.known, gone=diff.gone if facts.consistent else [],
                      on_server=server_uids,
                      sync_flags=not facts.new_generation and bool(facts.record.uidvalidity))
