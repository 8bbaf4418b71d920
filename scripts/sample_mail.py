"""Realistic raw RFC 5322 sample messages (Thai-heavy) and a mailbox filler.

Stdlib only, shared by the tests and ``dovecot_server.py --demo``.  Every
builder returns ``bytes`` with CRLF line ends unless its name says otherwise,
a unique Message-ID and a Date; all output is deterministic.

Folder names in this module always use "/" as the hierarchy separator;
:func:`fill_mailbox` maps them to the server's separator and prefix.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

__all__ = [
    "BKK",
    "SAMPLE_FOLDERS",
    "SampleMessage",
    "bare_lf_message",
    "big_message",
    "demo_mailbox",
    "encode_word",
    "fill_mailbox",
    "from_lines_message",
    "no_final_newline_message",
    "raw_utf8_header_message",
    "sample_mailbox",
    "sample_messages",
    "server_folder_name",
    "thai_attachment_message",
    "thai_base64_message",
    "thai_letter",
    "thai_qp_message",
    "tis620_message",
]

CRLF = b"\r\n"
BKK = timezone(timedelta(hours=7), "ICT")
DOMAIN = "coj.go.th"

# Nested Thai names, a name with a space, an empty folder; "กล่องขาเข้า" and
# "งานคดี/2566" are deliberately left implied (never created themselves).
SAMPLE_FOLDERS: list[str] = [
    "INBOX",
    "กล่องขาเข้า/สำคัญ",
    "งานคดี",
    "งานคดี/2566/มกราคม",
    "Sent",
    "Drafts",
    "ว่าง",
    "Project Notes",
]

THAI_PARAGRAPH = (
    "เรียน ท่านผู้พิพากษา\n"
    "ตามที่ศาลได้นัดพิจารณาคดีหมายเลขดำที่ อ.1234/2566 ในวันที่ 15 มกราคม 2567 เวลา 09.00 น.\n"
    "จึงเรียนมาเพื่อโปรดทราบและพิจารณาดำเนินการต่อไป\n"
    "ขอแสดงความนับถือ\n"
    "สมชาย ใจดี"
)


@dataclass(frozen=True)
class SampleMessage:
    """A raw message plus what APPEND should set on it."""

    raw: bytes
    flags: tuple[str, ...] = ()
    internaldate: datetime | None = None


# ---------------------------------------------------------------- helpers
def encode_word(text: str, charset: str = "utf-8", encoding: str = "B") -> str:
    """RFC 2047 encoded-words, folded; never splits a multi-byte character."""
    words: list[str] = []
    chunk = ""
    for char in text:
        # 45 encoded bytes keep each encoded-word under the 75-char limit.
        if len((chunk + char).encode(charset)) > 45:
            words.append(_one_word(chunk, charset, encoding))
            chunk = ""
        chunk += char
    if chunk:
        words.append(_one_word(chunk, charset, encoding))
    return "\r\n ".join(words)


def _one_word(text: str, charset: str, encoding: str) -> str:
    data = text.encode(charset)
    if encoding.upper() == "B":
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = "".join(chr(b) if (chr(b).isalnum() and b < 128) else ("_" if b == 32 else f"={b:02X}") for b in data)
    return f"=?{charset.upper()}?{encoding.upper()}?{payload}?="


def _headers(fields: Sequence[tuple[str, str | bytes]]) -> bytes:
    lines = [name.encode("ascii") + b": " + (v if isinstance(v, bytes) else v.encode("ascii")) for name, v in fields]
    return CRLF.join(lines) + CRLF


def _crlf(text: str, charset: str = "utf-8") -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode(charset)


def _qp(text: str, charset: str = "utf-8") -> bytes:
    """Quoted-printable body (soft line breaks at 76), CRLF line ends."""
    lines = text.replace("\r\n", "\n").split("\n")
    encoded = [binascii.b2a_qp(line.encode(charset)).replace(b"=\n", b"=\r\n") for line in lines]
    return CRLF.join(encoded)


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _date(when: datetime) -> str:
    return format_datetime(when)


def _standard(
    subject: str | bytes, message_id: str, when: datetime, sender: str | bytes, to: str | bytes = f"judge@{DOMAIN}"
) -> list[tuple[str, str | bytes]]:
    return [
        ("Return-Path", f"<{_addr(sender)}>"),
        ("From", sender),
        ("To", to),
        ("Subject", subject),
        ("Date", _date(when)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
    ]


def _addr(mailbox: str | bytes) -> str:
    if isinstance(mailbox, bytes):
        mailbox = mailbox.decode("utf-8")
    match = re.search(r"<([^>]+)>", mailbox)
    return match.group(1) if match else mailbox


def _mid(tag: str) -> str:
    return f"<sample-{tag}@{DOMAIN}>"


_DEFAULT_DATE = datetime(2024, 1, 15, 9, 30, tzinfo=BKK)
THAI_SENDER = encode_word("สมชาย ใจดี") + f" <somchai@{DOMAIN}>"


# --------------------------------------------------------------- builders
def thai_qp_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """UTF-8 Thai text/plain, quoted-printable, base64 encoded-word subject."""
    head = _standard(
        encode_word("นัดพิจารณาคดี อ.1234/2566 วันที่ 15 มกราคม 2567"),
        message_id or _mid("thai-qp"),
        date or _DEFAULT_DATE,
        THAI_SENDER,
    )
    head += [("Content-Type", 'text/plain; charset="utf-8"'), ("Content-Transfer-Encoding", "quoted-printable")]
    return _headers(head) + CRLF + _qp(THAI_PARAGRAPH) + CRLF


def thai_base64_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """multipart/alternative, both parts UTF-8 base64; Q-encoded subject."""
    boundary = "=_alt_0001_sample"
    html = "<html><body><p>" + THAI_PARAGRAPH.replace("\n", "<br>\n") + "</p></body></html>"
    head = _standard(
        encode_word("รายงานสรุปผลการประชุม ประจำเดือนธันวาคม", encoding="Q"),
        message_id or _mid("thai-b64"),
        date or datetime(2023, 12, 28, 16, 5, tzinfo=BKK),
        f"=?UTF-8?B?{base64.b64encode('สำนักงานศาล'.encode()).decode()}?= <office@{DOMAIN}>",
    )
    head.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    body = b"".join(
        [
            b"This is a multi-part message in MIME format.\r\n",
            _part(boundary, "text/plain; charset=utf-8", "base64", _b64(_crlf(THAI_PARAGRAPH))),
            _part(boundary, "text/html; charset=utf-8", "base64", _b64(_crlf(html))),
            f"--{boundary}--\r\n".encode(),
        ]
    )
    return _headers(head) + CRLF + body


def _part(boundary: str, ctype: str, cte: str, payload: bytes, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    fields: list[tuple[str, str | bytes]] = [("Content-Type", ctype), ("Content-Transfer-Encoding", cte), *extra]
    return f"--{boundary}\r\n".encode() + _headers(fields) + CRLF + payload + CRLF


def tis620_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """Thai in TIS-620 (8bit body, TIS-620 encoded-word subject)."""
    head = _standard(
        encode_word("หนังสือเวียน ฉบับที่ 7", charset="tis-620"),
        message_id or _mid("tis620"),
        date or datetime(2022, 6, 1, 8, 0, tzinfo=BKK),
        f"saraban@{DOMAIN}",
    )
    head += [("Content-Type", "text/plain; charset=TIS-620"), ("Content-Transfer-Encoding", "8bit")]
    return _headers(head) + CRLF + _crlf(THAI_PARAGRAPH, "tis-620") + CRLF


def _pdf_bytes() -> bytes:
    # Enough PDF structure to look real, including the binary marker line.
    return (
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        + bytes(range(256)) * 8
        + b"\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def thai_attachment_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """multipart/mixed with a PDF whose Thai file name uses RFC 2231."""
    boundary = "----=_Part_42_1700000000"
    filename = "คำพิพากษา ฉบับที่ 12.pdf"
    disposition = f"attachment; filename*=UTF-8''{quote(filename.encode('utf-8'), safe='')}"
    head = _standard(
        encode_word("ส่งสำเนาคำพิพากษา (ไฟล์แนบ)"),
        message_id or _mid("thai-attachment"),
        date or datetime(2023, 3, 9, 14, 12, tzinfo=BKK),
        THAI_SENDER,
    )
    head.append(("Content-Type", f'multipart/mixed; boundary="{boundary}"'))
    body = b"".join(
        [
            _part(boundary, "text/plain; charset=utf-8", "quoted-printable", _qp("ส่งไฟล์แนบตามที่ขอมาครับ")),
            _part(
                boundary,
                f'application/pdf; name="{encode_word(filename)}"',
                "base64",
                _b64(_pdf_bytes()),
                [("Content-Disposition", disposition)],
            ),
            f"--{boundary}--\r\n".encode(),
        ]
    )
    return _headers(head) + CRLF + body


def from_lines_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """Body lines that mbox formats must quote: ``From ``, ``>From ``, ``>>From ``."""
    head = _standard(
        "Minutes: From the meeting", message_id or _mid("from-lines"), date or datetime(2022, 11, 2, 10, 0, tzinfo=BKK),
        f"clerk@{DOMAIN}",
    )  # fmt: skip
    head += [("Content-Type", "text/plain; charset=us-ascii"), ("Content-Transfer-Encoding", "7bit")]
    body = (
        "Hello,\n\nFrom the minutes of the last meeting:\n>From a quoted reply\n>>From twice quoted\n"
        "From: this is body text, not a header\n From with a leading space\nFrom\n\nRegards\n"
    )
    return _headers(head) + CRLF + _crlf(body)


def bare_lf_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """A message whose line ends are bare LF throughout (as Unix tools write)."""
    crlf = thai_qp_message(
        message_id=message_id or _mid("bare-lf"), date=date or datetime(2022, 2, 2, 2, 2, tzinfo=BKK)
    )
    return crlf.replace(CRLF, b"\n")


def raw_utf8_header_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """Raw 8-bit UTF-8 in From/To/Subject (RFC 6532 style, or just broken)."""
    head = _standard(
        "ประชุมด่วน วันจันทร์นี้".encode(),
        message_id or _mid("raw-utf8-header"),
        date or datetime(2024, 5, 20, 7, 45, tzinfo=BKK),
        f"สมหญิง รักงาน <somying@{DOMAIN}>".encode(),
        to=f"ทีมงาน <team@{DOMAIN}>".encode(),
    )
    head += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "8bit")]
    return _headers(head) + CRLF + _crlf("ขอเชิญประชุมด่วน ห้อง 301\n")


def no_final_newline_message(*, message_id: str | None = None, date: datetime | None = None) -> bytes:
    """Last body line has no line end at all."""
    head = _standard(
        encode_word("ไม่มีบรรทัดว่างท้ายข้อความ"), message_id or _mid("no-final-newline"),
        date or datetime(2023, 8, 8, 8, 8, tzinfo=BKK), f"bot@{DOMAIN}",
    )  # fmt: skip
    head += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "8bit")]
    return _headers(head) + CRLF + _crlf("บรรทัดแรก\nบรรทัดสุดท้ายไม่มีการขึ้นบรรทัดใหม่")


def big_message(size_bytes: int = 20 * 1024 * 1024, *, seed: int = 0, message_id: str | None = None) -> bytes:
    """Exactly ``size_bytes`` long: a short Thai text and a base64 "scan".

    The attachment is pseudo-random (incompressible, like a real scan) but
    deterministic for a given seed.
    """
    boundary = "big-boundary-0001"
    head = _standard(
        encode_word("สำนวนคดีฉบับสแกน (ไฟล์ใหญ่)"), message_id or _mid(f"big-{size_bytes}-{seed}"),
        datetime(2023, 10, 10, 10, 10, tzinfo=BKK), f"scanner@{DOMAIN}",
    )  # fmt: skip
    head.append(("Content-Type", f'multipart/mixed; boundary="{boundary}"'))
    prefix = _headers(head) + CRLF + f"--{boundary}\r\n".encode()
    prefix += _headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "8bit")])
    prefix += CRLF + _crlf("ไฟล์สแกนสำนวนคดีแนบมาพร้อมนี้\n")
    attach_head = f"\r\n--{boundary}\r\n".encode() + _headers(
        [("Content-Type", 'application/pdf; name="scan.pdf"'), ("Content-Transfer-Encoding", "base64"),
         ("Content-Disposition", 'attachment; filename="scan.pdf"')]
    ) + CRLF  # fmt: skip
    suffix = f"--{boundary}--\r\n".encode()
    fixed = len(prefix) + len(attach_head) + len(suffix)
    # Base64 lines are 76 chars + CRLF (78 bytes, 57 raw bytes); the rest of
    # the size goes into padding lines in the text part.
    lines = max(0, (size_bytes - fixed - 160) // 78)
    attachment = _b64(random.Random(seed).randbytes(lines * 57))
    pad = size_bytes - fixed - len(attachment)
    if pad < 0:
        raise ValueError(f"big_message needs at least {fixed + 2} bytes")
    return prefix + _padding(pad) + attach_head + attachment + suffix


def _padding(size: int) -> bytes:
    """``size`` bytes of CRLF-ended lines (a lone leftover byte is a space)."""
    out = b""
    while size > 80:
        out += b"." * 76 + CRLF
        size -= 78
    if size >= 2:
        out += b"." * (size - 2) + CRLF
    elif size == 1:
        out += b" "
    return out


def thai_letter(index: int, when: datetime, *, sender: str | None = None, to: str | None = None) -> bytes:
    """The n-th of a family of ordinary Thai office letters (demo filler)."""
    subjects = ["แจ้งกำหนดนัดพิจารณา", "ขออนุมัติเดินทางไปราชการ", "รายงานผลการปฏิบัติงาน", "เชิญประชุมคณะทำงาน",
                "ส่งเอกสารประกอบการพิจารณา", "สอบถามความคืบหน้าคดี"]  # fmt: skip
    people = ["สมชาย ใจดี", "สมหญิง รักงาน", "วิชัย มั่นคง", "มาลี ศรีสุข", "ประเสริฐ ทองดี"]
    who = people[index % len(people)]
    subject = f"{subjects[index % len(subjects)]} (ครั้งที่ {index + 1})"
    head = _standard(
        encode_word(subject), _mid(f"letter-{index}"), when,
        sender or f"{encode_word(who)} <user{index % len(people)}@{DOMAIN}>", to or f"judge@{DOMAIN}",
    )  # fmt: skip
    head += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "quoted-printable")]
    reference = f"อ้างอิงเลขที่ ศย {1000 + index}/{2565 + index % 3}"
    text = f"เรื่อง {subject}\n\n{THAI_PARAGRAPH.replace('สมชาย ใจดี', who)}\n\n{reference}"
    return _headers(head) + CRLF + _qp(text) + CRLF


def sample_messages() -> dict[str, bytes]:
    """Every odd-case sample (not the big one), by name."""
    return {
        "thai_qp": thai_qp_message(),
        "thai_base64": thai_base64_message(),
        "tis620": tis620_message(),
        "thai_attachment": thai_attachment_message(),
        "from_lines": from_lines_message(),
        "bare_lf": bare_lf_message(),
        "raw_utf8_header": raw_utf8_header_message(),
        "no_final_newline": no_final_newline_message(),
    }


def sample_mailbox() -> dict[str, list[SampleMessage]]:
    """All samples spread over SAMPLE_FOLDERS with flags and dates."""
    msgs = sample_messages()
    when = datetime(2023, 1, 5, 9, 0, tzinfo=BKK)
    return {
        "INBOX": [
            SampleMessage(msgs["thai_qp"], ("\\Seen",), when),
            SampleMessage(msgs["bare_lf"], (), when + timedelta(days=1)),
            SampleMessage(msgs["no_final_newline"], ("\\Flagged",), when + timedelta(days=2)),
        ],
        "กล่องขาเข้า/สำคัญ": [SampleMessage(msgs["thai_attachment"], ("\\Seen", "\\Flagged"), when)],
        "งานคดี": [SampleMessage(msgs["tis620"], ("\\Answered", "\\Seen"), when)],
        "งานคดี/2566/มกราคม": [SampleMessage(msgs["from_lines"], ("$Label1",), when)],
        "Sent": [SampleMessage(msgs["thai_base64"], ("\\Seen",), when)],
        "Drafts": [SampleMessage(msgs["raw_utf8_header"], ("\\Draft",), when)],
        "ว่าง": [],
        "Project Notes": [SampleMessage(thai_letter(99, when), ("\\Deleted",), when)],
    }


def demo_mailbox() -> dict[str, list[SampleMessage]]:
    """What ``dovecot_server.py --demo`` loads: ~30 messages, 2022-2024
    (พ.ศ. 2565-2567), several seen/flagged, every odd sample included."""
    box: dict[str, list[SampleMessage]] = {name: list(msgs) for name, msgs in sample_mailbox().items()}
    start = datetime(2022, 1, 10, 8, 30, tzinfo=BKK)
    targets = ["INBOX", "INBOX", "งานคดี", "งานคดี/2566/มกราคม", "กล่องขาเข้า/สำคัญ", "Sent"]
    for i in range(22):
        when = start + timedelta(days=i * 47, hours=i % 9)  # about 2.8 years
        flags = tuple(f for f, on in (("\\Seen", i % 3 != 0), ("\\Flagged", i % 5 == 0)) if on)
        folder = targets[i % len(targets)]
        box[folder].append(SampleMessage(thai_letter(i, when), flags, when))
    return box


# ------------------------------------------------------------- IMAP side
def server_folder_name(folder: str, separator: str = "/", prefix: str = "") -> str:
    """Map a "/"-separated sample name to the server's namespace."""
    if folder.upper() == "INBOX":
        return "INBOX"
    return prefix + folder.replace("/", separator)


