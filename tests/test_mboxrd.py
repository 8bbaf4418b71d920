"""Tests for mailbackup.store.mboxrd: the byte-level mboxrd format."""

from __future__ import annotations

import io
import mailbox
import re
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbackup.store.mboxrd import (
    EntrySpan,
    body_from_entry,
    entry,
    from_line,
    iter_entries,
    quote,
    read_entry,
    unquote,
)

WHEN = datetime(2024, 1, 4, 9, 3, 7, tzinfo=UTC)
WHEN_TEXT = b"Thu Jan  4 09:03:07 2024"

# Bodies are built from pieces chosen to hit the edge cases: From lines at any
# quoting depth, CRLF, bare LF, bare CR, near misses, and arbitrary bytes.
PIECES = st.sampled_from(
    [
        b"From ",
        b">From ",
        b">>From ",
        b">>>From ",
        b"From",
        b"rom ",
        b">",
        b"\r\n",
        b"\n",
        b"\r",
        b"\n\n",
        b" ",
        b"x",
        b"From: a@b\r\n",
    ]
)
BODIES = st.lists(PIECES | st.binary(max_size=12), max_size=30).map(b"".join)
SENDERS = st.none() | st.text(max_size=20)
DATES = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)
) | st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=7))]),
)
LINE_START_FROM = re.compile(rb"(?:^|\n)From ")


def write_mbox(bodies: list[bytes]) -> bytes:
    return b"".join(entry(f"u{i}@example.org", WHEN, b) for i, b in enumerate(bodies))


def trailing_newline(body: bytes) -> bytes:
    return b"" if body.endswith(b"\n") else b"\n"


# --- from_line -------------------------------------------------------------


def test_from_line_fixed_date() -> None:
    assert from_line("a@b.org", WHEN) == b"From a@b.org " + WHEN_TEXT + b"\n"


def test_from_line_two_digit_day_and_december() -> None:
    when = datetime(1999, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert from_line("x@y", when) == b"From x@y Fri Dec 31 23:59:58 1999\n"


def test_from_line_converts_to_utc() -> None:
    bangkok = timezone(timedelta(hours=7))
    when = datetime(2024, 1, 4, 16, 3, 7, tzinfo=bangkok)
    assert from_line("a@b", when) == b"From a@b " + WHEN_TEXT + b"\n"


def test_from_line_crossing_midnight_to_utc() -> None:
    bangkok = timezone(timedelta(hours=7))
    when = datetime(2024, 3, 1, 3, 0, 0, tzinfo=bangkok)
    assert from_line("a@b", when) == b"From a@b Thu Feb 29 20:00:00 2024\n"


def test_from_line_naive_is_utc() -> None:
    assert from_line("a@b", WHEN.replace(tzinfo=None)) == from_line("a@b", WHEN)


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        (None, b"MAILER-DAEMON"),
        ("", b"MAILER-DAEMON"),
        ("   ", b"MAILER-DAEMON"),
        ("<>", b"MAILER-DAEMON"),
        ("<a@b.org>", b"a@b.org"),
        ("a b@c.org", b"ab@c.org"),
        ("a@b.org\r\nFrom evil", b"a@b.orgFromevil"),
        ("tab\there@x", b"tabhere@x"),
        ("nul\x00@x\x7f", b"nul@x"),
        ("j\u00f6rg@b\u00fccher.de", b"jrg@bcher.de"),
        ("\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", b"MAILER-DAEMON"),
        ("bounce+x=y@lists.example.org", b"bounce+x=y@lists.example.org"),
    ],
)
def test_from_line_sanitises_sender(sender: str | None, expected: bytes) -> None:
    assert from_line(sender, WHEN) == b"From " + expected + b" " + WHEN_TEXT + b"\n"


