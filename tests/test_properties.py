"""Property tests for what tests/test_naming.py and tests/test_mboxrd.py do
not cover: the modified UTF-7 codec folder names travel in (Thai above all),
the streaming mboxrd quoter under any chunking, the pipelined FETCH reader
under bodies that look like IMAP, the Windows view of local paths and of
account directories."""

from __future__ import annotations

import io
import itertools
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from unittest import mock

import pytest
from dovecot_server import imap_utf7_encode
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailbackup.archive import account_dir
from mailbackup.errors import ConnectionLost
from mailbackup.imap import utf7
from mailbackup.imap.lexer import ProtocolViolation
from mailbackup.imap.parse import parse_items
from mailbackup.imap.pipeline import FetchPipeline
from mailbackup.store import mbox, mboxrd
from mailbackup.store.body import MessageBody
from mailbackup.store.naming import local_path_for

THAI = st.characters(min_codepoint=0x0E01, max_codepoint=0x0E5B)
FOLDER_TEXT = st.text(alphabet=st.one_of(THAI, st.sampled_from("&-+,/. ~AZaz09\\\"%*"),
                                         st.characters(codec="utf-8")), max_size=40)


# -- modified UTF-7 (RFC 3501 5.1.3) ---------------------------------------------
@pytest.mark.parametrize("name,wire", [
    ("ทดสอบ", b"&DhcOFA4qDi0OGg-"),  # FIELD-NOTES.md
    ("กล่องขาเข้า", b"&DgEOJQ5IDi0OBw4CDjIOQA4CDkkOMg-"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501's example
    ("A&B", b"A&-B"),
    ("งานคดี/2566/มกราคม", b"&DgcOMg4ZDgQOFA41-/2566/&DiEOAQ4jDjIOBA4h-"),
    ("", b""),
])
def test_known_names(name, wire):
    assert utf7.encode(name) == wire
    assert utf7.decode(wire) == name


@given(FOLDER_TEXT)
@example("กล่องขาเข้า/สำคัญ & ด่วน-มาก")
@example("\U0001F4E7 อีเมล")  # outside the BMP: a UTF-16 surrogate pair in the base64
def test_round_trip(name):
    wire = utf7.encode(name)
    assert utf7.decode(wire) == name
    assert all(0x20 <= byte <= 0x7E for byte in wire)  # 7-bit, printable: what may go on the wire
    assert wire.decode("ascii") == imap_utf7_encode(name)  # the independent encoder of the test server


@given(st.text(alphabet=THAI, min_size=1, max_size=30))
def test_thai_is_one_base64_run(name):
    wire = utf7.encode(name)
    assert re.fullmatch(rb"&[A-Za-z0-9+,]+-", wire)


@given(st.binary(max_size=40) | st.lists(st.sampled_from([b"&", b"-", b"&-", b"AGE", b"Jjo", b",", b"\xe0\xb8",
                                                           b"DhcOFA4qDi0OGg", b" ", b"a"]), max_size=10).map(b"".join))
@example(b"&Jjo!")
@example(b"&")
@example(b"&AGE")
@example(b"&2D3cAA-")  # a lone surrogate
def test_decode_accepts_exactly_what_encode_gives_back(raw):
    try:
        name = utf7.decode(raw)
    except ValueError:
        return
    assert utf7.encode(name) == raw


def test_invalid_unicode_is_refused():
    with pytest.raises(ValueError):
        utf7.encode("\ud800")


# -- Windows view of local paths (a gap in tests/test_naming.py) ---------------------
@given(FOLDER_TEXT, st.sampled_from(["/", ".", None]))
@example("CON/aux.txt/COM1.log/LPT9 /NUL.tar.gz", "/")
@example("con.", "/")
def test_no_local_component_is_reserved_on_windows(name, delimiter):
    try:
        path = local_path_for(name, delimiter)
    except ValueError:
        return
    for part in path.parts:
        assert not PureWindowsPath(part).is_reserved(), part
        assert PureWindowsPath(part).name == part  # no drive, root or separator inside


@given(st.text(max_size=60) | st.sampled_from(["..", "../../etc", "/root", "C:\\Windows", "CON", " ", "a/b", "~"]))
def test_an_account_directory_stays_inside_the_archive_root(account):
    root = Path("/archive")
    directory = account_dir(root, account)
    assert directory.parent == root
    assert directory.name not in ("", ".", "..") and "/" not in directory.name and "\\" not in directory.name
    assert not PureWindowsPath(directory.name).is_reserved()
    assert PurePosixPath(directory.name).parts == (directory.name,)


# -- streaming mboxrd quoting -----------------------------------------------------
PIECES = st.sampled_from([b"From ", b">From ", b">>From ", b"From", b"rom ", b">", b">>>>", b"\r\n", b"\n", b"\r",
                          b" ", b"x", b"Fr", b"om "])
BODIES = st.lists(PIECES | st.binary(max_size=12), max_size=40).map(b"".join)


def chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(cut % (len(body) + 1) for cut in cuts)  # repeated points: empty chunks
    edges = [0, *points, len(body)]
    return [body[start:end] for start, end in itertools.pairwise(edges)]


@settings(max_examples=400)
@given(BODIES, st.lists(st.integers(min_value=0, max_value=1000), max_size=12), st.sampled_from([1, 4, 8, 1 << 20]))
@example(b">>>>>>>>>>From x\n", [5], 4)  # a long run of '>' cut before its "From "
@example(b">>>>>>>>>>Fr" + b"om x\n", [12], 4)
@example(b"From " + b"x" * 20 + b"\n", [3, 9], 4)  # a long From line: quoted once, then passed through
def test_quote_stream_matches_quote_whatever_the_chunking(body, cuts, long_line):
    """The streaming quoter used by the mbox store gives exactly what quoting
    the whole body at once gives, however the body arrives: empty chunks,
    one byte at a time, a From line cut anywhere, lines longer than the
    long-line limit (made small here to reach that path)."""
    with mock.patch.object(mbox, "LONG_LINE", long_line):
        streamed = b"".join(mbox.quote_stream(iter(chunked(body, cuts))))
    assert streamed == mboxrd.quote(body)
    assert mboxrd.unquote(streamed) == body


WHEN = datetime(2024, 1, 15, 9, 30, tzinfo=timezone(timedelta(hours=7)))


@given(BODIES)
def test_the_store_writes_entries_the_reader_gives_back(body):
    from mailbackup.model import StoredMessage

    message = StoredMessage(folder_id=1, uidvalidity=1, uid=1, size=len(body), sha256="", internaldate=WHEN,
                            flags=(), message_id=None, subject=None, sender="court@coj.go.th", location=None)
    handle = io.BytesIO()
    length = mbox._write_entry(handle, message, MessageBody.from_bytes(body))
    written = handle.getvalue()
    assert length == len(written) == len(mboxrd.entry(message.sender, WHEN, body))
    assert written == mboxrd.entry(message.sender, WHEN, body)
    assert mboxrd.body_from_entry(written, len(body)) == body
    assert [span.length for span in mboxrd.iter_entries(io.BytesIO(written * 2))] == [length, length]


# -- the pipelined FETCH reader -------------------------------------------------------
IMAP_LOOKING = st.sampled_from([b")\r\n", b"* 1 FETCH (UID 9 BODY[] {3}\r\n", b"MB1 OK done\r\n", b"{5}\r\n",
                                b"* BYE\r\n", b"\x00", b"\x000\x00", b"+ go\r\n", b'"', b"(", b"\r\n\r\n"])
MESSAGE_BODIES = st.lists(IMAP_LOOKING | st.binary(max_size=20), max_size=12).map(b"".join)
FLAGS = st.lists(st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "$Label1", "\\Recent", "งาน"]),
                 unique=True, max_size=4)


