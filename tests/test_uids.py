"""Ascending UID arrays (mailbackup/uids.py) and the ``* SEARCH`` reader
(imap/searchlines.py) give what sets and imapclient's parser gave."""

from __future__ import annotations

import io
import tracemalloc
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st
from imapclient.response_parser import parse_message_list

from mailbackup.errors import ConnectionLost
from mailbackup.imap.lexer import ProtocolViolation
from mailbackup.imap.searchlines import PIECE, read_search
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


def answer(*lines: bytes, tag: bytes = b"MB1", status: bytes = b"OK") -> SortedUids | None:
    """What `read_search` makes of ``* SEARCH`` lines (after the word SEARCH) and a tagged completion."""
    stream = io.BytesIO(b"".join(b"* SEARCH " + line + b"\r\n" for line in lines) + tag + b" " + status + b" done\r\n")
    found = read_search(stream, tag)
    assert stream.read() == b""  # the whole answer is consumed, whatever its shape
    return found.uids


@given(st.lists(st.integers(1, 2**32 - 1), max_size=80))
def test_search_answer_reads_what_imapclient_reads(numbers):
    line = " ".join(map(str, numbers)).encode()
    expected = sorted(set(parse_message_list([line])))
    found = answer(line)
    assert found is not None and list(found) == expected


def test_search_answer_of_a_big_folder_spans_pieces():
    """100,000 UIDs are one line of about 600 KB, read in pieces; numbers cut
    at a piece's end are joined again."""
    uids = range(1, 100_001)
    line = " ".join(map(str, uids)).encode()
    assert len(line) > 5 * PIECE
    found = answer(line)
    assert found is not None and list(found) == list(uids)
    cut_everywhere = list(range(10**6, 10**6 + 3 * PIECE // 8, 1))
    found = answer(" ".join(map(str, cut_everywhere)).encode())
    assert found is not None and list(found) == cut_everywhere


def test_search_answer_of_more_than_a_megabyte():
    """imaplib refused a line above 1,000,000 bytes: a folder of about 145,000
    messages could not be backed up again."""
    uids = range(1_000_000, 1_200_000)
    line = " ".join(map(str, uids)).encode()
    assert len(line) > 1_000_000
    found = answer(line)
    assert found is not None and list(found) == list(uids)


def test_search_answer_of_a_big_folder_holds_its_uids_once():
    """Issue 18: only the array is kept, read a piece at a time: imaplib held
    the 600 KB line three times and the array was copied (the peak above what
    is kept was 2-3 MB at 100,000 UIDs).  Allowed: the array's growth as it
    is filled and one piece's numbers as Python objects."""
    stream = io.BytesIO(b"* SEARCH " + " ".join(map(str, range(1, 100_001))).encode() + b"\r\nMB7 OK done\r\n")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        found = read_search(stream, b"MB7").uids
        kept, peak = (figure - before for figure in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert found is not None and len(found) == 100_000
    assert kept < 900_000 and peak - kept < 400_000, (kept, peak)


def test_adopted_arrays_and_slices_are_sorted_uids_like_any_other():
    assert SortedUids.adopt(array(UID_TYPECODE, [2, 5, 9])) == SortedUids([2, 5, 9])
    assert SortedUids.adopt(array("l", [2, 5])) == SortedUids([2, 5])  # another item type is converted
    assert list(SortedUids([2, 5, 9]).from_uid(3)) == [5, 9]


def test_search_answer_joins_several_lines_and_ignores_empty_ones():
    found = answer(b"5 3", b"", b"9 3")
    assert found is not None and list(found) == [3, 5, 9]
    empty = answer()
    assert empty is not None and len(empty) == 0


def test_search_answer_leaves_other_shapes_and_refusals_to_imapclient():
    """A MODSEQ part, a stray word, a number no UID can be, a NO: None, so imapclient's parser decides."""
    assert answer(b"1 2 3 (MODSEQ 917162500)") is None
    assert answer(b"1 two 3") is None
    assert answer(b"1 " + b"9" * 30) is None
    assert answer(b"1 " + b"9" * (3 * PIECE)) is None  # a "number" longer than any piece
    assert answer(b"1 2", status=b"NO") is None


def test_search_answer_notes_exists_and_skips_other_answers():
    stream = io.BytesIO(b"* 7 EXISTS\r\n* 3 FETCH (FLAGS (\\Seen))\r\n* SEARCH 4 6\r\n* 8 EXISTS\r\nMB2 OK done\r\n")
    found = read_search(stream, b"MB2")
    assert found.uids is not None and list(found.uids) == [4, 6]
    assert found.exists == 8


def test_search_answer_cut_or_hostile_drops_the_connection():
    with pytest.raises(ConnectionLost):
        read_search(io.BytesIO(b"* SEARCH 1 2 3"), b"MB3")  # closed mid-line
    with pytest.raises(ConnectionLost, match="server closed the connection"):
        read_search(io.BytesIO(b"* BYE shutting down\r\n"), b"MB3")
    with pytest.raises(ProtocolViolation):
        read_search(io.BytesIO(b"garbage\r\nMB3 OK done\r\n"), b"MB3")
