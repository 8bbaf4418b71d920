"""A scripted IMAP responder for what no real server will do (test code only).

It speaks just enough IMAP4rev1 for mailbackup: CAPABILITY, STARTTLS,
AUTHENTICATE PLAIN, LOGIN, LIST, STATUS, EXAMINE/SELECT, UID SEARCH,
UID FETCH (meta, whole bodies, partial bodies), CREATE, APPEND (one message,
answered with APPENDUID), NOOP, LOGOUT, over implicit
TLS, STARTTLS or plain text.  Everything it answers goes through a `Script`
whose methods a test overrides to misbehave: a malformed FETCH, a literal
whose length lies, a folder list of 10,000 entries, a BYE in the middle of
a batch, garbage instead of a greeting...  A script with `bare_lf` set ends
every line it sends with LF alone, as GNU mailutils imap4d does after
AUTHENTICATE (literals are sent untouched).

It records what it receives (`received`: every client line, and whether the
connection was encrypted when it arrived) and every credential offered
(`credentials`), so a test can prove no password crossed a plain-text link.

    with FakeImapServer(mailbox, cert=certs.good) as server:
        run_cli(["backup", "u@x", "--server", server.address, "--cafile", certs.ca, ...])

Certificates come from `scripts/dovecot_server.py` (`DovecotServer.make_cert`,
signed by its test CA), so mailbackup's certificate checks run as in
production.  Stdlib only, apart from imapclient's modified UTF-7 codec.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from imapclient import imap_utf7

DATE = "05-Jan-2024 09:30:00 +0700"
LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
ARG = re.compile(rb'\s*(?:"((?:[^"\\]|\\.)*)"|(\()|(\))|([^\s()"]+))', re.S)


@dataclass
class Message:
    uid: int
    body: bytes
    flags: tuple[str, ...] = ()
    internaldate: str = DATE


@dataclass
class Folder:
    """One folder; `wire` is its name exactly as the client quotes it (modified UTF-7)."""

    wire: bytes
    messages: list[Message] = field(default_factory=list)
    uidvalidity: int = 1
    delimiter: bytes = b'"/"'
    flags: bytes = b"\\HasNoChildren"

    @classmethod
    def named(cls, name: str, bodies: list[bytes] | None = None, **kwargs: object) -> Folder:
        messages = [Message(uid, body) for uid, body in enumerate(bodies or [], start=1)]
        return cls(imap_utf7.encode(name), messages, **kwargs)  # type: ignore[arg-type]

    @property
    def uidnext(self) -> int:
        return max((message.uid for message in self.messages), default=0) + 1

    def list_line(self) -> bytes:
        return b"* LIST (" + self.flags + b") " + self.delimiter + b" " + quote(self.wire) + b"\r\n"


@dataclass(frozen=True)
class Received:
    line: bytes
    encrypted: bool


@dataclass(frozen=True)
class Certs:
    cert: Path
    key: Path
    ca: Path


def quote(value: bytes) -> bytes:
    if any(byte in value for byte in b"\r\n\x00") or len(value) > 1000:
        return b"{%d}\r\n" % len(value) + value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def bare_lf(data: bytes) -> bytes:
    """`data` with each line ending in LF instead of CRLF; literals (``{n}`` at
    a line's end, then n bytes) are kept as they are."""
    out: list[bytes] = []
    position = 0
    while position < len(data):
        end = data.find(b"\r\n", position)
        if end < 0:
            out.append(data[position:])
            break
        line = data[position:end]
        out.append(line + b"\n")
        position = end + 2
        literal = re.search(rb"\{(\d+)\+?\}\Z", line)
        if literal:
            size = int(literal.group(1))
            out.append(data[position:position + size])
            position += size
    return b"".join(out)


def parse_args(text: bytes) -> list[object]:
    """Atoms and quoted strings as bytes, parenthesised lists as lists."""
    stack: list[list[object]] = [[]]
    position = 0
    while position < len(text):
        match = ARG.match(text, position)
        if not match or match.end() == position:
            break
        position = match.end()
        quoted, opening, closing, atom = match.groups()
        if opening:
            stack.append([])
        elif closing and len(stack) > 1:
            inner = stack.pop()
            stack[-1].append(inner)
        elif quoted is not None:
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", quoted))
        elif atom is not None:
            stack[-1].append(atom)
    return stack[0]


def uid_set(text: bytes, highest: int) -> list[int]:
    uids: set[int] = set()
    for part in text.split(b","):
        first, _, last = part.partition(b":")
        low = highest if first == b"*" else int(first)
        high = low if not last else (highest if last == b"*" else int(last))
        uids.update(range(min(low, high), max(low, high) + 1))
    return sorted(uids)


class UnbufferedReader:
    """Reads a socket without reading ahead, so that what the client has sent
    and we have not read yet is still in the socket (see `Conn.pending_input`)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def readline(self, limit: int = -1) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n") and (limit < 0 or len(line) < limit):
            byte = self.sock.recv(1)
            if not byte:
                break
            line += byte
        return bytes(line)

    def read(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(min(size - len(data), 1 << 16))
            if not chunk:
                break
            data += chunk
        return bytes(data)


class Conn:
    """One client connection, as the script sees it."""

    def __init__(self, server: FakeImapServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number  # 0 for the first connection accepted
        self.encrypted = isinstance(sock, ssl.SSLSocket)
        self.file: BinaryIO | UnbufferedReader = self._reader()
        self.selected: Folder | None = None
        self.authenticated = False
        self.closed = False
        self.last_line = b""  # the last command as received, literals included

    def send(self, data: bytes) -> None:
        self.sock.sendall(bare_lf(data) if self.server.script.bare_lf else data)

    def line(self, limit: int = 1 << 16) -> bytes:
        """One client line with any client literals spliced in; b"" at EOF."""
        line = self.file.readline(limit)
        if not line:
            return b""
        while (match := LITERAL.search(line)) is not None:
            self.send(b"+ go ahead\r\n")
            line = line + self.file.read(int(match.group(1))) + self.file.readline(limit)
        self.server.record(Received(line, self.encrypted))
        self.last_line = line
        return line

    def start_tls(self) -> None:
        assert self.server.tls_context is not None
        self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        self.file = self._reader()
        self.encrypted = True

    def _reader(self) -> BinaryIO | UnbufferedReader:
        return UnbufferedReader(self.sock) if self.server.script.watch_pipelining else self.sock.makefile("rb")

    def pending_input(self, wait: float = 0.05) -> bool:
        """Has the client sent more (the next command) before we answered this one?
        Only a script with `watch_pipelining` can tell (nothing is read ahead then)."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], wait)
        return bool(readable)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


class Script:
    """The server's behaviour; every method may be overridden by a test."""

    capabilities = b"IMAP4rev1 AUTH=PLAIN"
    starttls_offered = False
    bare_lf = False  # end every line sent with LF alone (see the module docstring)
    watch_pipelining = False  # read byte by byte, so `Conn.pending_input` can see a pipelined command
    appenduid = True  # answer APPEND with [APPENDUID] (UIDPLUS, RFC 4315)

    def greeting(self, conn: Conn) -> bytes:
        return b"* OK [CAPABILITY " + self.capability_text(conn) + b"] fake IMAP ready\r\n"

    def capability_text(self, conn: Conn) -> bytes:
        extra = b" STARTTLS" if self.starttls_offered and not conn.encrypted else b""
        return self.capabilities + extra

    # -- login --------------------------------------------------------
    def authenticate(self, conn: Conn, tag: bytes, user: str, password: str) -> None:
        if conn.server.accepts(user, password):
            conn.authenticated = True
            conn.send(tag + b" OK [CAPABILITY " + self.capability_text(conn) + b"] Logged in\r\n")
        else:
            conn.send(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")

    # -- folders ------------------------------------------------------
    def list_lines(self, conn: Conn) -> Iterator[bytes]:
        for folder in conn.server.folders:
            yield folder.list_line()

    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        conn.send(b"* STATUS " + quote(folder.wire) + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n"
                  % (len(folder.messages), folder.uidnext, folder.uidvalidity))
        conn.send(tag + b" OK Status completed.\r\n")

    def examine(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        conn.selected = folder
        conn.send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* %d EXISTS\r\n* 0 RECENT\r\n"
                  b"* OK [UIDVALIDITY %d] UIDs valid\r\n* OK [UIDNEXT %d] Predicted next UID\r\n"
                  % (len(folder.messages), folder.uidvalidity, folder.uidnext))
        conn.send(tag + b" OK [READ-ONLY] Examine completed.\r\n")

    def select(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        conn.selected = folder
        conn.send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* %d EXISTS\r\n* 0 RECENT\r\n"
                  b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n"
                  b"* OK [UIDVALIDITY %d] UIDs valid\r\n* OK [UIDNEXT %d] Predicted next UID\r\n"
                  % (len(folder.messages), folder.uidvalidity, folder.uidnext))
        conn.send(tag + b" OK [READ-WRITE] Select completed.\r\n")

    # -- messages -----------------------------------------------------
    def search(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        uids = b" ".join(b"%d" % message.uid for message in folder.messages)
        conn.send(b"* SEARCH " + uids + b"\r\n" if uids else b"* SEARCH\r\n")
        conn.send(tag + b" OK Search completed.\r\n")

    def fetch(self, conn: Conn, tag: bytes, folder: Folder, uids: list[int], items: bytes) -> None:
        for sequence, message in enumerate(folder.messages, start=1):
            if message.uid in uids:
                conn.send(self.fetch_response(conn, sequence, message, items))
        conn.send(tag + b" OK Fetch completed.\r\n")

    def fetch_response(self, conn: Conn, sequence: int, message: Message, items: bytes) -> bytes:
        """``* n FETCH (...)`` for one message: the body when asked for, else the meta data."""
        head = b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE %s RFC822.SIZE %d" % (
            sequence, message.uid, " ".join(message.flags).encode(), self.internaldate(message),
            self.rfc822_size(message))
        upper = items.upper()
        if b"HEADER.FIELDS" in upper:
            header = b"".join(re.findall(rb"(?im)^message-id:.*\r?\n", message.body.partition(b"\r\n\r\n")[0]
                                         + b"\r\n")) + b"\r\n"
            return head + b" BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n" % len(header) + header + b")\r\n"
        partial = re.search(rb"BODY\.PEEK\[\]<(\d+)\.(\d+)>", upper)
        if partial:
            start, length = int(partial.group(1)), int(partial.group(2))
            chunk = message.body[start:start + length]
            return head + b" BODY[]<%d> {%d}\r\n" % (start, len(chunk)) + chunk + b")\r\n"
        if b"BODY.PEEK[]" in upper or b"BODY[]" in upper:
            return head + b" " + self.body_item(conn, message) + b")\r\n"
        return head + b")\r\n"

    def body_item(self, conn: Conn, message: Message) -> bytes:
        return b"BODY[] {%d}\r\n" % len(message.body) + message.body

    def rfc822_size(self, message: Message) -> int:
        return len(message.body)

    def internaldate(self, message: Message) -> bytes:
        return b'"' + message.internaldate.encode() + b'"'

    # -- dispatch -----------------------------------------------------
    def command(self, conn: Conn, tag: bytes, name: bytes, args: bytes) -> None:
        """Answer one command; tests override to add or replace commands."""
        handler = getattr(self, "do_" + name.decode("ascii", "replace").lower().replace(" ", "_"), None)
        if handler is None:
            conn.send(tag + b" BAD Unknown command.\r\n")
            return
        handler(conn, tag, args)

    def do_capability(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(b"* CAPABILITY " + self.capability_text(conn) + b"\r\n" + tag + b" OK done\r\n")

    def do_noop(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(tag + b" OK NOOP completed.\r\n")

    def do_id(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(b"* ID NIL\r\n" + tag + b" OK ID completed.\r\n")

    def do_namespace(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n' + tag + b" OK NAMESPACE completed.\r\n")

    def do_enable(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(tag + b" OK Enabled.\r\n")

    def do_logout(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(b"* BYE Logging out\r\n" + tag + b" OK Logout completed.\r\n")
        conn.close()

    def do_starttls(self, conn: Conn, tag: bytes, args: bytes) -> None:
        if not self.starttls_offered or conn.encrypted:
            conn.send(tag + b" BAD STARTTLS not available.\r\n")
            return
        conn.send(tag + b" OK Begin TLS negotiation now.\r\n")
        conn.start_tls()

    def do_authenticate(self, conn: Conn, tag: bytes, args: bytes) -> None:
        if args.strip().upper() != b"PLAIN":
            conn.send(tag + b" NO Unsupported mechanism.\r\n")
            return
        conn.send(b"+ \r\n")
        answer = conn.line().strip()
        try:
            _, user, password = base64.b64decode(answer).decode("utf-8").split("\0")
        except ValueError:
            conn.send(tag + b" BAD Invalid base64 data.\r\n")
            return
        conn.server.offered(user, password, conn.encrypted)
        self.authenticate(conn, tag, user, password)

    def do_login(self, conn: Conn, tag: bytes, args: bytes) -> None:
        user, password = (value.decode("utf-8", "replace") for value in parse_args(args)[:2])  # type: ignore[union-attr]
        conn.server.offered(user, password, conn.encrypted)
        self.authenticate(conn, tag, user, password)

    def do_list(self, conn: Conn, tag: bytes, args: bytes) -> None:
        for line in self.list_lines(conn):
            conn.send(line)
        conn.send(tag + b" OK List completed.\r\n")

    def do_status(self, conn: Conn, tag: bytes, args: bytes) -> None:
        folder = self._folder(conn, tag, args)
        if folder is not None:
            self.status(conn, tag, folder)

    def do_examine(self, conn: Conn, tag: bytes, args: bytes) -> None:
        folder = self._folder(conn, tag, args)
        if folder is not None:
            self.examine(conn, tag, folder)

    def do_select(self, conn: Conn, tag: bytes, args: bytes) -> None:
        folder = self._folder(conn, tag, args)
        if folder is not None:
            self.select(conn, tag, folder)

    def do_uid(self, conn: Conn, tag: bytes, args: bytes) -> None:
        verb, _, rest = args.partition(b" ")
        folder = conn.selected
        if folder is None:
            conn.send(tag + b" BAD No mailbox selected.\r\n")
            return
        if verb.upper() == b"SEARCH":
            self.search(conn, tag, folder)
        elif verb.upper() == b"FETCH":
            sequence, _, items = rest.partition(b" ")
            self.fetch(conn, tag, folder, uid_set(sequence, folder.uidnext - 1), items)
        elif verb.upper() == b"STORE":
            sequence, _, change = rest.partition(b" ")
            self.store(conn, tag, folder, uid_set(sequence, folder.uidnext - 1), change)
        else:
            conn.send(tag + b" BAD Unknown UID command.\r\n")

    def store(self, conn: Conn, tag: bytes, folder: Folder, uids: list[int], change: bytes) -> None:
        """``UID STORE uids [+-]FLAGS[.SILENT] (flags)``."""
        how, _, flags = change.partition(b" ")
        named = tuple(flags.strip(b"()").decode().split())
        for sequence, message in enumerate(folder.messages, start=1):
            if message.uid not in uids:
                continue
            if how.upper().startswith(b"+"):
                message.flags = tuple(dict.fromkeys(message.flags + named))
            elif how.upper().startswith(b"-"):
                message.flags = tuple(flag for flag in message.flags if flag not in named)
            else:
                message.flags = named
            if b"SILENT" not in how.upper():
                conn.send(b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (sequence, message.uid,
                                                                     " ".join(message.flags).encode()))
        conn.send(tag + b" OK Store completed.\r\n")

    def do_fetch(self, conn: Conn, tag: bytes, args: bytes) -> None:
        """FETCH by message sequence numbers (``FETCH 1:* (UID RFC822.SIZE)``)."""
        folder = conn.selected
        if folder is None:
            conn.send(tag + b" BAD No mailbox selected.\r\n")
            return
        sequence, _, items = args.partition(b" ")
        numbers = uid_set(sequence, len(folder.messages)) if folder.messages else []
        uids = [folder.messages[number - 1].uid for number in numbers if 1 <= number <= len(folder.messages)]
        self.fetch(conn, tag, folder, uids, items)

    def do_create(self, conn: Conn, tag: bytes, args: bytes) -> None:
        wanted = parse_args(args)[0]
        assert isinstance(wanted, bytes)
        if conn.server.folder(wanted) is None:
            conn.server.folders.append(Folder(wanted))
            conn.send(tag + b" OK Create completed.\r\n")
        else:
            conn.send(tag + b" NO [ALREADYEXISTS] Mailbox already exists\r\n")

    def do_subscribe(self, conn: Conn, tag: bytes, args: bytes) -> None:
        conn.send(tag + b" OK Subscribe completed.\r\n")

    def do_append(self, conn: Conn, tag: bytes, args: bytes) -> None:
        """One message (no MULTIAPPEND): ``APPEND folder [(flags)] ["date"] {n}``."""
        folder = self._folder(conn, tag, args)
        if folder is not None:
            self.append(conn, tag, folder, conn.last_line)

    def append(self, conn: Conn, tag: bytes, folder: Folder, line: bytes) -> None:
        literal = re.search(rb"\{(\d+)\+?\}\r\n", line)
        assert literal is not None, line
        body = line[literal.end():literal.end() + int(literal.group(1))]
        flags = re.search(rb"\(([^)]*)\)", line[:literal.start()])
        date = re.search(rb'"(\s?\d{1,2}-[A-Za-z]{3}-\d{4} [\d:]{8} [+-]\d{4})"', line[:literal.start()])
        message = Message(folder.uidnext, body, tuple(flags.group(1).decode().split()) if flags else (),
                          date.group(1).decode() if date else DATE)
        folder.messages.append(message)
        code = b"[APPENDUID %d %d] " % (folder.uidvalidity, message.uid) if self.appenduid else b""
        conn.send(tag + b" OK " + code + b"Append completed.\r\n")

    def _folder(self, conn: Conn, tag: bytes, args: bytes) -> Folder | None:
        parsed = parse_args(args)
        wanted = parsed[0] if parsed and isinstance(parsed[0], bytes) else b""
        folder = conn.server.folder(wanted)
        if folder is None:
            conn.send(tag + b" NO [NONEXISTENT] Mailbox doesn't exist: " + wanted[:100] + b"\r\n")
        return folder


class FakeImapServer:
    """A threaded IMAP responder on 127.0.0.1; `tls` is "implicit", "starttls" or "plain"."""

    def __init__(self, folders: list[Folder] | None = None, *, certs: Certs | None = None,
                 tls: str = "implicit", script: Script | None = None, user: str = "clerk@coj.go.th",
                 password: str = "รหัสลับ-ศาล-1") -> None:
        if tls not in ("implicit", "starttls", "plain"):
            raise ValueError(f"tls must be implicit, starttls or plain, not {tls!r}")
        self.folders = folders if folders is not None else [Folder.named("INBOX")]
        self.tls = tls
        self.script = script or Script()
        if tls == "starttls":
            self.script.starttls_offered = True
        self.user = user
        self.password = password
        self.tls_context: ssl.SSLContext | None = None
        if certs is not None:
            self.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_context.load_cert_chain(str(certs.cert), str(certs.key))
        elif tls != "plain":
            raise ValueError("TLS needs certs")
        self._index: dict[bytes, Folder] = {}
        self.received: list[Received] = []
        self.credentials: list[tuple[str, str, bool]] = []  # (user, password, encrypted)
        self.errors: list[BaseException] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._conns: list[Conn] = []
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        """``localhost:PORT``: the name the test certificates carry."""
        return f"localhost:{self.port}"

    # -- what the script reads ----------------------------------------
    def folder(self, wire: bytes) -> Folder | None:
        if wire.upper() == b"INBOX":
            wire = b"INBOX"
        if len(self._index) != len(self.folders):  # folders added or removed by the test
            self._index = {folder.wire: folder for folder in self.folders}
        return self._index.get(wire)

    def accepts(self, user: str, password: str) -> bool:
        return user == self.user and password == self.password

    def offered(self, user: str, password: str, encrypted: bool) -> None:
        with self._lock:
            self.credentials.append((user, password, encrypted))

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def commands(self) -> list[bytes]:
        """The command names received (``UID FETCH`` kept as ``UID``), in order."""
        names = []
        for item in self.received:
            parts = item.line.split(b" ", 2)
            if len(parts) > 1 and re.fullmatch(rb"[A-Za-z0-9.]+", parts[0]):
                names.append(parts[1].strip().upper())
        return names

    # -- life cycle ---------------------------------------------------
    def start(self) -> FakeImapServer:
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        thread = threading.Thread(target=self._accept_loop, name="fake-imap-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in list(self._conns):
            conn.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FakeImapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock, number), name=f"fake-imap-{number}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(30)
        # Answers go out in several small writes: without this, Nagle and delayed ACKs
        # add 40 ms to every command.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn: Conn | None = None
        try:
            if self.tls == "implicit":
                assert self.tls_context is not None
                sock = self.tls_context.wrap_socket(sock, server_side=True)
            conn = Conn(self, sock, number)
            self._conns.append(conn)
            conn.send(self.script.greeting(conn))
            while not conn.closed and not self._stopped.is_set():
                line = conn.line()
                if not line:
                    break
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                name, _, args = rest.partition(b" ")
                self.script.command(conn, tag, name.upper(), args)
        except (OSError, ssl.SSLError, ValueError):
            pass  # the client went away or broke the protocol: that is the client's story to tell
        except BaseException as exc:  # a bug in a test script: keep it for the test to see
            self.errors.append(exc)
        finally:
            if conn is not None:
                conn.close()
            else:
                with contextlib.suppress(OSError):
                    sock.close()


def make_certs(directory: Path, kinds: tuple[str, ...] | None = None) -> dict[str, Certs]:
    """Certificates of the given kinds (all of `DovecotServer.make_cert`'s by
    default), signed by its test CA but "selfsigned", in `directory`; no
    Dovecot is started."""
    from dovecot_server import CERT_KINDS, DovecotServer

    maker = DovecotServer(directory)
    made = {}
    for kind in kinds or CERT_KINDS:
        cert, key = maker.make_cert(kind)
        made[kind] = Certs(cert, key, maker.cafile)
    return made


# -- running mailbackup against it --------------------------------------------
REPO = Path(__file__).resolve().parent.parent
MEASURE = (
    "import json, resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(json.dumps({'code': done.returncode, 'out': done.stdout, 'err': done.stderr,\n"
    "                  'kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


class Run:
    """One finished `python -m mailbackup ARGS` in a subprocess, with its peak memory (KiB)."""

    def __init__(self, args: list[str], password: str | None, timeout: float = 120,
                 env: dict[str, str] | None = None) -> None:
        environment = {key: value for key, value in os.environ.items() if key != "MAILBACKUP_PASSWORD"}
        if password is not None:
            environment["MAILBACKUP_PASSWORD"] = password
        environment.update(env or {})
        command = [sys.executable, "-m", "mailbackup", *args]
        done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True,
                              env=environment, cwd=REPO, timeout=timeout, check=True)
        result = json.loads(done.stdout)
        self.args = args
        self.code: int = result["code"]
        self.stdout: str = result["out"]
        self.stderr: str = result["err"]
        self.peak_kib: int = result["kib"]

    def error_line(self) -> str:
        """The one ``mailbackup: error:`` line, asserting there is no traceback and no other error."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.startswith("mailbackup: error:")]
        assert len(lines) == 1, self.stderr
        return lines[0]


def run_mailbackup(server: FakeImapServer, cafile: Path, dest: Path, *extra: str, command: str = "backup") -> Run:
    """`mailbackup COMMAND` for the server's account (``--dest``, quick retries for `backup`)."""
    args = [command, server.user, "--server", server.address, "--cafile", str(cafile), "--timeout", "3"]
    if command == "backup":
        args += ["--dest", str(dest), "--retry-delay", "0.01"]
    elif command == "verify":
        args += ["--dest", str(dest)]
    return Run([*args, *extra], server.password)


def letter(number: int) -> bytes:
    """A small Thai letter whose body has lines an mbox must quote."""
    return ("From: ศาลแพ่ง <court@coj.go.th>\r\nTo: clerk@coj.go.th\r\n"
            f"Subject: =?UTF-8?B?4LiE4LiU4Li14LiX4Li14LmI?= {number}\r\nMessage-ID: <{number}@coj.go.th>\r\n\r\n"
            f"เรียน เจ้าหน้าที่\r\nFrom the desk of case {number}\r\n>From here\r\nline three\r\n").encode()


# -- liar modes (issue 13): answers real servers gave that Dovecot will not --------------------
# Each is a Script a test passes to FakeImapServer; the folders and messages stay the
# test's own, only what the server *says* about them lies.


class EmptyUidRangeSearch(Script):
    """GNU mailutils imap4d 3.15: `UID SEARCH UID 1:*` answers an empty ``* SEARCH``
    although EXAMINE said ``n EXISTS`` (n > 0); `UID SEARCH ALL` works."""

    def do_uid(self, conn: Conn, tag: bytes, args: bytes) -> None:
        verb, _, criteria = args.partition(b" ")
        if verb.upper() == b"SEARCH" and conn.selected is not None and b"UID" in criteria.upper():
            conn.send(b"* SEARCH\r\n" + tag + b" OK Search completed.\r\n")
            return
        super().do_uid(conn, tag, args)


class SearchesEmpty(EmptyUidRangeSearch):
    """Every SEARCH of a selected folder answers an empty ``* SEARCH`` (`UID SEARCH ALL`
    too), while EXAMINE still counts the messages: only a FETCH can list them."""

    def do_uid(self, conn: Conn, tag: bytes, args: bytes) -> None:
        if args.upper().startswith(b"SEARCH") and conn.selected is not None:
            conn.send(b"* SEARCH\r\n" + tag + b" OK Search completed.\r\n")
            return
        super().do_uid(conn, tag, args)


class FetchOmits(Script):
    """A FETCH that answers for fewer messages than asked, and says OK: the messages
    whose UIDs are in `omitted` are left out of `what` ("meta": UID/size/flags
    listings, "body": body fetches, "both"), while SEARCH and EXISTS still count them."""

    def __init__(self, omitted: set[int], what: str = "both") -> None:
        if what not in ("meta", "body", "both"):
            raise ValueError(f"what must be meta, body or both, not {what!r}")
        self.omitted, self.what = omitted, what

    def fetch_response(self, conn: Conn, sequence: int, message: Message, items: bytes) -> bytes:
        asks_body = b"BODY" in items.upper()
        if message.uid in self.omitted and self.what in ("both", "body" if asks_body else "meta"):
            return b""
        return super().fetch_response(conn, sequence, message, items)


class NewUidsEverySession(Script):
    """A server that changes UIDVALIDITY and every UID on each connection (mailutils
    imap4d changes UIDVALIDITY on most folders every session): connection n sees
    UIDVALIDITY ``base + n`` and UIDs shifted by ``100 * n``."""

    def _renumbered(self, conn: Conn, folder: Folder) -> Folder:
        shift = 100 * conn.number
        messages = [Message(m.uid + shift, m.body, m.flags, m.internaldate) for m in folder.messages]
        return Folder(folder.wire, messages, folder.uidvalidity + conn.number, folder.delimiter, folder.flags)

    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        super().status(conn, tag, self._renumbered(conn, folder))

    def examine(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        super().examine(conn, tag, self._renumbered(conn, folder))


class SizeEstimates(Script):
    """Exchange without `EnableExactRFC822Size`: RFC822.SIZE is an estimate, here
    `extra` bytes more than the BODY[] the same server sends."""

    def __init__(self, extra: int = 17) -> None:
        self.extra = extra

    def fetch_response(self, conn: Conn, sequence: int, message: Message, items: bytes) -> bytes:
        answer = super().fetch_response(conn, sequence, message, items)
        size = b"RFC822.SIZE %d" % len(message.body)
        return answer.replace(size, b"RFC822.SIZE %d" % (len(message.body) + self.extra), 1)