def fetch_responses(tag: bytes, messages: list[tuple[int, bytes, list[str]]]) -> bytes:
    out = b""
    for sequence, (uid, body, flags) in enumerate(messages, start=1):
        out += (b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE \"15-Jan-2024 09:30:00 +0700\" RFC822.SIZE %d "
                b"BODY[] {%d}\r\n" % (sequence, uid, " ".join(flags).encode(), len(body), len(body)) + body + b")\r\n")
        out += b"* %d FETCH (FLAGS (\\Seen))\r\n" % sequence  # an unsolicited flag update between them
    return out + tag + b" OK Fetch completed.\r\n"


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(MESSAGE_BODIES, FLAGS), min_size=1, max_size=5), st.sampled_from([0, 8, 1 << 20]))
def test_bodies_that_look_like_imap_come_through_untouched(tmp_path, messages, spool_above):
    uids = list(range(10, 10 + len(messages)))
    answers = [(uid, body, flags) for uid, (body, flags) in zip(uids, messages, strict=True)]

    def answer(command: bytes) -> None:  # the server: its answer is read from the pipeline's reader
        pipeline.reader = io.BytesIO(fetch_responses(command.split(b" ", 1)[0], answers))

    pipeline = FetchPipeline(io.BytesIO(b""), answer, spool_dir=tmp_path, spool_above=spool_above, depth=1)
    (result,) = list(pipeline.run([uids]))
    assert result.status == "OK"
    got = {message.uid: message for message in result.messages}
    for uid, (body, flags) in zip(uids, messages, strict=True):
        message = got[uid]
        assert b"".join(message.body.chunks()) == body and message.size == len(body)
        assert message.flags == tuple(sorted(flag for flag in flags if flag != "\\Recent"))
        assert message.internaldate == datetime(2024, 1, 15, 9, 30, tzinfo=timezone(timedelta(hours=7)))
        message.body.discard()
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("answer", [
    # found by scripts/fuzz.py: a quoted string swallowed the first literal's place holder
    b'* 1 FETCH (UID 1 X "a{4}\r\nabcd" RFC822.SIZE 2 BODY[] {2}\r\nhi)\r\nMB%d OK done\r\n',
    b"* BYE {4}\r\nabcd\r\n",  # a literal in a BYE
    b"* 1 FETCH (UID 1 BODY[] {2}\r\nhi FLAGS ((x)))\r\n",  # a broken answer after a spooled body
    b"* 1 FETCH (UID 1 BODY[] {2}\r\nhi)\r\nnot IMAP at all\r\n",  # a line that is no response
])
def test_no_spooled_body_is_left_behind(tmp_path, answer):
    def respond(command: bytes) -> None:
        tag = int(command.split(b" ", 1)[0][2:])
        pipeline.reader = io.BytesIO(answer.replace(b"%d", b"%d" % tag))

    pipeline = FetchPipeline(io.BytesIO(b""), respond, spool_dir=tmp_path, spool_above=0, depth=1)
    try:
        for result in pipeline.run([[1]]):
            for message in result.messages:
                message.body.discard()
    except ConnectionLost:  # ProtocolViolation is one
        pass
    assert not list(tmp_path.iterdir())