def fill_mailbox(
    client: Any,
    folders_and_messages: Mapping[str, Iterable[SampleMessage | bytes]],
    separator: str = "/",
    prefix: str = "",
) -> dict[str, list[int]]:
    """Create the folders and APPEND the messages; returns UIDs per folder.

    *client* is a logged-in ``imapclient.IMAPClient``.  Messages go through
    ``multiappend`` (one message per APPEND) because ``IMAPClient.append``
    uses imaplib's ``append``, which rewrites bare LF and CR to CRLF: the
    bytes would no longer be what the sample built.
    """
    uids: dict[str, list[int]] = {}
    for folder in sorted(folders_and_messages, key=lambda f: (f.upper() != "INBOX", f.count("/"), f)):
        name = server_folder_name(folder, separator, prefix)
        if name != "INBOX":
            _create(client, name)
        uids[folder] = [_append(client, name, msg) for msg in folders_and_messages[folder]]
    return uids


def _create(client: Any, name: str) -> None:
    try:
        client.create_folder(name)
    except Exception as exc:  # imapclient raises IMAPClientError subclasses
        if "ALREADYEXISTS" not in str(exc):
            raise
    client.subscribe_folder(name)


def _append(client: Any, folder: str, msg: SampleMessage | bytes) -> int:
    if isinstance(msg, bytes):
        msg = SampleMessage(msg)
    item: dict[str, Any] = {"msg": msg.raw, "flags": msg.flags}
    if msg.internaldate is not None:
        item["date"] = msg.internaldate
    # multiappend returns ("OK"|"NO", [text]) instead of raising on NO.
    status, lines = client.multiappend(folder, [item])
    text = b" ".join(line for line in lines if isinstance(line, bytes)).decode("utf-8", "replace")
    error = getattr(client, "Error", RuntimeError)
    if status != "OK":
        raise error(f"APPEND to {folder!r} failed: {status} {text}")
    match = re.search(r"APPENDUID \d+ (\d+)", text)
    if not match:
        raise error(f"APPEND to {folder!r} gave no APPENDUID: {text}")
    return int(match.group(1))
