"""The fast path for Dovecot's FETCH shape must read exactly what the general
parser reads, for any UID, flags and date."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbackup.imap.parse import COMMON_SHAPE, parse_general, parse_items
from mailbackup.imap.pipeline import FetchPipeline, PipelinedCommandRefused
from mailbackup.store.body import MessageBody

ATOM = st.text(alphabet=st.sampled_from("abcdefXYZ$_-\\0123456789"), min_size=1, max_size=12)
DATE = st.builds(lambda d, h: f"{d:02d}-Jan-2024 {h:02d}:03:31 +0700", st.integers(1, 28), st.integers(0, 23))


@given(st.integers(1, 2**32 - 1), st.lists(ATOM, max_size=6), DATE, st.integers(0, 10**9))
def test_fast_path_agrees_with_the_general_parser(uid, flags, date, size):
    text = (f'(UID {uid} FLAGS ({" ".join(flags)}) INTERNALDATE "{date}" RFC822.SIZE {size} BODY[] ').encode() \
        + b"\x000\x00)"
    literals = [MessageBody.from_bytes(b"body")]
    assert COMMON_SHAPE.match(text)
    assert parse_items(text, literals) == parse_general(text, literals)


def test_other_orders_take_the_general_path():
    text = b'(BODY[] \x000\x00 UID 7 FLAGS (\\Seen) RFC822.SIZE 4 INTERNALDATE "05-Jan-2024 09:03:07 +0700")'
    literals = [MessageBody.from_bytes(b"body")]
    assert not COMMON_SHAPE.match(text)
    items = parse_items(text, literals)
    assert items["UID"] == 7 and items["FLAGS"] == ("\\Seen",) and items["BODY[]"] is literals[0]


class _Server:
    """Answers a FETCH the way a server may but Dovecot does not: bodies as
    quoted strings (what no real server here sends, so scripted)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.stream = io.BytesIO()

    def send(self, data: bytes) -> None:
        tag = data.split(b" ", 1)[0]
        self.stream = io.BytesIO(b"".join(self.answers) + tag + b" OK done\r\n")

    def readline(self, limit: int = -1) -> bytes:
        return self.stream.readline(limit)

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)


def test_a_body_sent_as_a_quoted_string_is_kept(tmp_path):
    date = b'"05-Jan-2024 09:03:07 +0700"'
    server = _Server([
        b"* 1 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE " + date + b' RFC822.SIZE 0 BODY[] "")\r\n',
        b"* 2 FETCH (UID 8 FLAGS () INTERNALDATE " + date + b' RFC822.SIZE 16 BODY[] "Subject: \\"x\\"\\\\")\r\n',
    ])
    pipeline = FetchPipeline(server, server.send, spool_dir=tmp_path, spool_above=1 << 20)  # type: ignore[arg-type]
    (result,) = list(pipeline.run([[7, 8]]))
    assert result.status == "OK"
    bodies = {message.uid: message.body.data for message in result.messages}
    assert bodies == {7: b"", 8: b'Subject: "x"\\'}


def test_a_listing_and_the_bodies_sent_with_it_are_told_apart_however_interleaved(tmp_path):
    """A server may answer pipelined FETCHes interleaved (Dovecot does, RFC 3501
    5.5): each line goes by what it carries.  Scripted (a byte stream), to put
    every awkward order and a UID nobody listed on one connection."""
    date = b'"05-Jan-2024 09:03:07 +0700"'

    def meta(sequence: int, uid: int) -> bytes:
        return b"* %d FETCH (UID %d RFC822.SIZE 4 FLAGS (\\Seen) INTERNALDATE %s)\r\n" % (sequence, uid, date)

    def body(sequence: int, uid: int, data: bytes) -> bytes:
        return b"* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE %s RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n" % (
            sequence, uid, date, len(data), len(data), data)

    stream = io.BytesIO(b"".join([
        body(1, 7, b"one!"), meta(1, 7), b"* 3 EXISTS\r\n", meta(2, 9), body(2, 9, b"two!"),
        body(2, 9, b"again"),  # a second answer for one UID: the first is kept
        body(3, 11, b"late"),  # arrived after the listing: not asked for by anyone
        b"* 2 FETCH (UID 9 FLAGS (\\Seen \\Flagged))\r\n",  # an unsolicited flag update
        b"MB2 OK bodies done\r\n", b"MB1 OK listing done\r\n",
    ]))
    pipeline = FetchPipeline(stream, lambda data: None, spool_dir=tmp_path, spool_above=1 << 20)
    rows, batch = pipeline.read_listing_and_bodies(b"MB1", b"MB2")

    assert sorted(row.uid for row in rows) == [7, 9]
    assert pipeline.exists_seen == 3
    assert batch.status == "OK"
    assert {message.uid: message.body.data for message in batch.messages} == {7: b"one!", 9: b"two!", 11: b"late"}


def test_a_refused_listing_sent_with_bodies_lets_the_bodies_go(tmp_path):
    stream = io.BytesIO(b"* 1 FETCH (UID 7 FLAGS () INTERNALDATE \"05-Jan-2024 09:03:07 +0700\" RFC822.SIZE 4 "
                        b"BODY[] {4}\r\nbody)\r\nMB1 BAD pipelining not supported\r\nMB2 BAD no\r\n")
    pipeline = FetchPipeline(stream, lambda data: None, spool_dir=tmp_path, spool_above=1 << 20)
    with pytest.raises(PipelinedCommandRefused, match="pipelining not supported"):
        pipeline.read_listing_and_bodies(b"MB1", b"MB2")
    assert stream.read() == b""  # both answers read: nothing left on the wire for the next command