@given(SENDERS, DATES)
def test_from_line_is_one_safe_line(sender: str | None, when: datetime) -> None:
    line = from_line(sender, when)
    assert line.startswith(b"From ") and line.endswith(b"\n")
    fields = line[5:-1].split(b" ")
    assert fields[0] and all(0x21 <= c <= 0x7E for c in fields[0])
    assert re.fullmatch(
        rb"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4}",
        b" ".join(fields[1:]),
    )


# --- quote / unquote --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "quoted"),
    [
        (b"", b""),
        (b"From x", b">From x"),
        (b">From x", b">>From x"),
        (b"a\nFrom x\n", b"a\n>From x\n"),
        (b"a\r\nFrom x\r\n>>From y\r\n", b"a\r\n>From x\r\n>>>From y\r\n"),
        (b"a\rFrom x", b"a\rFrom x"),  # a bare CR is not a line break
        (b" From x\nFrom: y\nFrom\n", b" From x\nFrom: y\nFrom\n"),
        (b"x>From y\n>x From z", b"x>From y\n>x From z"),
        (b"\n\nFrom \n", b"\n\n>From \n"),
    ],
)
def test_quote_examples(body: bytes, quoted: bytes) -> None:
    assert quote(body) == quoted
    assert unquote(quoted) == body


@given(BODIES)
def test_unquote_inverts_quote(body: bytes) -> None:
    assert unquote(quote(body)) == body


@given(BODIES)
def test_quote_leaves_no_from_line(body: bytes) -> None:
    assert not LINE_START_FROM.search(quote(body))


@given(BODIES)
def test_quote_matches_reference(body: bytes) -> None:
    reference = re.sub(rb"(?m)^(>*From )", rb">\1", body)
    assert quote(body) == reference
    assert unquote(body) == re.sub(rb"(?m)^>(>*From )", rb"\1", body)


# --- entry / body_from_entry -------------------------------------------------


def test_entry_layout() -> None:
    head = from_line("a@b", WHEN)
    assert entry("a@b", WHEN, b"x\r\n") == head + b"x\r\n\n"
    assert entry("a@b", WHEN, b"x") == head + b"x\n\n"
    assert entry("a@b", WHEN, b"x\r") == head + b"x\r\n\n"
    assert entry("a@b", WHEN, b"") == head + b"\n\n"
    assert entry("a@b", WHEN, b"From y\n") == head + b">From y\n\n"


@given(SENDERS, DATES, BODIES)
def test_body_from_entry_round_trip(
    sender: str | None, when: datetime, body: bytes
) -> None:
    data = entry(sender, when, body)
    assert data.startswith(from_line(sender, when))
    assert body_from_entry(data, len(body)) == body


def test_body_from_entry_rejects_bad_input() -> None:
    data = entry("a@b", WHEN, b"hello\r\n")
    with pytest.raises(ValueError, match="From"):
        body_from_entry(data[1:], 7)
    with pytest.raises(ValueError, match="From"):
        body_from_entry(b"From a@b no newline", 0)
    with pytest.raises(ValueError, match="expected 99"):
        body_from_entry(data, 99)
    with pytest.raises(ValueError, match="size"):
        body_from_entry(data, 5)  # wrong recorded size
    with pytest.raises(ValueError, match="size"):
        body_from_entry(data + b"junk", 7)
    with pytest.raises(ValueError, match="negative"):
        body_from_entry(data, -1)


# --- iter_entries / read_entry ----------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(BODIES, max_size=8), st.sampled_from([1, 5, 6, 7, 64, 1 << 20]))
def test_iter_entries_round_trip(bodies: list[bytes], chunk_size: int) -> None:
    data = write_mbox(bodies)
    fileobj = io.BytesIO(data)
    spans = list(iter_entries(fileobj, chunk_size))
    assert len(spans) == len(bodies)
    offset = 0
    for i, (span, body) in enumerate(zip(spans, bodies, strict=True)):
        expected = entry(f"u{i}@example.org", WHEN, body)
        assert span == EntrySpan(offset, len(expected))
        assert read_entry(fileobj, span) == expected
        assert body_from_entry(read_entry(fileobj, span), len(body)) == body
        offset += len(expected)
    assert offset == len(data)


