#!/usr/bin/env python3
"""Deterministic, realistic mailboxes written straight into a Dovecot Maildir.

Loading 10,000 messages over IMAP APPEND takes minutes; writing the files the
way Dovecot itself would have stored them takes seconds.  This module owns
that: what a corpus looks like (sizes, languages, encodings, folders, flags,
dates) and how it lands on disk.  Stdlib only; ``dovecot_server.py`` and
``sample_mail.py`` come from this directory.

The shape of a corpus ("mixed" profile, tuned so 10,000 messages ≈ 600 MB):

* sizes: 8% 2–5 KB, 85% 5–50 KB (log-uniform), 6% 50 KB–1 MB (attachments),
  1% 1–5 MB (scans); ``target_bytes`` rescales them to hit a total;
* text: Thai office letters and English mail, UTF-8 quoted-printable and
  base64, TIS-620 8bit, multipart/alternative with HTML, replies that quote;
  headers with Received chains, DKIM signatures, RFC 2047 subjects;
* attachments: PDF/DOCX/XLSX/JPEG-like binary (incompressible, as real ones
  are), base64, with Thai file names in RFC 2231 and RFC 2047 form;
* a few of ``sample_mail``'s odd cases (``From `` body lines, raw 8-bit
  headers, no final newline, TIS-620 subjects) among them;
* folders: INBOX, Sent, nested Thai folders (``งานคดี/2566/มกราคม``), weighted
  so INBOX and Sent hold most mail; flags mostly ``\\Seen``.

The "small" profile (2–12 KB text messages) is for many-message runs.

On disk (Dovecot ``maildir:~/Maildir:LAYOUT=fs``, separator "/"): folder
``a/b`` is the directory ``a/b`` (modified UTF-7 names, via
``DovecotServer.folder_dir``) with ``cur/ new/ tmp/``; file names are
``<time>.M<n>P<seed>Q<batch>.mbbench,S=<size>,W=<size>:2,<flags>`` so
Dovecot never needs to stat or read a file to learn its sizes; the file's
mtime is its INTERNALDATE; line ends are CRLF, as IMAP delivers them.
``append=True`` delivers further messages into ``new/`` as an MDA would.

API::

    info = make_corpus(server, "user@coj.go.th", messages=10_000, folders=10)
    info.messages, info.bytes, info.folders

CLI (for people)::

    python scripts/make_corpus.py --dir /tmp/mbc --user bench@coj.go.th:secret \\
        --messages 10000 --folders 10 [--target-mb 600] [--serve]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import itertools
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import sample_mail  # noqa: E402
from dovecot_server import DovecotServer  # noqa: E402

__all__ = ["PROFILES", "CorpusInfo", "folder_names", "main", "make_corpus"]

KB = 1024
MB = 1024 * KB
CRLF = b"\r\n"
DOMAIN = "coj.go.th"
PROFILES = ("mixed", "small")
HOST_TAG = "mbbench"
# Chunks of messages handed to one worker; big enough to amortise pickling.
CHUNK_MESSAGES = 250
# Corpus dates: 2021-01-01 .. 2024-12-31 (พ.ศ. 2564-2567) for the first load;
# appended mail arrives after that.
FIRST_DATE = datetime(2021, 1, 1, 8, 0, tzinfo=sample_mail.BKK)
CORPUS_DAYS = 4 * 365
APPEND_DATE = datetime(2025, 1, 6, 8, 0, tzinfo=sample_mail.BKK)


@dataclass(frozen=True)
class CorpusInfo:
    """What was written: message count, total bytes on disk, folder names."""

    messages: int
    bytes: int
    folders: tuple[str, ...]


@dataclass(frozen=True)
class _Spec:
    """One message to build: everything chosen up front by the seeded plan."""

    seed: int
    index: int
    directory: str  # absolute path of cur/ or new/
    size: int
    epoch: int
    flags: str  # Maildir info letters, sorted
    big: bool


# ------------------------------------------------------------------ folders
_FIXED_FOLDERS = [
    "INBOX",
    "Sent",
    "กล่องขาเข้า",
    "กล่องขาเข้า/สำคัญ",
    "งานคดี",
    "งานคดี/2566",
    "งานคดี/2566/มกราคม",
    "หนังสือเวียน",
    "Archive",
    "Archive/2565",
    "Drafts",
    "ประชุม",
    "ประชุม/คณะทำงาน",
    "Project Notes",
]
_THAI_MONTHS = ["มกราคม", "กุมภาพันธ์", "มีนาคม", "เมษายน", "พฤษภาคม", "มิถุนายน", "กรกฎาคม",
                "สิงหาคม", "กันยายน", "ตุลาคม", "พฤศจิกายน", "ธันวาคม"]  # fmt: skip


def _folder_sequence() -> Iterator[str]:
    """Fixed names first, then งานคดี/<year>/<month> back from 2567 (over 800
    folders in all); every folder's parent comes before it, so any prefix of
    the sequence is a closed tree."""
    seen = set(_FIXED_FOLDERS)
    yield from _FIXED_FOLDERS
    for year in range(2567, 2500, -1):
        for name in [f"งานคดี/{year}"] + [f"งานคดี/{year}/{month}" for month in _THAI_MONTHS]:
            if name not in seen:
                seen.add(name)
                yield name


def folder_names(count: int) -> list[str]:
    """The first *count* folders of every corpus (INBOX first)."""
    if count < 1:
        raise ValueError("a corpus needs at least one folder (INBOX)")
    names = list(itertools.islice(_folder_sequence(), count))
    if len(names) < count:
        raise ValueError(f"at most {len(names)} folders")
    return names


TREE_FANOUT = 10
TREE_DEPTH = 4


def _tree_sequence() -> Iterator[str]:
    """A tree TREE_DEPTH deep, TREE_FANOUT children a node, in depth-first
    order (so the fourth folder is already four deep and every prefix is a
    closed tree); every other name is Thai."""
    def children(parent: str, depth: int) -> Iterator[str]:
        for index in range(TREE_FANOUT):
            leaf = f"คดี {index}" if index % 2 else f"Case {index}"
            name = f"{parent}/{leaf}" if parent else leaf
            yield name
            if depth < TREE_DEPTH:
                yield from children(name, depth + 1)

    yield "INBOX"
    yield from children("", 1)


def tree_folder_names(count: int) -> list[str]:
    """INBOX and *count* - 1 folders nested up to four deep, half with Thai names."""
    names = list(itertools.islice(_tree_sequence(), count))
    if count < 1 or len(names) < count:
        raise ValueError(f"a tree corpus has 1 to {len(names)} folders")
    return names


def _folder_weights(names: Sequence[str]) -> list[float]:
    # INBOX and Sent hold most of a real mailbox; the rest fall off like 1/rank.
    weights = [1.0 / (rank + 1) for rank in range(len(names))]
    weights[0] *= 2.5
    return weights


# -------------------------------------------------------------------- sizes
def _draw_size(rng: random.Random, profile: str) -> int:
    if profile == "small":
        return _log_uniform(rng, 2 * KB, 12 * KB)
    roll = rng.random()
    if roll < 0.08:
        return _log_uniform(rng, 2 * KB, 5 * KB)
    if roll < 0.93:
        return _log_uniform(rng, 5 * KB, 50 * KB)
    if roll < 0.99:
        return _log_uniform(rng, 50 * KB, 1 * MB)
    return _log_uniform(rng, 1 * MB, 5 * MB)


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def _scale_sizes(sizes: list[int], target: int) -> list[int]:
    """Rescale so the total is about *target* (no message below 2 KB)."""
    total = sum(sizes)
    if total <= 0 or target <= 0:
        return sizes
    factor = target / total
    return [max(2 * KB, int(size * factor)) for size in sizes]


# ------------------------------------------------------------------- text
_THAI_SENTENCES = [
    "ตามที่ศาลได้นัดพิจารณาคดีหมายเลขดำที่ อ.{n}/2566 ในวันที่ {d} มกราคม 2567 เวลา 09.00 น.",
    "จึงเรียนมาเพื่อโปรดทราบและพิจารณาดำเนินการต่อไป",
    "สำนักงานศาลยุติธรรมขอแจ้งกำหนดการประชุมคณะทำงานครั้งที่ {d}/2567",
    "ขอให้ผู้เกี่ยวข้องจัดส่งเอกสารประกอบการพิจารณาภายในวันที่ {d} กุมภาพันธ์ 2567",
    "ทั้งนี้ได้แนบสำเนาคำพิพากษาและคำสั่งศาลมาพร้อมหนังสือฉบับนี้แล้ว",
    "หากมีข้อสงสัยประการใด โปรดติดต่อกลุ่มงานสารบรรณ โทร. 0 2541 {n}",
    "ที่ประชุมมีมติเห็นชอบให้ดำเนินการตามข้อเสนอของคณะอนุกรรมการ",
    "ขออนุมัติเดินทางไปราชการเพื่อเข้าร่วมการอบรมหลักสูตรผู้พิพากษาหัวหน้าศาล",
    "โดยให้เบิกค่าใช้จ่ายจากงบประมาณประจำปี พ.ศ. 2567 แผนงานบุคลากรภาครัฐ",
    "รายงานผลการปฏิบัติงานประจำไตรมาสที่ {d} ปรากฏรายละเอียดตามเอกสารแนบ",
    "ศาลเห็นควรให้เลื่อนการสืบพยานโจทก์ออกไปก่อน เนื่องจากทนายจำเลยป่วย",
    "คู่ความทั้งสองฝ่ายแถลงว่าประสงค์จะเจรจาไกล่เกลี่ยข้อพิพาท",
    "ขอแสดงความนับถือ",
    "ด้วยความเคารพอย่างสูง",
    "กรุณาตอบกลับภายในวันศุกร์นี้ เพื่อจะได้รวบรวมเสนอผู้บริหารต่อไป",
    "ระบบสารบรรณอิเล็กทรอนิกส์จะปิดปรับปรุงในวันเสาร์ที่ {d} ระหว่างเวลา 20.00-24.00 น.",
    "เลขที่หนังสือ ศย {n}/ว {d} ลงวันที่ {d} ธันวาคม 2566",
    "ขอความอนุเคราะห์ตรวจสอบข้อมูลสำนวนคดีในระบบ CIOS ให้เป็นปัจจุบัน",
]
_ENGLISH_SENTENCES = [
    "Please find attached the minutes of yesterday's coordination meeting.",
    "The hearing for case no. {n}/2566 has been moved to {d} January at 9:00.",
    "Could you confirm the room booking for the training session next week?",
    "We are migrating the mail service on the weekend of the {d}th; expect short outages.",
    "Thank you for your quick reply, that answers all of my questions.",
    "The budget figures for Q{d} are in the spreadsheet; totals are on the last tab.",
    "Let me know if anything is missing and I will send it again.",
    "Best regards,",
    "Kind regards from the IT support team (ticket #{n}).",
    "The scanner in room 3{d}1 is back in service after the firmware update.",
    "Reminder: passwords expire every 90 days; change yours before the {d}th.",
    "I have reviewed the draft and left a few comments in the margin.",
]
_THAI_SUBJECTS = ["แจ้งกำหนดนัดพิจารณา", "ขออนุมัติเดินทางไปราชการ", "รายงานผลการปฏิบัติงาน", "เชิญประชุมคณะทำงาน",
                  "ส่งเอกสารประกอบการพิจารณา", "สอบถามความคืบหน้าคดี", "หนังสือเวียน ฉบับที่ {d}",
                  "ส่งสำเนาคำพิพากษา", "ตอบกลับ: นัดหมายประชุม", "แจ้งปิดปรับปรุงระบบ"]  # fmt: skip
_ENGLISH_SUBJECTS = ["Meeting minutes", "Re: hearing schedule", "Budget Q{d}", "Training registration",
                     "Mail migration notice", "Fwd: scanned documents", "IT ticket #{n}"]  # fmt: skip
_THAI_PEOPLE = ["สมชาย ใจดี", "สมหญิง รักงาน", "วิชัย มั่นคง", "มาลี ศรีสุข", "ประเสริฐ ทองดี", "กนกวรรณ แก้วใส"]
_ENGLISH_PEOPLE = ["Somchai Jaidee", "Malee Srisuk", "IT Support", "Court Registry", "Wichai Mankong"]
_ATTACHMENTS = [
    ("คำพิพากษา ฉบับที่ {n}.pdf", "application/pdf", b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n"),
    ("รายงานการประชุม ครั้งที่ {d}.docx",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"PK\x03\x04\x14\x00\x06\x00"),
    ("ตารางนัดความ 2567.xlsx",
     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"PK\x03\x04\x14\x00\x06\x00"),
    ("ภาพถ่ายหลักฐาน {d}.jpg", "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ("สำเนาหนังสือ ศย {n}.pdf", "application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
    ("scan_{n}.pdf", "application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
]  # fmt: skip


def _fill(template: str, rng: random.Random) -> str:
    return template.replace("{n}", str(rng.randint(100, 9999))).replace("{d}", str(rng.randint(1, 28)))


def _sentences(rng: random.Random, thai: bool) -> list[str]:
    pool = _THAI_SENTENCES if thai else _ENGLISH_SENTENCES
    return [_fill(rng.choice(pool), rng) for _ in range(rng.randint(2, 5))]


# ---------------------------------------------------------------- headers
def _encoded_subject(rng: random.Random, text: str, charset: str) -> str:
    if all(ord(char) < 128 for char in text):
        return text
    return sample_mail.encode_word(text, charset=charset, encoding=rng.choice("BBQ"))


def _headers(rng: random.Random, spec: _Spec, *, thai: bool, charset: str, content_type: str,
             transfer_encoding: str | None) -> bytes:
    when = datetime.fromtimestamp(spec.epoch, sample_mail.BKK)
    people = _THAI_PEOPLE if thai else _ENGLISH_PEOPLE
    who = rng.choice(people)
    display = _encoded_subject(rng, who, "utf-8" if charset != "tis-620" else "tis-620")
    user = f"user{rng.randint(1, 400)}"
    subject = _fill(rng.choice(_THAI_SUBJECTS if thai else _ENGLISH_SUBJECTS), rng)
    relay = rng.randint(1, 9)
    lines = [
        f"Return-Path: <{user}@{DOMAIN}>",
        f"Delivered-To: judge@{DOMAIN}",
    ]
    for hop in range(rng.randint(2, 4)):
        stamp = format_datetime(when - timedelta(seconds=hop * 3))
        lines.append(f"Received: from mx{relay}.mail.go.th (mx{relay}.mail.go.th [203.113.{hop}.{relay}])\r\n"
                     f"\tby imap.mail.go.th (Postfix) with ESMTPS id {rng.getrandbits(40):X}\r\n"
                     f"\tfor <judge@{DOMAIN}>; {stamp}")
    signature = base64.b64encode(rng.randbytes(256)).decode("ascii")
    folded = "\r\n\t".join(signature[start : start + 72] for start in range(0, len(signature), 72))
    lines.append(f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={DOMAIN}; s=mail;\r\n"
                 f"\th=from:to:subject:date:message-id; bh={base64.b64encode(rng.randbytes(32)).decode()};\r\n"
                 f"\tb={folded}")
    lines += [
        f"From: {display} <{user}@{DOMAIN}>",
        f"To: judge@{DOMAIN}" + (f", clerk{rng.randint(1, 30)}@{DOMAIN}" if rng.random() < 0.3 else ""),
        f"Subject: {_encoded_subject(rng, subject, charset)}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <bench.{spec.index}.{rng.getrandbits(32):08x}@{DOMAIN}>",
    ]
    if rng.random() < 0.3:
        parent = f"<bench.{max(0, spec.index - rng.randint(1, 50))}@{DOMAIN}>"
        lines += [f"In-Reply-To: {parent}", f"References: {parent}"]
    lines += [
        "MIME-Version: 1.0",
        f"X-Mailer: {rng.choice(['Zimbra 8.8.15', 'Microsoft Outlook 16.0', 'Thunderbird 115.6', 'Roundcube'])}",
        f"Content-Type: {content_type}",
    ]
    if transfer_encoding:
        lines.append(f"Content-Transfer-Encoding: {transfer_encoding}")
    return "\r\n".join(lines).encode("ascii") + CRLF + CRLF


# ------------------------------------------------------------------- bodies
def _qp(text: str, charset: str) -> bytes:
    encoded = [binascii.b2a_qp(line.encode(charset)) for line in text.split("\n")]
    return CRLF.join(encoded).replace(b"=\n", b"=\r\n") + CRLF


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _text_of_size(rng: random.Random, thai: bool, encoded_bytes: int, bytes_per_char: float) -> str:
    """Paragraphs whose encoded size is about *encoded_bytes*."""
    paragraphs: list[str] = []
    length = 0.0
    while length < encoded_bytes or not paragraphs:
        sentences = _sentences(rng, thai)
        # Replies quote earlier text line by line.
        quoted = bool(paragraphs) and rng.random() < 0.15
        paragraph = "\n".join("> " + line for line in sentences) if quoted else " ".join(sentences)
        paragraphs.append(paragraph)
        length += (len(paragraph) + 2) * bytes_per_char
    return "\n\n".join(paragraphs)


def _part(boundary: str, headers: Sequence[str], payload: bytes) -> bytes:
    return (f"--{boundary}\r\n" + "\r\n".join(headers) + "\r\n\r\n").encode("utf-8") + payload + CRLF


def _text_part(rng: random.Random, thai: bool, charset: str, budget: int) -> tuple[list[str], bytes]:
    """A text/plain part (headers, payload) of roughly *budget* bytes."""
    if charset == "tis-620":
        text = _text_of_size(rng, True, budget, 1.0)
        return ["Content-Type: text/plain; charset=TIS-620", "Content-Transfer-Encoding: 8bit"], \
            text.replace("\n", "\r\n").encode("tis-620") + CRLF
    if not thai:
        text = _text_of_size(rng, False, budget, 1.0)
        return ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"], \
            text.replace("\n", "\r\n").encode("ascii") + CRLF
    if rng.random() < 0.5:  # Thai UTF-8: 3 bytes a character, 9 once quoted-printable
        text = _text_of_size(rng, True, budget, 8.5)
        return ['Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: quoted-printable"], \
            _qp(text, "utf-8")
    text = _text_of_size(rng, True, budget, 4.0)
    return ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"], \
        _b64(text.replace("\n", "\r\n").encode("utf-8"))


def _html_part(rng: random.Random, thai: bool, budget: int) -> tuple[list[str], bytes]:
    text = _text_of_size(rng, thai, budget, 4.0 if thai else 1.4)
    html = "<html><body>" + "".join(f"<p>{p}</p>\n" for p in text.split("\n\n")) + "</body></html>"
    return ['Content-Type: text/html; charset="utf-8"', "Content-Transfer-Encoding: base64"], \
        _b64(html.replace("\n", "\r\n").encode("utf-8"))


def _attachment_part(rng: random.Random, budget: int) -> tuple[list[str], bytes]:
    template, mime, magic = rng.choice(_ATTACHMENTS)
    name = _fill(template, rng)
    raw_size = max(64, budget * 57 // 78)
    data = magic + rng.randbytes(raw_size - len(magic))
    if rng.random() < 0.5:  # RFC 2231, as Thunderbird and Gmail write it
        disposition = f"attachment; filename*=UTF-8''{quote(name.encode('utf-8'), safe='')}"
        ctype = f"{mime}; name*=UTF-8''{quote(name.encode('utf-8'), safe='')}"
    else:  # RFC 2047 in quotes, as Outlook writes it
        encoded = sample_mail.encode_word(name).replace("\r\n ", " ")
        disposition = f'attachment; filename="{encoded}"'
        ctype = f'{mime}; name="{encoded}"'
    headers = [f"Content-Type: {ctype}", "Content-Transfer-Encoding: base64", f"Content-Disposition: {disposition}"]
    return headers, _b64(data)


def build_message(spec: _Spec) -> bytes:
    """The raw message for *spec*: deterministic in (seed, index)."""
    rng = random.Random(f"message:{spec.seed}:{spec.index}:{spec.size}")
    if spec.big:
        return sample_mail.big_message(spec.size, seed=spec.index, message_id=f"<bench.big.{spec.index}@{DOMAIN}>")
    odd = _odd_message(rng, spec)
    if odd is not None:
        return odd
    thai = rng.random() < 0.7
    charset = "tis-620" if thai and rng.random() < 0.15 else "utf-8"
    # Most big messages carry attachments; some small ones do too.
    wants_attachment = spec.size > 60 * KB or (spec.size > 15 * KB and rng.random() < 0.25)
    body_budget = spec.size - 2200  # about what the headers take
    if wants_attachment:
        text_budget = min(body_budget // 3, rng.randint(800, 6000))
        attachment_budget = body_budget - text_budget - 400
        boundary = f"----=_Part_{spec.index}_{rng.getrandbits(32)}"
        text = _text_part(rng, thai, charset, text_budget)
        attachment = _attachment_part(rng, attachment_budget)
        body = b"This is a multi-part message in MIME format.\r\n" + _part(boundary, *text) + \
            _part(boundary, *attachment) + f"--{boundary}--\r\n".encode()
        head = _headers(rng, spec, thai=thai, charset=charset,
                        content_type=f'multipart/mixed; boundary="{boundary}"', transfer_encoding=None)
        return head + body
    if charset == "utf-8" and rng.random() < 0.45:
        boundary = f"=_alt_{spec.index}_{rng.getrandbits(32):08x}"
        plain = _text_part(rng, thai, charset, body_budget // 3)
        html = _html_part(rng, thai, body_budget * 2 // 3)
        body = _part(boundary, *plain) + _part(boundary, *html) + f"--{boundary}--\r\n".encode()
        head = _headers(rng, spec, thai=thai, charset=charset,
                        content_type=f'multipart/alternative; boundary="{boundary}"', transfer_encoding=None)
        return head + body
    part_headers, payload = _text_part(rng, thai, charset, body_budget)
    content_type = part_headers[0].split(": ", 1)[1]
    transfer = part_headers[1].split(": ", 1)[1]
    return _headers(rng, spec, thai=thai, charset=charset, content_type=content_type,
                    transfer_encoding=transfer) + payload


_ODD_BUILDERS = (sample_mail.from_lines_message, sample_mail.raw_utf8_header_message,
                 sample_mail.no_final_newline_message, sample_mail.tis620_message,
                 sample_mail.thai_attachment_message, sample_mail.thai_base64_message)  # fmt: skip


def _odd_message(rng: random.Random, spec: _Spec) -> bytes | None:
    """About 1 in 500 messages (1 in 40 of the smallest) is one of
    sample_mail's real-world odd cases."""
    if spec.size > 5 * KB or rng.random() >= 0.025:
        return None
    builder = rng.choice(_ODD_BUILDERS)
    when = datetime.fromtimestamp(spec.epoch, sample_mail.BKK)
    return builder(message_id=f"<bench.odd.{spec.index}@{DOMAIN}>", date=when)


