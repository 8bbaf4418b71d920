"""Ascending UID arrays (mailbackup/uids.py) and the ``* SEARCH`` reader
(imap/searchlines.py) give what sets and imapclient's parser gave."""

from __future__ import annotations

import tracemalloc
from array import array

from hypothesis import given
from hypothesis import strategies as st
from imapclient.response_parser import parse_message_list

from mailbackup.imap.searchlines import PIECE, search_answer
from mailbackup.uids import UID_TYPECODE, SortedUids

UIDS = st.sets(st.integers(1, 300))


@given(UIDS, UIDS)
def test_without_is_the_set_difference(mine, theirs):
    assert SortedUids.of(mine).without(SortedUids.of(theirs)) == sorted(mine - theirs)


@given(st.integers(0, 200), st.integers(0, 50), st.integers(0, 50))
def test_without_when_one_list_extends_the_other(common, extra, skipped):
    """The usual incremental run: the stored UIDs are a prefix of the server's."""
    old = SortedUids(range(1, common + 1))
    new = SortedUids([*range(1, common + 1), *range(common + skipped + 1, common + skipped + extra + 1)])
    assert new.without(old) == list(range(common + skipped + 1, common + skipped + extra + 1))
    assert old.without(new) == []


@given(UIDS, st.integers(0, 310))
def test_membership_length_and_from_uid(uids, probe):
    ordered = SortedUids.of(uids)
    assert (probe in ordered) == (probe in uids)
    assert "7" not in ordered and len(ordered) == len(uids) and list(ordered) == sorted(uids)
    assert list(ordered.from_uid(probe)) == sorted(uid for uid in uids if uid >= probe)
    if uids:
        assert ordered.last() == max(uids)


@given(st.lists(st.integers(1, 2**32 - 1), max_size=80))
def test_search_answer_reads_what_imapclient_reads(numbers):
    line = " ".join(map(str, numbers)).encode()
    expected = sorted(set(parse_message_list([line])))
    found = search_answer([line])
    assert found is not None and list(found) == expected


def test_search_answer_of_a_big_folder_spans_pieces():
    """100,000 UIDs are one line of about 600 KB, read in pieces cut at spaces."""
    uids = range(1, 100_001)
    line = " ".join(map(str, uids)).encode()
    assert len(line) > 5 * PIECE
    found = search_answer([line])
    assert found is not None and list(found) == list(uids)


def test_search_answer_of_a_big_folder_holds_its_uids_once():
    """Issue 18: the array the answer is read into becomes the result, not a
    copy of it; the copy was 800 KB more at the peak of a 100,000-message
    run, on top of the line itself.  Allowed: the array's growth as it is
    filled and one piece's numbers as Python objects."""
    line = " ".join(map(str, range(1, 100_001))).encode()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        found = search_answer([line])
        kept, peak = (figure - before for figure in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert found is not None and len(found) == 100_000
    assert kept < 900_000 and peak - kept < 600_000, (kept, peak)  # with the copy: peak - kept = 800 KB more


def test_adopted_arrays_and_slices_are_sorted_uids_like_any_other():
    assert SortedUids.adopt(array(UID_TYPECODE, [2, 5, 9])) == SortedUids([2, 5, 9])
    assert SortedUids.adopt(array("l", [2, 5])) == SortedUids([2, 5])  # another item type is converted
    assert list(SortedUids([2, 5, 9]).from_uid(3)) == [5, 9]


def test_search_answer_joins_several_lines_and_ignores_empty_ones():
    found = search_answer([b"5 3", None, b"", b"9 3"])
    assert found is not None and list(found) == [3, 5, 9]
    empty = search_answer([])
    assert empty is not None and len(empty) == 0


def test_search_answer_leaves_other_shapes_to_imapclient():
    """A MODSEQ part, a stray word, a number no UID can be: None, so imapclient's parser decides."""
    assert search_answer([b"1 2 3 (MODSEQ 917162500)"]) is None
    assert search_answer([b"1 two 3"]) is None
    assert search_answer([b"1 " + b"9" * 30]) is None
    assert search_answer(["1 2"]) is None
