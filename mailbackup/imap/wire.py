"""Every use of imapclient's and imaplib's internals, in one place.

imapclient is a good library for the common case, but a backup tool needs a
few things it does not offer: pipelined FETCH read off the socket, LIST-STATUS,
EXAMINE and FETCH sent together, raw APPEND, AUTHENTICATE answers told apart
(NO from BAD from a broken line), COMPRESS=DEFLATE, limits on what a server
may make us hold in memory, and a start-up without importlib.metadata.  Each
of those reaches into a private attribute or a private method; each is
written here once, and each has a test in tests/test_wire.py that fails when
a new imapclient or Python changes what it relies on.  setup.cfg pins
imapclient to the minor versions those tests have passed with.

Installed when this module is imported (by mailbackup/imap/__init__.py, so
before any connection exists):

* imaplib reads a literal with one ``file.read(size)`` of the size the server
  announced: ``{99999999999}`` would allocate 93 GB.  No literal may pass
  `MAX_LITERAL`; and on our own connections (`limit_responses`), outside a
  command that fetches messages, a literal may hold at most
  `MAX_RESPONSE_LITERAL` bytes, and one command's untagged answers at most
  `MAX_RESPONSE_ENTRIES` entries and `MAX_RESPONSE_BYTES` bytes (an endless
  LIST grew a process past 5 GB).
* imaplib refuses a line that does not end in CRLF; GNU mailutils imap4d ends
  its answer to AUTHENTICATE PLAIN with a bare LF.  A bare LF is taken as a
  line end.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import io
import os
import re
import socket
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.machinery import PathFinder
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from mailbackup.i18n import _
from mailbackup.imap.deadline import DeadlineSocket, ProgressDeadline, SocketReader
from mailbackup.imap.lexer import MAX_LITERAL, PROGRESS_CHUNK, ResponseTooLarge

if TYPE_CHECKING:
    import imapclient

MAX_RESPONSE_LITERAL = 64 * 1024  # a folder name, a STATUS value: nothing outside a message is bigger
MAX_RESPONSE_ENTRIES = 100_000  # untagged answers to one command (LIST-STATUS of 10,000 folders: 20,000)
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# imapclient's loggers (imap/redact.py filters them: they repeat what a server said)
IMAPCLIENT_LOGGERS = ("imapclient", "imapclient.imapclient", "imapclient.util", "imapclient.imaplib",
                      "imapclient.response_parser")
# imapclient raises this when the server answers a literal with a tagged NO
# instead of a continuation (no LITERAL+): the command is over, refused.
REFUSED_LITERAL = "unexpected response while waiting for continuation"


# -- start-up: imapclient's version without importlib.metadata ------------------
def imapclient_version() -> tuple[str, tuple[int, int, int, str]] | None:
    """imapclient's version from its ``*.dist-info`` directory name, or None
    when that is not plain to see (then imapclient finds it itself)."""
    spec = PathFinder.find_spec("imapclient")
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    try:
        found = [entry.name[len("imapclient-"):-len(".dist-info")] for entry in os.scandir(site)
                 if entry.name.lower().startswith("imapclient-") and entry.name.endswith(".dist-info")]
    except OSError:
        return None
    if len(found) != 1:
        return None
    try:
        major, minor, micro = (int(part) for part in found[0].split("."))
    except ValueError:
        return None
    return found[0], (major, minor, micro, "final")


def spare_importlib_metadata() -> None:
    """imapclient's `version` module asks importlib.metadata for its own version
    at import: about 20 ms (importing importlib.metadata and scanning every
    installed distribution), a sixth of a whole no-op backup run.  The same
    answer is read here from the one directory that holds it and handed to
    imapclient as its `version` module, shaped as imapclient's own."""
    if "imapclient" in sys.modules or "imapclient.version" in sys.modules:
        return
    found = imapclient_version()
    if found is None:
        return
    module = types.ModuleType("imapclient.version")
    module.version, module.version_info = found  # type: ignore[attr-defined]
    sys.modules["imapclient.version"] = module