# ------------------------------------------------------------------ writing
def _file_name(spec: _Spec, raw: bytes, seed: int, batch: int, new: bool) -> str:
    # W= is the size with CRLF line ends (RFC822.SIZE); a bare LF would count
    # twice there.  With both in the name Dovecot needs no stat or read.
    virtual = len(raw) + raw.count(b"\n") - raw.count(CRLF)
    base = f"{spec.epoch}.M{spec.index}P{seed}Q{batch}.{HOST_TAG},S={len(raw)},W={virtual}"
    return base if new else f"{base}:2,{spec.flags}"


def _write_chunk(job: tuple[list[_Spec], int, int, bool, int, int]) -> tuple[int, int]:
    """Worker: build and write one chunk of messages; (count, bytes)."""
    specs, seed, batch, new, uid, gid = job
    total = 0
    for spec in specs:
        raw = build_message(spec)
        path = os.path.join(spec.directory, _file_name(spec, raw, seed, batch, new))
        with open(path, "xb") as handle:
            if uid >= 0:
                os.fchown(handle.fileno(), uid, gid)
            handle.write(raw)
        os.utime(path, (spec.epoch, spec.epoch))
        total += len(raw)
    return len(specs), total


def _flags(rng: random.Random, folder: str) -> str:
    letters = set()
    if folder in ("Sent", "Drafts") or rng.random() < 0.85:
        letters.add("S")
    if folder == "Drafts":
        letters.add("D")
    if rng.random() < 0.05:
        letters.add("F")
    if rng.random() < 0.10:
        letters.add("R")
    return "".join(sorted(letters))


