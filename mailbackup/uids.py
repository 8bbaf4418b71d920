"""Ascending UID lists held as machine integers.

A folder's whole UID list is needed on every incremental run (what is new,
what is gone, #13's cross-check of the server's answer), and a big folder
has 100,000 of them.  As Python sets, the stored and the active UIDs of such
a folder cost about 7 MB each, and the server's answer as a set 4 MB more
(a tracemalloc profile of 1,000 new messages in a 100,000-message folder:
25 of the run's 39 MB); as arrays of 8-byte integers they cost 800 KB each,
and the common case (nothing gone, new mail at the end) is answered by
comparing slices, without a Python object per UID.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

UID_TYPECODE = "Q"  # IMAP UIDs are 32-bit, unsigned; Q leaves room and costs the same as a pointer


class SortedUids(Sequence[int]):
    """An immutable ascending list of distinct UIDs: `in` by bisection,
    differences by a merge walk."""

    __slots__ = ("_items",)

    def __init__(self, ascending: Iterable[int] = ()) -> None:
        """`ascending` must be strictly ascending (e.g. an `ORDER BY uid` of a
        unique column); `of()` sorts and removes duplicates first."""
        self._items = array(UID_TYPECODE, ascending)

    @classmethod
    def of(cls, uids: Iterable[int]) -> SortedUids:
        return cls(sorted(set(uids)))

    @classmethod
    def adopt(cls, ascending: array[int]) -> SortedUids:
        """The array itself, not a copy (a big folder's is 800 KB, on top of a
        peak): the caller hands it over and never changes it again."""
        if ascending.typecode != UID_TYPECODE:
            return cls(ascending)
        adopted = cls()
        adopted._items = ascending
        return adopted

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...

    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        return self._items[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._items)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        at = bisect_left(self._items, uid)
        return at < len(self._items) and self._items[at] == uid

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SortedUids):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"SortedUids({self._items.tolist()!r})"

    def last(self) -> int:
        return self._items[-1]

    def from_uid(self, first: int) -> SortedUids:
        """The UIDs from `first` on."""
        start = bisect_left(self._items, first)
        return self if start == 0 else SortedUids.adopt(self._items[start:])

    def without(self, other: SortedUids) -> list[int]:
        """The UIDs of self not in `other`, ascending."""
        mine, theirs = self._items, other._items
        if not theirs:
            return mine.tolist()
        # The usual incremental run: the old UIDs unchanged, new ones after them.
        if len(theirs) <= len(mine) and mine[:len(theirs)] == theirs:
            return mine[len(theirs):].tolist()
        if len(mine) <= len(theirs) and theirs[:len(mine)] == mine:
            return []
        return _merge_difference(mine, theirs)


def _merge_difference(mine: array[int], theirs: array[int]) -> list[int]:
    result: list[int] = []
    at, end = 0, len(theirs)
    for uid in mine:
        while at < end and theirs[at] < uid:
            at += 1
        if at == end or theirs[at] != uid:
            result.append(uid)
    return result