# -- limits and line ends, for every imaplib connection ------------------------------
_IMAPLIB_READ = imaplib.IMAP4.read
_IMAPLIB_READLINE = imaplib.IMAP4.readline
_IMAPLIB_SEND = imaplib.IMAP4.send
_IMAPLIB_NEW_TAG = imaplib.IMAP4._new_tag  # type: ignore[attr-defined]
_IMAPLIB_APPEND_UNTAGGED = imaplib.IMAP4._append_untagged  # type: ignore[attr-defined]
_IMAPLIB_GET_CAPABILITIES = imaplib.IMAP4._get_capabilities  # type: ignore[attr-defined]
_GREETING_CAPABILITY = re.compile(rb"^\* (?:OK|PREAUTH) \[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_LIMITED = "_mailbackup_limited"  # set on our own connections (other imapclient users in the process keep theirs)
_MESSAGES = "_mailbackup_messages"  # set while a command that fetches messages runs
_USED = "_mailbackup_used"  # [entries, bytes] of the running command's untagged answers
_DEADLINE = "_mailbackup_deadline"  # the connection's ProgressDeadline (imap/deadline.py)
_READING = "_mailbackup_reading"  # the DeadlineSocket every read goes through


def _tight(imap: imaplib.IMAP4) -> bool:
    return getattr(imap, _LIMITED, False) and not getattr(imap, _MESSAGES, False)


def _bounded_read(self: imaplib.IMAP4, size: int) -> bytes:
    limit = MAX_RESPONSE_LITERAL if _tight(self) else MAX_LITERAL
    if size > limit:
        _refuse(self, _("server announced a literal of {size} bytes; refusing (at most {limit} here)").format(
            size=size, limit=limit))
    deadline: ProgressDeadline | None = getattr(self, _DEADLINE, None)
    if deadline is None or size <= PROGRESS_CHUNK or not getattr(self, _MESSAGES, False):
        return _IMAPLIB_READ(self, size)
    pieces = []  # a message body on a slow link: each piece that arrives is progress
    for start in range(0, size, PROGRESS_CHUNK):
        piece = _IMAPLIB_READ(self, min(PROGRESS_CHUNK, size - start))
        pieces.append(piece)
        deadline.progress()
        if len(piece) < min(PROGRESS_CHUNK, size - start):
            break
    return b"".join(pieces)


def _lf_readline(self: imaplib.IMAP4) -> bytes:
    line = _IMAPLIB_READLINE(self)
    if line.endswith(b"\n") and not line.endswith(b"\r\n"):
        return line[:-1] + b"\r\n"
    return line


def _send(self: imaplib.IMAP4, data: bytes) -> None:
    _IMAPLIB_SEND(self, data)
    _progress(self)  # a long upload (APPEND of a large message) is progress; the wait for its answer starts now


def _greeted_capabilities(self: imaplib.IMAP4) -> None:
    """The capabilities a greeting announced (its CAPABILITY response code,
    RFC 3501 7.1) rather than a CAPABILITY command: imaplib always asks, and
    on a slow link every connection paid a round trip for what it was told."""
    match = _GREETING_CAPABILITY.match(self.welcome or b"")
    if match is None:
        _IMAPLIB_GET_CAPABILITIES(self)
        return
    self.capabilities = tuple(match.group(1).decode("ascii", "replace").upper().split())
    # Taken, as the command's answer would have been: left there, it would pass for the
    # capabilities a login announces (imapclient reads the first one it finds).
    self.untagged_responses.pop("CAPABILITY", None)


def _new_tag(self: imaplib.IMAP4) -> bytes:
    setattr(self, _USED, [0, 0])  # every command, imaplib's or imapclient's, starts with a new tag
    _progress(self)
    return _IMAPLIB_NEW_TAG(self)  # type: ignore[no-any-return]


def _bounded_append_untagged(self: imaplib.IMAP4, typ: str, dat: Any) -> None:
    if typ == "FETCH" and getattr(self, _MESSAGES, False):
        _progress(self)  # a FETCH answer moves a fetch on; a flood of EXISTS does not
    if _tight(self):
        used = getattr(self, _USED, None)
        if used is None:
            used = [0, 0]
            setattr(self, _USED, used)
        used[0] += 1
        used[1] += sum(len(part) for part in dat if part) if isinstance(dat, tuple) else len(dat or b"")
        if used[0] > MAX_RESPONSE_ENTRIES or used[1] > MAX_RESPONSE_BYTES:
            _refuse(self, too_large().message)
    _IMAPLIB_APPEND_UNTAGGED(self, typ, dat)


def too_large() -> ResponseTooLarge:
    """The error for an answer to one command past `MAX_RESPONSE_ENTRIES` or `MAX_RESPONSE_BYTES`."""
    return ResponseTooLarge(_("the server's answer to one command passed {entries} lines or {size} MB; refusing")
                            .format(entries=MAX_RESPONSE_ENTRIES, size=MAX_RESPONSE_BYTES >> 20))


def _progress(imap: imaplib.IMAP4) -> None:
    deadline: ProgressDeadline | None = getattr(imap, _DEADLINE, None)
    if deadline is not None:
        deadline.progress()


def _refuse(imap: imaplib.IMAP4, message: str) -> NoReturn:
    """Drop the connection (the rest of the answer is still on it: nothing read
    after would be trusted) and say why."""
    with contextlib.suppress(OSError):
        imap.shutdown()
    raise ResponseTooLarge(message)


def install() -> None:
    imaplib.IMAP4.read = _bounded_read  # type: ignore[method-assign]
    imaplib.IMAP4.readline = _lf_readline  # type: ignore[method-assign]
    imaplib.IMAP4.send = _send  # type: ignore[method-assign,assignment]
    imaplib.IMAP4._new_tag = _new_tag  # type: ignore[attr-defined]
    imaplib.IMAP4._append_untagged = _bounded_append_untagged  # type: ignore[attr-defined]
    imaplib.IMAP4._get_capabilities = _greeted_capabilities  # type: ignore[attr-defined]
    imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


def limit_responses(client: imapclient.IMAPClient) -> None:
    """Hold this connection's answers outside messages to the limits above."""
    setattr(client._imap, _LIMITED, True)


def watch_progress(client: imapclient.IMAPClient, seconds: float | None, server: str) -> None:
    """From now on, every read on this connection is bounded by a deadline for
    progress of `seconds` (imap/deadline.py), not only the socket's timeout
    per byte.  Call once the channel is secured (STARTTLS makes a new reader)."""
    imap = client._imap
    if seconds is None or getattr(imap, "sock", None) is None:
        return
    deadline = ProgressDeadline(seconds, server)
    reading = DeadlineSocket(imap.sock, deadline)
    setattr(imap, _DEADLINE, deadline)
    setattr(imap, _READING, reading)
    imap.file = io.BufferedReader(SocketReader(reading), 1 << 16)


def progress_of(client: imapclient.IMAPClient) -> Callable[[], None]:
    """What to call when the connection made progress (our own pipelined reader)."""
    deadline: ProgressDeadline | None = getattr(client._imap, _DEADLINE, None)
    return deadline.progress if deadline is not None else _no_progress


def _no_progress() -> None:
    pass


def reading_socket(client: imapclient.IMAPClient) -> Any:
    """The socket reads go through: the deadline's (when watched), else imaplib's."""
    return getattr(client._imap, _READING, None) or socket_of(client)


@contextlib.contextmanager
def message_literals(client: imapclient.IMAPClient) -> Iterator[None]:
    """Within: literals up to MAX_LITERAL and answers of any length (a FETCH of
    bodies, of flags of a whole folder)."""
    imap = client._imap
    before = getattr(imap, _MESSAGES, False)
    setattr(imap, _MESSAGES, True)
    try:
        yield
    finally:
        setattr(imap, _MESSAGES, before)


# -- the connection under imapclient -------------------------------------------------
def socket_of(client: imapclient.IMAPClient) -> socket.socket | None:
    """The (TLS-wrapped, or compressing) socket imaplib keeps."""
    return getattr(client._imap, "sock", None)


def stream_of(client: imapclient.IMAPClient) -> tuple[BinaryIO, Callable[[bytes], None]]:
    """imaplib's buffered reader and its send, for our own pipelined reader."""
    imap = client._imap
    return imap.file, imap.send


def replace_stream(client: imapclient.IMAPClient, sock: Any, reader: BinaryIO) -> None:
    """Swap in a socket and reader (COMPRESS): imaplib only sends, times out and closes with `sock`."""
    imap = client._imap
    imap.sock = sock
    imap.file = reader


def simple_command(client: imapclient.IMAPClient, name: str, *args: str) -> tuple[str, list[Any]]:
    """A command imapclient has no method for; a BAD raises imaplib's error."""
    typ, data = client._imap._simple_command(name, *args)
    return str(typ), list(data)


def pop_untagged(client: imapclient.IMAPClient, kind: str) -> list[Any]:
    return list(client._imap.untagged_responses.pop(kind, []))


def folder_list(client: imapclient.IMAPClient, listed: list[Any]) -> list[tuple[Any, Any, Any]]:
    """LIST answers already read (LIST-STATUS) as imapclient's ``list_folders`` gives them."""
    return list(client._proc_folder_list(listed))


def parse_answers(data: list[Any]) -> list[Any]:
    """imapclient's generic parser over untagged answers (STATUS of a LIST-STATUS)."""
    from imapclient.response_parser import parse_response

    return list(parse_response([item for item in data if item not in (b"", None)]))


def send_only(client: imapclient.IMAPClient, name: str, *args: str) -> None:
    """Send a command without waiting for its answer; imaplib files that answer
    under its tag while it reads the next command's (pipelining, RFC 3501 5.5)."""
    client._imap._command(name, *args)


def send_logout(client: imapclient.IMAPClient) -> None:
    """LOGOUT, without waiting for its answer: the connection is closed next
    and nothing the server could say changes what was saved (a round trip
    saved at the end of every run, per connection)."""
    imap = client._imap
    imap.send(imap._new_tag() + b" LOGOUT\r\n")


# -- EXAMINE with the size listing in the same round trip ------------------------------
def send_examine(client: imapclient.IMAPClient, name: str) -> bytes:
    """Send EXAMINE without waiting for its answer (`complete_examine` reads it)."""
    imap = client._imap
    imap.untagged_responses = {}  # imaplib checks them as it sends (a READ-ONLY of another folder)
    return imap._command("EXAMINE", client._normalise_folder(name))  # type: ignore[no-any-return]


def complete_examine(client: imapclient.IMAPClient, tag: bytes) -> tuple[str, list[Any]]:
    """EXAMINE's tagged answer; BAD is returned as an answer, not raised.  The
    untagged answers read before are forgotten first: they would be taken for
    its own (a folder opened ahead is answered after the one before it)."""
    imap = client._imap
    imap.untagged_responses = {}
    try:
        typ, data = imap._command_complete("EXAMINE", tag)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:  # BAD
        return "BAD", [str(exc).encode()]
    return str(typ), list(data)


def mark_selected(client: imapclient.IMAPClient, selected: bool) -> dict[Any, Any]:
    """Tell imaplib what our own EXAMINE did; the SELECT answers, parsed by imapclient, when it succeeded."""
    imap = client._imap
    if not selected:
        imap.state = "AUTH"
        return {}
    imap.state, imap.is_readonly = "SELECTED", True
    return dict(client._process_select_response(imap.untagged_responses))


# -- FETCH and APPEND --------------------------------------------------------------
def uid_fetch(client: imapclient.IMAPClient, sequence: str, items: list[str],
              modifiers: list[str] | None) -> tuple[str, Any]:
    """UID FETCH with a sequence-set string (imapclient's `fetch()` refuses ``1:*``):
    the tagged status and its text, or OK and the answers by UID."""
    from imapclient.response_parser import parse_fetch_response

    imap = client._imap
    args = ["FETCH", sequence, "(" + " ".join(items) + ")"]
    if modifiers:
        args.append("(" + " ".join(modifiers) + ")")
    with message_literals(client):
        tag = imap._command("UID", *args)
        typ, data = imap._command_complete("FETCH", tag)
        if typ != "OK":
            return str(typ), data
        typ, data = imap._untagged_response(typ, data, "FETCH")
    return "OK", parse_fetch_response(data, False, True)


def append_raw(client: imapclient.IMAPClient, folder: str, flags: tuple[str, ...], date: str,
               body: bytes) -> tuple[str, list[Any]]:
    """APPEND sent as imapclient sends MULTIAPPEND: the body as a literal, untouched
    (imapclient's `append()` goes through imaplib, which rewrites bare CR and LF)."""
    from imapclient.imapclient import _literal, seq_to_parenstr
    from imapclient.util import to_bytes

    args = [client._normalise_folder(folder), to_bytes(seq_to_parenstr(flags)), to_bytes(f'"{date}"'),
            _literal(body)]
    status, data = client._raw_command(b"APPEND", args, uid=False)
    return str(status), list(data)


# -- logging in ------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A tagged answer: OK, NO or BAD, and the server's text after it."""

    status: str
    text: str


class _PlainResponse:
    """imaplib takes a bound method (not any callable) as the answer to a continuation."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def respond(self, _challenge: bytes) -> bytes:
        return self.answer


def authenticate_plain(client: imapclient.IMAPClient, account: str, password: str) -> Reply:
    """AUTHENTICATE PLAIN (RFC 4616, UTF-8), answered as OK, NO or BAD; a line
    that is not IMAP raises imaplib's abort.  (imapclient's `plain_login` turns
    all of these into one LoginError: a broken line would read as a wrong password.)"""
    imap = client._imap
    answer = base64.b64encode(f"\0{account}\0{password}".encode())
    if "SASL-IR" in imap.capabilities:  # RFC 4959: the credentials on the command line, one round trip less
        imap.literal = _PlainResponse(b"*").respond  # a server that asks anyway gets a cancel, not them twice
        return _login_reply(imap, "AUTHENTICATE", "PLAIN", answer.decode("ascii"))
    imap.literal = _PlainResponse(answer).respond
    return _login_reply(imap, "AUTHENTICATE", "PLAIN")


def login_command(client: imapclient.IMAPClient, account: str, password: str) -> Reply:
    """LOGIN (ASCII only: imaplib encodes its arguments as ASCII), answered as OK, NO or BAD."""
    imap = client._imap
    return _login_reply(imap, "LOGIN", account, imap._quote(password))


def connection_closed(exc: imaplib.IMAP4.abort) -> bool:
    """Whether imaplib's abort says the server hung up (not that it sent something that is not IMAP)."""
    return "socket error: EOF" in str(exc)


def _login_reply(imap: imaplib.IMAP4, name: str, *args: str) -> Reply:
    try:
        typ, data = imap._simple_command(name, *args)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:  # "<name> command error: BAD [b'...']"
        return Reply("BAD", str(exc).partition(" BAD ")[2])
    text = b" ".join(item for item in data if isinstance(item, bytes)).decode("utf-8", "replace")
    if typ == "OK":
        imap.state = "AUTH"
    return Reply(str(typ), text)


install()