def _plan(server: DovecotServer, user: str, names: list[str], *, messages: int, target_bytes: int | None,
          seed: int, big_message_bytes: int | None, profile: str, first_index: int,
          append: bool, even: bool = False) -> list[_Spec]:
    rng = random.Random(f"corpus:{seed}:{first_index}:{append}")
    sizes = [_draw_size(rng, profile) for _ in range(messages)]
    big_count = 1 if big_message_bytes and messages else 0
    if target_bytes is not None:
        rest = target_bytes - (big_message_bytes or 0) * big_count
        sizes[big_count:] = _scale_sizes(sizes[big_count:], rest)
    if big_count:
        sizes[0] = big_message_bytes or 0
    weights = _folder_weights(names)
    chosen = [position % len(names) for position in range(messages)] if even else \
        rng.choices(range(len(names)), weights, k=messages)
    if big_count:
        chosen[0] = 0  # the big one goes to INBOX
    start = APPEND_DATE if append else FIRST_DATE
    span = 7 * 86400 if append else CORPUS_DAYS * 86400
    # Increasing dates in index order: Dovecot numbers new files by name
    # (time first), so UIDs follow arrival as on a real server.
    offsets = sorted(rng.randrange(span) for _ in range(messages))
    directories = {index: str(server.folder_dir(user, name) / ("new" if append else "cur"))
                   for index, name in enumerate(names)}
    return [
        _Spec(seed=seed, index=first_index + position, directory=directories[chosen[position]], size=sizes[position],
              epoch=int(start.timestamp()) + offsets[position], flags=_flags(rng, names[chosen[position]]),
              big=position < big_count)
        for position in range(messages)
    ]