def test_iter_entries_default_chunk_and_interleaved_reads(tmp_path: Path) -> None:
    bodies = [b"From x\r\n" * 1000, b"", b"a", b">From y\n" * 300_000]
    path = tmp_path / "box.mbox"
    path.write_bytes(write_mbox(bodies))
    with path.open("rb") as fileobj:
        got = [
            body_from_entry(read_entry(fileobj, span), len(body))
            for span, body in zip(iter_entries(fileobj), bodies, strict=True)
        ]
    assert got == bodies


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_iter_entries_split_boundary(chunk_size: int) -> None:
    # Put the b"\nFrom " boundary across every possible chunk edge.
    for pad in range(2 * chunk_size + 8):
        bodies = [b"x" * pad, b"y"]
        spans = list(iter_entries(io.BytesIO(write_mbox(bodies)), chunk_size))
        assert [s.length for s in spans] == [
            len(entry(f"u{i}@example.org", WHEN, b)) for i, b in enumerate(bodies)
        ]


def test_iter_entries_empty_file() -> None:
    assert list(iter_entries(io.BytesIO(b""))) == []


@pytest.mark.parametrize("data", [b"x", b"\nFrom a@b x\n", b"Fro", b">From a\n"])
def test_iter_entries_rejects_non_mbox(data: bytes) -> None:
    with pytest.raises(ValueError, match="does not start"):
        list(iter_entries(io.BytesIO(data), 4))


def test_iter_entries_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        list(iter_entries(io.BytesIO(b""), 0))


def test_read_entry_short_file() -> None:
    with pytest.raises(ValueError, match="cut short"):
        read_entry(io.BytesIO(b"From a\n"), EntrySpan(0, 100))


def test_iter_entries_memory_bounded(tmp_path: Path) -> None:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n"
    block = line * 99 + b"From the desk of someone\r\n"
    big = block * (50_000_000 // len(block) + 1)
    smalls = [line * 1000] * (10_000_000 // (1000 * len(line)) + 1)
    path = tmp_path / "big.mbox"
    with path.open("wb") as out:
        out.write(entry("a@b", WHEN, smalls[0]))
        out.write(entry("big@b", WHEN, big))
        for body in smalls[1:]:
            out.write(entry("a@b", WHEN, body))
    sizes = [len(smalls[0]), len(big)] + [len(b) for b in smalls[1:]]
    del big, smalls
    assert sizes[1] > 50_000_000
    assert path.stat().st_size > 60_000_000

    tracemalloc.start()
    try:
        with path.open("rb") as fileobj:
            spans = list(iter_entries(fileobj))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000
    assert len(spans) == len(sizes)
    assert sum(s.length for s in spans) == path.stat().st_size
    with path.open("rb") as fileobj:
        assert len(body_from_entry(read_entry(fileobj, spans[1]), sizes[1])) == sizes[1]


# --- compatibility with the stdlib mailbox.mbox reader ----------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(BODIES, max_size=6))
def test_stdlib_mbox_reads_entries(tmp_path: Path, bodies: list[bytes]) -> None:
    path = tmp_path / "compat.mbox"
    path.write_bytes(write_mbox(bodies))
    box = mailbox.mbox(path, create=False)
    try:
        assert len(box) == len(bodies)
        for key, (i, body) in zip(box.keys(), enumerate(bodies), strict=True):
            # mailbox.mbox drops the From line and the blank separator line,
            # keeps the newline entry() adds to a body without a final one,
            # and returns the bytes still quoted.
            raw = box.get_bytes(key)
            assert raw == quote(body) + trailing_newline(body)
            assert unquote(raw) == body + trailing_newline(body)
            head = from_line(f"u{i}@example.org", WHEN)
            assert box.get_bytes(key, from_=True) == head + raw
            assert box[key].get_from() == head[5:-1].decode()
    finally:
        box.close()
