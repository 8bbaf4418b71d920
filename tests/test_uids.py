"""Ascending UID arrays (mailbackup/uids.py) and the ``* SEARCH`` reader
(imap/searchlines.py) give what sets and imapclient's parser gave."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from imapclient.response_parser import parse_message_list

from mailbackup.imap.searchlines import PIECE, search_answer
from mailbackup.uids import SortedUids

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