def _prepare_folders(server: DovecotServer, user: str, names: Sequence[str]) -> None:
    for name in names:
        for sub in ("cur", "new", "tmp"):
            (server.folder_dir(user, name) / sub).mkdir(parents=True, exist_ok=True)


def _existing_count(server: DovecotServer, user: str) -> int:
    root = server.maildir(user)
    return sum(1 for path in root.rglob("*") if path.parent.name in ("cur", "new") and path.is_file()) \
        if root.exists() else 0


def make_corpus(
    server: DovecotServer,
    user: str,
    *,
    messages: int,
    folders: int,
    target_bytes: int | None = None,
    seed: int = 0,
    big_message_bytes: int | None = None,
    single_folder: bool = False,
    profile: str = "mixed",
    append: bool = False,
    processes: int | None = None,
    tree: bool = False,
) -> CorpusInfo:
    """Write *messages* messages into *user*'s Maildir on *server*.

    The same arguments always give the same messages.  ``target_bytes``
    rescales the drawn sizes to about that total; ``big_message_bytes`` makes
    the first INBOX message exactly that big (``sample_mail.big_message``);
    ``single_folder`` puts everything into INBOX; ``append`` adds further
    messages (new Message-IDs, later dates) into ``new/``, as a delivery
    agent does, to a corpus already there; ``tree`` names the folders with
    ``tree_folder_names`` (thousands, four deep) and spreads the messages
    evenly over them.  The user must exist
    (``server.add_user``); the server may be running.
    """
    if messages < 0:
        raise ValueError("messages must be >= 0")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}")
    names = ["INBOX"] if single_folder else tree_folder_names(folders) if tree else folder_names(folders)
    root = server.maildir(user)
    root.mkdir(parents=True, exist_ok=True)
    _prepare_folders(server, user, names)
    first_index = _existing_count(server, user) if append else 0
    specs = _plan(server, user, names, messages=messages, target_bytes=target_bytes, seed=seed,
                  big_message_bytes=big_message_bytes, profile=profile, first_index=first_index, append=append,
                  even=tree)
    chown = os.geteuid() == 0
    uid, gid = (server.mail_uid, server.mail_gid) if chown else (-1, -1)
    batch = first_index  # distinguishes appended files' names from the first load's
    jobs = [(specs[start : start + CHUNK_MESSAGES], seed, batch, append, uid, gid)
            for start in range(0, len(specs), CHUNK_MESSAGES)]
    count, total = _run_jobs(jobs, processes)
    # Workers chowned the files; the directories are ours to give back.
    if chown and len(specs) < 20_000:
        server.fix_ownership(root)
    elif chown:
        _chown_directories(server, root)
    return CorpusInfo(messages=count, bytes=total, folders=tuple(names))


