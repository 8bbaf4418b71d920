"""imap/wire.py reaches into imapclient's and imaplib's internals; each use
is checked here against a real Dovecot with the installed imapclient, so
that a new version that changes one fails here first (setup.cfg pins the
minor versions these tests passed with)."""

from __future__ import annotations

import imaplib
import importlib.metadata
import inspect
import io
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import imapclient
import pytest
from conftest import ImapUser, new_filled_user, new_user

from mailbackup.errors import ConnectionLost
from mailbackup.imap import compress, redact, wire
from mailbackup.imap.append import TargetMailbox
from mailbackup.imap.connect import open_client
from mailbackup.imap.deadline import DeadlineSocket, ProgressDeadline, SocketReader
from mailbackup.imap.lexer import ResponseTooLarge
from mailbackup.imap.pipeline import FetchPipeline
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress

BIG = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 8192 + b"\r\n"  # 128 KiB: above the limit outside messages
MAILBOX = {"INBOX": [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\nsecond\r\n", BIG],
           "งานคดี": [b"Subject: three\r\n\r\nthird\r\n"]}


def settings_of(user: ImapUser, **extra: object) -> ConnectionSettings:
    return ConnectionSettings(ServerAddress.parse(user.server_arg), cafile=str(user.cafile), timeout=30,
                              **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def user(dovecot_server) -> ImapUser:
    return new_filled_user(dovecot_server, MAILBOX)


@pytest.fixture
def session(user: ImapUser) -> Iterator[ImapSession]:
    with ImapSession(settings_of(user, compress="never"), user.name, user.password) as opened:
        yield opened


def test_imapclient_version_is_read_as_importlib_metadata_reads_it():
    found = wire.imapclient_version()
    assert found is not None
    assert found[0] == importlib.metadata.version("imapclient") == imapclient.__version__


def test_the_imaplib_hooks_are_installed_on_the_class():
    assert imaplib.IMAP4.read is wire._bounded_read
    assert imaplib.IMAP4.readline is wire._lf_readline
    assert imaplib.IMAP4._new_tag is wire._new_tag  # type: ignore[attr-defined]
    assert imaplib.IMAP4._append_untagged is wire._bounded_append_untagged  # type: ignore[attr-defined]
    assert imaplib.IMAP4.send is wire._send  # type: ignore[comparison-overlap]
    assert imaplib.Commands["COMPRESS"] == ("AUTH", "SELECTED")


def test_the_socket_is_where_imaplib_keeps_it(user):
    client = open_client(settings_of(user))
    try:
        assert isinstance(wire.socket_of(client), ssl.SSLSocket)
    finally:
        client.shutdown()


def test_every_read_goes_through_the_deadline_for_progress(user):
    """imaplib keeps its reader in `file` and reads nothing past it: the deadline's reader replaces it."""
    client = open_client(settings_of(user))
    try:
        reading = wire.reading_socket(client)
        assert isinstance(reading, DeadlineSocket) and isinstance(client._imap.file.raw, SocketReader)
        before = reading.deadline.expires
        client.plain_login(user.name, user.password)  # a command moves the deadline on, and reads through it
        assert reading.deadline.expires > before and client.list_folders()
        compress.start(client)  # COMPRESS, when offered, reads through it too
        assert client.list_folders()
    finally:
        client.shutdown()


def test_noise_does_not_move_the_deadline_on():
    """A peer that sends a byte every 0.1 s would reset a socket timeout of 1 s for ever."""
    ours, theirs = socket.socketpair()
    ours.settimeout(1.0)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.1):
            try:
                theirs.sendall(b"x")
            except OSError:
                return
    threading.Thread(target=trickle, daemon=True).start()
    reader = io.BufferedReader(SocketReader(DeadlineSocket(ours, ProgressDeadline(0.5, "peer"))))
    started = time.monotonic()
    try:
        with pytest.raises(ConnectionLost, match=r"peer made no progress for 0\.5 seconds"):
            reader.readline()
    finally:
        stop.set()
        ours.close()
        theirs.close()
    assert time.monotonic() - started < 1.0


def test_our_reader_reads_off_imaplib_stream(session):
    session.examine("INBOX")
    rows = FetchPipeline(*wire.stream_of(session.client), spool_dir=None, spool_above=1 << 16).fetch_meta("1:*")
    assert [row.size for row in rows] == [len(body) for body in MAILBOX["INBOX"]]
    assert session.list_folders()  # imaplib still reads what follows on the same stream


def test_compress_swaps_the_stream_and_imapclient_keeps_working(user):
    with ImapSession(settings_of(user, compress="always"), user.name, user.password) as opened:
        assert opened.compressed
        assert isinstance(wire.socket_of(opened.client), compress.DeflateSocket)
        assert {folder.name for folder in opened.list_folders()} >= set(MAILBOX)
        opened.examine("INBOX")
        assert len(opened.fetch_meta("1:*")) == 3


def test_list_status_reads_imaplib_untagged_answers(session):
    assert session.has_capability("LIST-STATUS")
    folders, statuses = session.list_with_status()
    assert {folder.name for folder in folders} >= set(MAILBOX)
    assert {name: statuses[name].messages for name in MAILBOX} == {"INBOX": 3, "งานคดี": 1}


def test_examine_and_the_listing_in_one_round_trip(session):
    selected, metas = session.examine_listing("งานคดี")
    assert (selected.exists, [meta.size for meta in metas]) == (1, [len(MAILBOX["งานคดี"][0])])
    assert session.client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 3  # imaplib's state follows


def test_uid_fetch_with_a_range_and_large_literals(session):
    session.examine("INBOX")
    flags = session.fetch_flags("1:*")
    assert sorted(flags) == [1, 2, 3]
    assert session.fetch_partial(3, 16, 100_000) == BIG[16:100_016]  # a literal above 64 KiB, inside a FETCH


def test_outside_a_fetch_of_messages_a_large_literal_is_refused(session):
    session.examine("INBOX")
    with pytest.raises(ResponseTooLarge, match=rf"literal of {len(BIG)} bytes; refusing \(at most 65536"):
        session.client.fetch([3], ["BODY.PEEK[]"])  # imapclient's fetch without message_literals


def test_other_imapclient_connections_in_the_process_keep_their_limits(user, imap_client_factory):
    client = imap_client_factory(user)  # not opened by mailbackup: only the 2 GB bound on a literal applies
    client.select_folder("INBOX", readonly=True)
    assert client.fetch([3], ["BODY.PEEK[]"])[3][b"BODY[]"] == BIG


def test_append_raw_keeps_the_bytes_and_a_refused_literal_is_recognised(dovecot_server):
    target = new_user(dovecot_server)
    body = "Subject: ดิบ 8-bit\r\n\r\nไม่แปลง\r\n".encode()  # raw 8-bit header bytes, sent as they are
    with ImapSession(settings_of(target), target.name, target.password) as opened:
        mailbox = TargetMailbox(opened)
        folder = mailbox.select("INBOX")
        status, _data = wire.append_raw(opened.client, "INBOX", ("\\Seen",), "15-Jan-2024 09:30:00 +0700", body)
        assert status == "OK"
        assert mailbox.fetch_body(folder.uidnext) == body
    source = inspect.getsource(imapclient.imapclient.IMAPClient)
    assert wire.REFUSED_LITERAL in source


@pytest.mark.parametrize("mechanism", [wire.authenticate_plain, wire.login_command])
def test_login_answers_are_told_apart(dovecot_server, mechanism):
    name, password = f"wire-{mechanism.__name__}@coj.go.th", "ascii-for-LOGIN-7"  # imaplib's LOGIN is ASCII only
    dovecot_server.add_user(name, password)
    user = ImapUser(name, password, dovecot_server.server_arg, dovecot_server.cafile, dovecot_server.maildir(name),
                    dovecot_server)
    refused, accepted = open_client(settings_of(user)), open_client(settings_of(user))
    try:
        reply = mechanism(refused, name, "wrong-" + password)
        assert reply.status == "NO" and "[AUTHENTICATIONFAILED]" in reply.text
        assert mechanism(accepted, name, password).status == "OK"
        assert accepted.list_folders()  # imaplib knows it is logged in
    finally:
        refused.shutdown()
        accepted.shutdown()


def test_imapclient_logs_through_the_loggers_we_filter():
    import imapclient.response_parser
    import imapclient.util

    for module in (imapclient.imapclient, imapclient.util):
        assert module.logger.name in wire.IMAPCLIENT_LOGGERS
    assert "imapclient.imaplib" in inspect.getsource(imapclient.imapclient.IMAPClient)
    assert {logger.name for logger in map(logging.getLogger, wire.IMAPCLIENT_LOGGERS)
            if any(isinstance(found, redact._LogRedaction) for found in logger.filters)} == set(wire.IMAPCLIENT_LOGGERS)
