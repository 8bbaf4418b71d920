"""What no real server will do, scripted (tests/fakeserver.py): malformed
FETCH responses, literals whose length lies, hostile folder names, 10,000
folders, an unknown delimiter, UIDs nobody asked for, an endless line, a huge
literal, BYE in the middle of a batch, garbage after TLS.

For each: mailbackup stops or skips with one line naming the problem (no
traceback), every message it counts as saved is whole and byte for byte
what the server holds, the state has nothing half-done, memory stays
bounded, and nothing is written outside the account's directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakeserver import Certs, Conn, FakeImapServer, Folder, Message, Run, Script, letter, make_certs, run_mailbackup
from helpers import archive_contents, state_rows
from imapclient import imap_utf7

from mailbackup.archive import account_dir
from mailbackup.errors import ExitCode

ACCOUNT = "clerk@coj.go.th"
BOUNDED_KIB = 120 * 1024  # mailbackup itself needs about 40 MB; the hostile inputs are 64 MB to 93 GB


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


def mailbox() -> list[Folder]:
    return [Folder.named("INBOX", [letter(n) for n in range(1, 6)]),
            Folder.named("งานคดี/2567", [letter(n) for n in range(10, 13)])]


def backup(server: FakeImapServer, certs: Certs, dest: Path, *extra: str, command: str = "backup") -> Run:
    return run_mailbackup(server, certs.ca, dest, *extra, command=command)


def assert_consistent(dest: Path, server: FakeImapServer) -> dict[str, dict[int, bytes]]:
    """Every message the archive counts as saved is whole and the server's own
    bytes; nothing is pending; no spooled or half-delivered file is left; and
    the destination holds the account's directory and nothing else."""
    root = account_dir(dest, ACCOUNT)
    assert sorted(path.name for path in dest.iterdir()) == [root.name]
    assert sorted(path.name for path in dest.parent.iterdir()) == [dest.name]  # nothing beside dest either
    assert state_rows(dest, ACCOUNT, "SELECT count(*) FROM pending") == [(0,)]
    for path in root.rglob("*"):
        assert not path.is_symlink()
        assert path.resolve().is_relative_to(root.resolve())
        if path.is_file():  # no spooled body, no half-delivered Maildir file
            assert path.parent.name != "tmp", f"left behind: {path}"
    stored = archive_contents(dest, ACCOUNT)
    on_server = {folder.wire: folder for folder in server.folders}
    saved: dict[str, dict[int, bytes]] = {}
    for name, messages in stored.items():
        if not messages:
            continue
        folder = on_server[imap_utf7.encode(name)]
        bodies = {message.uid: message.body for message in folder.messages}
        for uid, message in messages.items():
            assert message.body == bodies[uid], (name, uid)
        saved[name] = {uid: message.body for uid, message in messages.items()}
    return saved


def everything(server: FakeImapServer) -> dict[str, dict[int, bytes]]:
    return {imap_utf7.decode(folder.wire): {m.uid: m.body for m in folder.messages} for folder in server.folders}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "root" / "dest"


@pytest.fixture
def serve(certs: Certs) -> Iterator[Callable[..., FakeImapServer]]:
    """``serve(folders=None, script=None)``: a started fake server, stopped after the test."""
    started: list[FakeImapServer] = []

    def start(folders: list[Folder] | None = None, script: Script | None = None) -> FakeImapServer:
        server = FakeImapServer(folders if folders is not None else mailbox(), certs=certs, script=script)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
        assert not server.errors, server.errors  # a broken test script, not mailbackup


def test_a_well_behaved_fake_server_is_backed_up_byte_for_byte(serve, certs, dest):
    server = serve()
    run = backup(server, certs, dest)
    assert run.code == 0, run.stderr
    assert assert_consistent(dest, server) == everything(server)