def _run_jobs(jobs: list[tuple[list[_Spec], int, int, bool, int, int]], processes: int | None) -> tuple[int, int]:
    workers = processes or os.cpu_count() or 1
    if workers <= 1 or len(jobs) <= 1:
        results = [_write_chunk(job) for job in jobs]
    else:
        # fork: workers inherit sample_mail and need no re-import; the plan is
        # small, the messages are built in the workers.
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_signals) as pool:
            results = list(pool.imap_unordered(_write_chunk, jobs))
    return sum(count for count, _ in results), sum(size for _, size in results)


def _worker_signals() -> None:
    # A forked worker inherits the caller's handlers (bench.py turns SIGTERM
    # into KeyboardInterrupt); the pool ends its workers with SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _chown_directories(server: DovecotServer, root: Path) -> None:
    """fix_ownership() for directories only: the workers chowned every file."""
    for directory in [root, *(path for path in root.rglob("*") if path.is_dir())]:
        os.lchown(directory, server.mail_uid, server.mail_gid)
    for path in root.iterdir():  # Dovecot's own files at the root, if any
        if path.is_file():
            os.lchown(path, server.mail_uid, server.mail_gid)


# ---------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a realistic Thai/English mailbox into a Dovecot Maildir.")
    parser.add_argument("--dir", type=Path, required=True, help="the DovecotServer directory (created if new)")
    parser.add_argument("--user", required=True, metavar="NAME:PASSWORD", help="mailbox owner (added if new)")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--folders", type=int, default=10)
    parser.add_argument("--target-mb", type=float, help="total size to aim for (MiB)")
    parser.add_argument("--big-mb", type=float, help="make the first INBOX message this big (MiB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single-folder", action="store_true", help="everything into INBOX")
    parser.add_argument("--profile", choices=PROFILES, default="mixed")
    parser.add_argument("--append", action="store_true", help="add to an existing corpus, into new/")
    parser.add_argument("--tree", action="store_true", help="folders nested four deep, messages spread evenly")
    parser.add_argument("--serve", action="store_true", help="then start Dovecot and serve until Ctrl-C")
    args = parser.parse_args(argv)

    name, sep, password = args.user.partition(":")
    if not sep:
        parser.error("--user needs NAME:PASSWORD")
    server = DovecotServer(args.dir)
    server.add_user(name, password)
    started = time.monotonic()
    info = make_corpus(
        server, name, messages=args.messages, folders=args.folders, seed=args.seed,
        target_bytes=int(args.target_mb * MB) if args.target_mb else None,
        big_message_bytes=int(args.big_mb * MB) if args.big_mb else None,
        single_folder=args.single_folder, profile=args.profile, append=args.append, tree=args.tree,
    )  # fmt: skip
    report = {"messages": info.messages, "bytes": info.bytes, "folders": list(info.folders),
              "seconds": round(time.monotonic() - started, 2), "maildir": str(server.maildir(name))}
    if not args.serve:
        print(json.dumps(report, ensure_ascii=False), flush=True)
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    try:
        report |= {"port": server.port, "cafile": str(server.cafile), "server": server.server_arg}
        print(json.dumps(report, ensure_ascii=False), flush=True)
        while not stop.wait(0.5) and server.running:
            pass
    finally:
        server.stop(remove_dir=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