@given(st.binary(max_size=200))
@example(b"(UID 1 BODY[] \x000\x00")
@example(b"(UID 1 UID 2)")
@example(b'("UID" 1)')
def testparse_items_refuses_garbage_with_one_error(data):
    try:
        items = parse_items(data, [])
    except ProtocolViolation:
        return
    assert isinstance(items, dict)


# -- header fields of arbitrary mail ----------------------------------------------------
HEADER_LINES = st.lists(st.sampled_from([b"Subject: ", b"From: ", b"Return-Path: ", b"Message-ID: ", b"Date: ",
                                         b"=?utf-8?B?", b"=?tis-620?Q?", b"?=", b"\r\n", b"\r\n ", b"<", b">",
                                         b"\xe0\xb8", b"=ZZ", b"x"]) | st.binary(max_size=8), max_size=20).map(b"".join)


@given(HEADER_LINES)
@example(b"Subject: =?utf-8?B?x?=\r\n\r\n")  # HeaderParseError: Base64 decoding error
@example(b"Subject: =?t\xa3-620?Q?x?=\r\n\r\n")  # CharsetError
def test_summarize_never_raises(head):
    from mailbackup.headers import summarize

    summarize(head)


@pytest.mark.parametrize("text", [b"(UID 1) (UID 2)", b"(UID 1 BODY[] \x000\x00", b"(UID 1 FLAGS)", b'("UID" 1)',
                                  b"(UID 1 UID 2)", b"(UID 1 BODY[] \x000\x00) trailing"])
def test_a_fetch_item_list_is_one_closed_list_of_pairs(text):
    """What is left of a body whose literal length lied looks like this."""
    with pytest.raises(ProtocolViolation):
        parse_items(text, [MessageBody.from_bytes(b"x")])