# -- broken FETCH responses ---------------------------------------------------
class GarbledBody(Script):
    """INBOX UID 3's FETCH response is broken in one of several ways; the others are fine."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.broken = True

    def hit(self, conn: Conn, message: Message) -> bool:
        return self.broken and message.uid == 3 and conn.selected is not None and conn.selected.wire == b"INBOX"

    def body_item(self, conn: Conn, message: Message) -> bytes:
        if not self.hit(conn, message):
            return super().body_item(conn, message)
        body = message.body
        return {
            "garbage after the body": b"BODY[] {%d}\r\n" % len(body) + body + b" FLAGS (((",
            "nested flags": b"BODY[] {%d}\r\n" % len(body) + body + b" X-FLAGS ((\\Seen))",
            "a literal as a flag": b"BODY[] {%d}\r\n" % len(body) + body,
            "literal shorter than the body": b"BODY[] {%d}\r\n" % (len(body) - 20) + body,
            "literal longer than the body": b"BODY[] {%d}\r\n" % (len(body) + 20) + body,
            "an unbalanced quote": b'BODY[] "unterminated',
            "a NUL-framed number": b"BODY[] \x007\x00",
        }[self.how]

    def fetch_response(self, conn: Conn, sequence: int, message: Message, items: bytes) -> bytes:
        response = super().fetch_response(conn, sequence, message, items)
        if self.how == "a literal as a flag" and self.hit(conn, message) and b"BODY" in items.upper():
            response = response.replace(b"FLAGS ()", b"FLAGS ({4}\r\nevil)", 1)
        if self.how == "nested flags" and self.hit(conn, message):
            response = response.replace(b"X-FLAGS", b"FLAGS", 1).replace(b"FLAGS ()", b"X-OLD ()", 1)
        return response


@pytest.mark.parametrize("how", ["garbage after the body", "nested flags", "a literal as a flag",
                                 "literal shorter than the body", "literal longer than the body",
                                 "an unbalanced quote", "a NUL-framed number"])
def test_a_broken_fetch_response_costs_only_that_message(serve, certs, dest, how):
    script = GarbledBody(how)
    server = serve(script=script)

    run = backup(server, certs, dest, "--batch-size", "10")

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "Traceback" not in run.stderr
    assert "PARTIAL INBOX: UIDs not saved: 3" in run.stderr
    saved = assert_consistent(dest, server)
    assert sorted(saved["INBOX"]) == [1, 2, 4, 5]  # never a truncated or borrowed body for UID 3
    assert len(saved["งานคดี/2567"]) == 3
    assert state_rows(dest, ACCOUNT, "SELECT uid FROM failures") == [(3,)]

    if how not in ("garbage after the body", "literal shorter than the body"):
        return  # the rerun below is the same for every kind of breakage: two suffice
    script.broken = False  # the server is repaired: the failure is retried and cleared
    again = backup(server, certs, dest)
    assert again.code == 0, again.stderr
    assert assert_consistent(dest, server) == everything(server)
    assert state_rows(dest, ACCOUNT, "SELECT count(*) FROM failures") == [(0,)]


class RefusesBatchesWith(Script):
    """A tagged NO for any FETCH of bodies that includes UID 2 (some servers refuse the whole command)."""

    def fetch(self, conn: Conn, tag: bytes, folder: Folder, uids: list[int], items: bytes) -> None:
        if b"BODY" in items.upper() and 2 in uids and folder.wire == b"INBOX":
            conn.send(tag + b" NO [SERVERBUG] \x1b]0;pwned\x07 Internal error occurred\r\n")
            return
        super().fetch(conn, tag, folder, uids, items)


def test_a_fetch_refused_for_one_message_costs_only_that_message(serve, certs, dest):
    server = serve(script=RefusesBatchesWith())

    run = backup(server, certs, dest)

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "PARTIAL INBOX: UIDs not saved: 2\n" in run.stderr  # not 1, 2, 3, 4, 5
    assert "\x1b" not in run.stderr and "\\x1b]0;pwned\\x07" in run.stderr  # no terminal escape gets through
    assert sorted(assert_consistent(dest, server)["INBOX"]) == [1, 3, 4, 5]


class Unsolicited(Script):
    """Answers every FETCH with an extra message nobody asked for."""

    def fetch(self, conn: Conn, tag: bytes, folder: Folder, uids: list[int], items: bytes) -> None:
        extra = Message(77, b"Subject: planted\r\n\r\nnot on the server\r\n")
        conn.send(self.fetch_response(conn, 9, extra, items))
        super().fetch(conn, tag, folder, uids, items)


def test_messages_nobody_asked_for_are_ignored(serve, certs, dest):
    server = serve(script=Unsolicited())

    run = backup(server, certs, dest)

    assert run.code == 0, run.stderr
    assert "UID 77" not in run.stderr and "planted" not in run.stderr
    assert assert_consistent(dest, server) == everything(server)
    assert state_rows(dest, ACCOUNT, "SELECT count(*) FROM failures") == [(0,)]


class SilentAboutOne(Script):
    """Lists UID 4 in SEARCH but leaves it out of the size listing (every time, until repaired)."""

    hiding = True

    def fetch(self, conn: Conn, tag: bytes, folder: Folder, uids: list[int], items: bytes) -> None:
        if self.hiding and b"BODY" not in items.upper():
            uids = [uid for uid in uids if uid != 4]
        super().fetch(conn, tag, folder, uids, items)


def test_a_message_listed_but_never_described_is_not_silently_dropped(serve, certs, dest):
    script = SilentAboutOne()
    server = serve(script=script)

    run = backup(server, certs, dest)

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "PARTIAL INBOX: UIDs not saved: 4" in run.stderr
    script.hiding = False
    again = backup(server, certs, dest)
    assert again.code == 0, again.stderr
    assert assert_consistent(dest, server) == everything(server)
    assert state_rows(dest, ACCOUNT, "SELECT count(*) FROM failures") == [(0,)]


class ByeMidBatch(Script):
    def body_item(self, conn: Conn, message: Message) -> bytes:
        if message.uid == 3 and conn.number == 0:
            conn.send(b"* BYE Server shutting down.\r\n")
            conn.close()
        return super().body_item(conn, message)


def test_bye_in_the_middle_of_a_batch_reconnects_and_completes(serve, certs, dest):
    server = serve(script=ByeMidBatch())

    run = backup(server, certs, dest)

    assert run.code == 0, run.stderr
    assert server.connections >= 2
    assert assert_consistent(dest, server) == everything(server)


# -- limits: endless lines, huge literals --------------------------------------
class Flood(Script):
    """In the answer for UID 3: an endless line, or an absurd literal, in one of two places."""

    def __init__(self, how: str) -> None:
        self.how = how

    def body_item(self, conn: Conn, message: Message) -> bytes:
        if message.uid != 3:
            return super().body_item(conn, message)
        if self.how == "endless line":
            for _ in range(64):  # 64 MB without a line end, then the connection is dropped
                conn.send(b"A" * (1 << 20))
            conn.close()
            return b""
        return b"BODY[] {99999999999}\r\n" + message.body


@pytest.mark.parametrize("how,reason", [("endless line", "response line longer than 1048576 bytes"),
                                        ("huge literal", "literal of 99999999999 bytes; refusing")])
def test_an_endless_line_or_huge_literal_in_a_fetch_is_refused_in_bounded_memory(serve, certs, dest, how, reason):
    server = serve(script=Flood(how))

    run = backup(server, certs, dest)

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert f"UID 3 skipped: server fails on this message: server sent a {reason}" in run.stderr \
        or f"UID 3 skipped: server fails on this message: server announced a {reason}" in run.stderr, run.stderr
    assert run.peak_kib < BOUNDED_KIB, run.peak_kib
    assert sorted(assert_consistent(dest, server)["INBOX"]) == [1, 2, 4, 5]


class HostileList(Script):
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    def list_lines(self, conn: Conn) -> Iterator[bytes]:
        yield from self.lines
        yield from super().list_lines(conn)


@pytest.mark.parametrize("lines,expected", [
    ([b'* LIST () "/" {99999999999}\r\n', b"x" * 100 + b"\r\n"], "server announced a literal of 99999999999 bytes"),
    ([b'* LIST () "/" "' + b"x" * (3 << 20) + b'"\r\n'], "got more than 1000000 bytes"),
    ([b'* LIST (\\HasNoChildren) "/"\r\n'], "sent a malformed LIST response"),
])
def test_an_unusable_folder_list_stops_with_one_line(serve, certs, dest, lines, expected):
    server = serve(script=HostileList(lines))

    run = backup(server, certs, dest)

    assert run.code == ExitCode.PROTOCOL, run.stderr
    assert expected in run.error_line()
    assert run.peak_kib < BOUNDED_KIB, run.peak_kib
    assert state_rows(dest, ACCOUNT, "SELECT count(*) FROM messages") == [(0,)]


class BadStatus(Script):
    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        if folder.wire != b"INBOX":
            conn.send(b'* STATUS "x" (MESSAGES many UIDNEXT soon UIDVALIDITY -)\r\n' + tag + b" OK done\r\n")
            return
        super().status(conn, tag, folder)


def test_an_unusable_status_answer_skips_that_folder(serve, certs, dest):
    server = serve(script=BadStatus())

    run = backup(server, certs, dest)

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "Traceback" not in run.stderr
    assert "FAILED  งานคดี/2567: the server's STATUS answer for folder 'งานคดี/2567' is unusable" in run.stderr
    assert sorted(assert_consistent(dest, server)["INBOX"]) == [1, 2, 3, 4, 5]


def test_garbage_instead_of_a_greeting_after_tls(serve, certs, dest):
    class Garbage(Script):
        def greeting(self, conn: Conn) -> bytes:
            return b"\x1b[2J\x00\xff\xfe HTTP/1.1 400 Bad Request\r\n"

    server = serve(script=Garbage())

    run = backup(server, certs, dest)

    assert run.code == ExitCode.CONNECTION, run.stderr
    line = run.error_line()
    assert "unexpected response" in line and "\x1b" not in line
    assert server.credentials == []  # no password went to a server that does not speak IMAP


# -- folder names -------------------------------------------------------------
HOSTILE_NAMES = ["..", "../../../etc", "/etc/passwd", "a/../../b", "CON", "aux.txt", "LPT1/COM1", "cur", "~root",
                 ".hidden", "a\\b", "x" * 5000, "ก" * 300, "trailing. ", " leading", "a:b*c?d\"e<f>g|h"]


def test_hostile_folder_names_stay_inside_the_account_directory(serve, certs, dest):
    folders = [Folder.named("INBOX", [letter(1)])]
    folders += [Folder.named(name, [letter(100 + index)]) for index, name in enumerate(HOSTILE_NAMES)]
    folders.append(Folder.named("/".join(["deep"] * 150), [letter(200)]))  # deeper than any file system allows
    unusable = [b"nul\x00name", b"esc\x1b[2Jape", b"&Jjo!", "ดิบ-utf8".encode()]  # not modified UTF-7
    folders += [Folder(raw, [Message(1, letter(300 + index))]) for index, raw in enumerate(unusable)]
    server = serve(folders)

    run = backup(server, certs, dest)

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "Traceback" not in run.stderr and "\x1b" not in run.stderr and "\x00" not in run.stderr
    failed = [line for line in run.stderr.splitlines() if line.startswith("  FAILED")]
    assert len(failed) == 1 + len(unusable), run.stderr
    assert sum("cannot be stored safely: folder name has more than 100 levels" in line for line in failed) == 1
    assert sum("which is not modified UTF-7" in line for line in failed) == len(unusable)
    saved = assert_consistent(dest, server)
    for name in ["INBOX", *HOSTILE_NAMES]:
        assert len(saved[name]) == 1, name
    names = {path.name for path in (account_dir(dest, ACCOUNT) / "mail").rglob("*")}
    assert not names & {"..", "CON", "aux.txt", "LPT1", "COM1", ".hidden", "~root"}


def test_an_unknown_delimiter_is_refused_per_folder_and_odd_ones_are_kept(serve, certs, dest):
    folders = [Folder.named("INBOX", [letter(1)]), Folder.named("a::b", [letter(2)], delimiter=b'"::"'),
               Folder.named("flat/name", [letter(3)], delimiter=b"NIL"),
               Folder.named("back\\slash", [letter(4)], delimiter=b'"\\\\"')]
    server = serve(folders)

    run = backup(server, certs, dest)

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "FAILED  a::b: folder name cannot be stored safely: delimiter must be one character" in run.stderr
    saved = assert_consistent(dest, server)
    assert len(saved["flat/name"]) == 1 and len(saved["back\\slash"]) == 1
    mail = account_dir(dest, ACCOUNT) / "mail"
    assert (mail / "flat%2Fname").is_dir() and (mail / "back" / "slash").is_dir()


def test_ten_thousand_folders(serve, certs, dest):
    folders = [Folder.named("INBOX", [letter(1)])] + [Folder.named(f"โฟลเดอร์/{n:05d}") for n in range(10_000)]
    server = serve(folders)

    started = time.monotonic()
    listing = backup(server, certs, dest, command="folders")
    assert listing.code == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 10_000 + 3  # header, INBOX, 10,000 folders, total
    run = backup(server, certs, dest, "--include", "INBOX", "--include", "โฟลเดอร์/0000*")

    assert run.code == 0, run.stderr
    assert "11 folders" in run.stdout
    assert max(listing.peak_kib, run.peak_kib) < BOUNDED_KIB
    assert time.monotonic() - started < 60
    assert_consistent(dest, server)
    assert len(archive_contents(dest, ACCOUNT)) == 11


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_a_message_whose_header_nothing_can_parse_is_saved_byte_for_byte(serve, certs, dest, fmt):
    """Found by scripts/fuzz.py (headers): a broken encoded word made the
    header parser raise, which stopped every backup at that message."""
    broken = (b"Subject: =?utf-8?B?x?=\r\nFrom: =?utf-8?Q?=ZZ?= <\xff@\x00>\r\nMessage-ID: <\xe0\xb8>\r\n"
              b"Return-Path: =?x?q?y?=\r\n\r\nFrom here on\r\n")
    bad_charset = b"Subject: =?t\xa3-620?Q?x?=\r\n\r\nbody\r\n"
    server = serve([Folder.named("INBOX", [letter(1), broken, letter(3), bad_charset])])

    run = backup(server, certs, dest, "--format", fmt)

    assert run.code == 0, run.stderr
    assert assert_consistent(dest, server) == everything(server)


class GarbledMeta(Script):
    """The size/flags/date FETCH (before any body) is nonsense for UID 2; its body answer is fine."""

    def fetch_response(self, conn: Conn, sequence: int, message: Message, items: bytes) -> bytes:
        if message.uid == 2 and b"BODY" not in items.upper():
            return b'* 2 FETCH (UID 2 RFC822.SIZE huge FLAGS ((\\Seen)) INTERNALDATE "yesterday")\r\n'
        return super().fetch_response(conn, sequence, message, items)


def test_nonsense_sizes_flags_and_dates_before_the_bodies_cost_nothing(serve, certs, dest):
    server = serve(script=GarbledMeta())

    run = backup(server, certs, dest)

    assert run.code == 0, run.stderr
    assert assert_consistent(dest, server) == everything(server)


# -- logging in: bare line feeds, BAD, lines that are not IMAP (issue 13, defect 3) ------------
ASCII_PASSWORD = "Ascii-Only-2567"


def auth_test(server: FakeImapServer, certs: Certs) -> Run:
    return Run(["auth", "test", server.user, "--server", server.address, "--cafile", str(certs.ca), "--timeout", "5"],
               server.password)


class MailutilsLogin(Script):
    """GNU mailutils imap4d 3.15: the OK after AUTHENTICATE PLAIN ends with a bare LF."""

    def authenticate(self, conn: Conn, tag: bytes, user: str, password: str) -> None:
        if not conn.server.accepts(user, password):
            super().authenticate(conn, tag, user, password)
            return
        conn.authenticated = True
        conn.send(tag + b" OK AUTHENTICATE PLAIN completed\n")


def test_a_bare_line_feed_after_authenticate_is_a_line_end(certs):
    with FakeImapServer(certs=certs, script=MailutilsLogin()) as server:
        run = auth_test(server, certs)

    assert run.code == 0, run.stderr
    assert b"LOGIN" not in server.commands()


def test_a_server_that_ends_every_line_with_a_bare_line_feed_is_backed_up(serve, certs, dest):
    script = Script()
    script.bare_lf = True
    server = serve(script=script)

    run = backup(server, certs, dest)

    assert run.code == 0, run.stderr
    assert assert_consistent(dest, server) == everything(server)


class BrokenAuthenticate(Script):
    """AUTHENTICATE PLAIN answered with BAD, or with a line that is not IMAP; LOGIN works (or not)."""

    def __init__(self, how: str, login_works: bool = True) -> None:
        self.how = how
        self.login_works = login_works

    def do_authenticate(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(b"+ \r\n")
        conn.line()
        if self.how == "BAD":
            conn.send(tag + b" BAD [CLIENTBUG] Invalid AUTHENTICATE data\r\n")
        elif self.how == "hangs up":
            conn.close()
        else:
            conn.send(b"\x1b[31mthis is not IMAP\r\n")

    def do_login(self, conn: Conn, tag: bytes, args: bytes) -> None:
        if self.login_works:
            super().do_login(conn, tag, args)
        else:
            conn.send(tag + b" BAD LOGIN is not spoken here\r\n")


@pytest.mark.parametrize("how", ["BAD", "not IMAP"])
def test_authenticate_failing_otherwise_than_by_no_falls_back_to_login(certs, how):
    with FakeImapServer(certs=certs, script=BrokenAuthenticate(how), password=ASCII_PASSWORD) as server:
        run = auth_test(server, certs)

    assert run.code == 0, run.stderr
    commands = server.commands()
    assert commands.index(b"LOGIN") == commands.index(b"AUTHENTICATE") + 1, commands
    assert [password for _user, password, _encrypted in server.credentials] == [ASCII_PASSWORD]  # by LOGIN


def test_a_server_hanging_up_during_authenticate_is_a_lost_connection(certs):
    with FakeImapServer(certs=certs, script=BrokenAuthenticate("hangs up"), password=ASCII_PASSWORD) as server:
        run = auth_test(server, certs)

    assert run.code == ExitCode.CONNECTION, run.stderr  # worth a retry: neither a protocol nor a password problem
    assert "lost" in run.error_line() and "login refused" not in run.error_line()
    assert b"LOGIN" not in server.commands()


@pytest.mark.parametrize("how,password,login_works", [("BAD", "รหัสลับ-ศาล-1", True), ("not IMAP", "รหัสลับ-ศาล-1", True),
                                                      ("BAD", ASCII_PASSWORD, False)])
def test_a_protocol_problem_at_login_is_not_called_a_wrong_password(certs, how, password, login_works):
    script = BrokenAuthenticate(how, login_works=login_works)
    with FakeImapServer(certs=certs, script=script, password=password) as server:
        run = auth_test(server, certs)

    assert run.code == ExitCode.PROTOCOL, run.stderr
    line = run.error_line()
    assert "broke the protocol while logging in" in line and "this says nothing about the password" in line, line
    assert "login refused" not in line and "check the password" not in line
    assert "\x1b" not in run.stderr
    if not password.isascii():
        assert b"LOGIN" not in server.commands()  # imaplib's LOGIN cannot carry it


# -- an endless answer outside FETCH (issue 14, item 3) -------------------------------------------
class EndlessList(Script):
    """LIST answered without end: literals of 200 MB, literals just under the
    64 KiB limit, or small lines, until the client hangs up."""

    def __init__(self, how: str) -> None:
        self.how = how

    def list_lines(self, conn: Conn) -> Iterator[bytes]:
        number = 0
        while True:
            number += 1
            if self.how == "200 MB literals":
                yield b'* LIST () "/" {%d}\r\n' % (200 << 20)
                for _ in range(200):
                    yield b"x" * (1 << 20)
                yield b"\r\n"
            elif self.how == "60 KiB literals":
                yield b'* LIST () "/" {61440}\r\n' + b"%061440d" % number + b"\r\n"
            else:
                yield b"".join(b'* LIST (\\HasNoChildren) "/" "f%d-%d"\r\n' % (number, line) for line in range(1000))


@pytest.mark.parametrize("how,expected", [
    ("200 MB literals", "server announced a literal of 209715200 bytes; refusing (at most 65536 here)"),
    ("60 KiB literals", "the server's answer to one command passed 100000 lines or 16 MB; refusing"),
    ("small lines", "the server's answer to one command passed 100000 lines or 16 MB; refusing"),
])
def test_an_endless_folder_list_ends_quickly_in_bounded_memory(serve, certs, dest, tmp_path, how, expected):
    baseline = backup(serve(), certs, tmp_path / "baseline")
    assert baseline.code == 0, baseline.stderr
    server = serve(script=EndlessList(how))

    started = time.monotonic()
    run = backup(server, certs, dest)

    assert run.code == ExitCode.PROTOCOL, run.stderr
    assert expected in run.error_line()
    assert time.monotonic() - started < 60
    assert run.peak_kib - baseline.peak_kib < 32 * 1024, (run.peak_kib, baseline.peak_kib)
    assert state_rows(dest, ACCOUNT, "SELECT count(*) FROM messages") == [(0,)]


class EndlessStatus(Script):
    """STATUS of งานคดี/2567 answered with small lines without end."""

    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        if folder.wire != imap_utf7.encode("งานคดี/2567"):
            super().status(conn, tag, folder)
            return
        line = b'* STATUS "x" (MESSAGES 1)\r\n' * 1000
        while not conn.closed:
            conn.send(line)


def test_an_endless_status_answer_costs_that_folder_and_the_next_ones_are_read_afresh(serve, certs, dest):
    folders = [*mailbox(), Folder.named("ๆ-last", [letter(20)])]  # sorted after the folder whose STATUS floods
    server = serve(folders, script=EndlessStatus())

    started = time.monotonic()
    run = backup(server, certs, dest)

    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "FAILED  งานคดี/2567: cannot read status of folder 'งานคดี/2567': the server's answer to one command " \
        "passed 100000 lines or 16 MB; refusing" in run.stderr
    assert time.monotonic() - started < 60 and run.peak_kib < BOUNDED_KIB
    saved = assert_consistent(dest, server)
    assert sorted(saved) == ["INBOX", "ๆ-last"] and len(saved["INBOX"]) == 5  # on a new connection
    assert server.connections >= 2


# -- deadlines: a server that keeps talking without answering (issue 14 item 4) --------------
# Scripted: no real server here trickles a LIST or floods EXISTS for ever.
class TrickledList(Script):
    """LIST answered with one more folder every half second, for ever (until the client hangs up)."""

    def list_lines(self, conn: Conn) -> Iterator[bytes]:
        number = 0
        while not conn.closed:
            number += 1
            time.sleep(0.5)
            yield Folder.named(f"slow{number}").list_line()


class ExistsFlood(Script):
    """In the FETCH of the bodies, instead of UID 3: ``* 1 EXISTS`` without end."""

    def body_item(self, conn: Conn, message: Message) -> bytes:
        if message.uid == 3:
            while not conn.closed:
                conn.send(b"* 1 EXISTS\r\n" * 200)  # ends when the client hangs up (send fails)
        return super().body_item(conn, message)


def test_a_list_trickled_for_ever_is_given_up_after_the_timeout(serve, certs, dest):
    """Every line resets a socket timeout; the deadline for progress (--timeout 3) is not reset by them."""
    server = serve(script=TrickledList())
    started = time.monotonic()

    run = backup(server, certs, dest, "--retries", "0")

    assert time.monotonic() - started < 3 + 6, run.stderr  # --timeout, and the start and end of a run
    assert run.code == ExitCode.CONNECTION, run.stderr
    assert "made no progress for 3 seconds" in run.error_line()
    assert run.peak_kib < BOUNDED_KIB, run.peak_kib


def test_an_exists_flood_during_a_fetch_costs_only_that_message(serve, certs, dest):
    """Each wait on the flood ends after --timeout (3 s); the message is then isolated like any message
    the server fails on: the others are saved, the run ends."""
    server = serve([Folder.named("INBOX", [letter(n) for n in range(1, 6)])], script=ExistsFlood())
    started = time.monotonic()

    run = backup(server, certs, dest)

    assert time.monotonic() - started < 45, run.stderr  # a few waits of 3 s while the batch is split
    assert run.code == ExitCode.WARNINGS, run.stderr
    assert "UID 3 skipped: server fails on this message: " in run.stderr
    assert "made no progress for 3 seconds" in run.stderr
    assert run.peak_kib < BOUNDED_KIB, run.peak_kib
    assert sorted(assert_consistent(dest, server)["INBOX"]) == [1, 2, 4, 5]
