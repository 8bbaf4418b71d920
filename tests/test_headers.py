"""The fast header reader agrees with Python's email parser on the fields we
record, for real-world samples and generated headers (folded, 8-bit, odd case)."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest
import sample_mail
from hypothesis import given
from hypothesis import strategies as st

from mailbackup.headers import MAX_HEADER_BYTES, header_block, header_fields, summarize

FIELDS = ("Message-ID", "Subject", "From", "Return-Path", "Date")


def email_package(head: bytes) -> dict[str, str]:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(header_block(head))
    return {name.lower(): " ".join(str(parsed.get(name)).split()) for name in FIELDS if parsed.get(name) is not None}


def ours(head: bytes) -> dict[str, str]:
    return {name: " ".join(value.split()) for name, value in header_fields(header_block(head)).items()}


def test_samples_agree_with_the_email_package():
    for name, raw in sample_mail.sample_messages().items():
        if name != "raw_utf8_header":  # see below: there we do better than the email package
            assert ours(raw) == email_package(raw), name


def test_raw_8bit_thai_headers_are_read_as_thai():
    """compat32 turns raw UTF-8 header bytes into U+FFFD; we keep the bytes and decode them."""
    raw = "Subject: ประชุมคณะทำงาน\r\nFrom: สมหญิง <somying@coj.go.th>\r\n\r\nbody\r\n".encode()
    summary = summarize(raw)
    assert summary.subject == "ประชุมคณะทำงาน" and summary.sender == "somying@coj.go.th"
    tis = b"Subject: " + "คำพิพากษา".encode("tis-620") + b"\r\n\r\n"
    assert summarize(tis).subject == "คำพิพากษา"


VALUE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@given(st.lists(st.tuples(st.sampled_from([*FIELDS, "X-Other", "subject", "MESSAGE-ID"]), VALUE,
                          st.booleans()), max_size=8))
def test_generated_headers_agree(fields):
    lines = []
    for name, value, folded in fields:
        text = value.strip() or "x"
        line = f"{name}: {text}".encode()
        if folded:
            line += b"\r\n\t" + text.encode("utf-8")
        lines.append(line)
    head = b"\r\n".join(lines) + b"\r\n\r\nbody\r\n"
    assert ours(head) == email_package(head)


ADDRESSES = ["a@b.c", "<a@b.c>", " Name <a@b.c> ", "ศาลแพ่ง <court@coj.go.th>", '"Doe, J" <j@x.y>', "Doe, J <j@x.y>",
             "a@b.c (comment)", "<>", "undisclosed", "x <a@b.c>, y <c@d.e>", "Name<a@b.c>", "a.b+c@d-e.f",
             "<a@[1.2.3.4]>", "Name <a@b.c> trailing", "=?UTF-8?B?4LiE4Lij4Li54LiE4Li0?= <a@b.c>", "a@b@c",
             "Dr. Who <who@tardis.uk>", "<@route:a@b.c>", "a@b.c <d@e.f>"]


@pytest.mark.parametrize("value", ADDRESSES)
def test_the_quick_address_reading_agrees_with_the_email_package(value):
    from email.utils import parseaddr

    summary = summarize(f"From: {value}\r\n\r\nbody".encode())
    assert summary.sender == (parseaddr(value)[1] or None)


@pytest.mark.parametrize("subject", ["Hello  world", "  x\t y ", "plain", "ทดสอบ", "a =? b", "Re: [x] y", "=?x?= y"])
def test_a_subject_without_encoded_words_reads_as_the_email_package_reads_it(subject):
    from email.header import decode_header, make_header

    expected = " ".join(str(make_header(decode_header(subject))).split()) or None
    assert summarize(f"Subject: {subject}\r\n\r\nbody".encode()).subject == expected


@given(st.text(alphabet='ab.@<> ,;:"()\\[]ก', max_size=24))
def test_any_from_value_gives_the_address_the_email_package_gives(value):
    from email.utils import parseaddr

    assert summarize(f"From: {value}\r\n\r\n".encode()).sender == (parseaddr(value.strip())[1] or None)


@pytest.mark.parametrize(("head", "block"), [
    (b"Subject: a\r\n\r\nbody", b"Subject: a"),
    (b"Subject: a\n\nbody", b"Subject: a"),
    (b"Subject: a\r\n\nbody", b"Subject: a"),  # mixed line endings: the first empty line ends it
    (b"Subject: a\n\r\nbody\n\n", b"Subject: a"),
    (b"Subject: a\r\r\n\nbody", b"Subject: a\r"),
    (b"\r\n\r\nbody", b""),
    (b"Subject: no body", b"Subject: no body"),
])
def test_the_header_block_ends_at_the_first_empty_line(head: bytes, block: bytes) -> None:
    assert header_block(head) == block


def test_a_header_block_without_end_is_cut_at_the_limit_and_fields_start_lines() -> None:
    head = b"Subject: first\r\nX-Long: " + b"x" * MAX_HEADER_BYTES + b"\r\n\r\n"
    assert header_block(head) == head[:MAX_HEADER_BYTES]
    assert header_fields(b"subject: one\r\nX-Subject: two\r\n from: folded\r\nFROM : three") == {
        "subject": "one", "from": "three"}
