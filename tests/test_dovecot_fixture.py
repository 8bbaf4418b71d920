"""The Dovecot test server and the sample mail behave as the other tests assume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sample_mail  # scripts/ is put on sys.path by conftest
from dovecot_server import DovecotServer
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

if TYPE_CHECKING:
    from conftest import ImapUser

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
Connect = Callable[..., IMAPClient]
UserFactory = Callable[[DovecotServer], "ImapUser"]


def tls_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def _fetch_all(client: IMAPClient, folder: str, uids: list[int]) -> dict[int, dict[bytes, object]]:
    client.select_folder(folder, readonly=True)
    return client.fetch(uids, ["BODY.PEEK[]", "RFC822.SIZE", "FLAGS", "INTERNALDATE"])


def _live_processes_in_group(pgid: int) -> list[str]:
    """Non-zombie processes of a process group (Linux /proc)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)"
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(text.split(")")[0])
    return live


# ------------------------------------------------------------------ TLS / auth
def test_tls_login_verifies_certificate_and_host_name(imap_user: ImapUser, imap_client_factory: Connect) -> None:
    client = imap_client_factory(imap_user)
    assert imap_user.server_arg == f"localhost:{imap_user.port}"
    cert = client._imap.sock.getpeercert()
    assert ("DNS", "localhost") in cert["subjectAltName"]
    assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_tls_refuses_untrusted_or_misnamed_server(imap_user: ImapUser) -> None:
    # Without the test CA: not trusted.
    with pytest.raises(ssl.SSLCertVerificationError, match=r"self-signed|unable to get local issuer"):
        IMAPClient("localhost", port=imap_user.port, ssl=True, ssl_context=ssl.create_default_context(), timeout=10)
    # Trusted CA, wrong name: host-name check is really on.
    ctx = tls_context(imap_user.cafile)
    with (
        socket.create_connection(("127.0.0.1", imap_user.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        ctx.wrap_socket(raw, server_hostname="mail.example.org")


def test_thai_password_works_with_authenticate_plain(imap_user: ImapUser, imap_client_factory: Connect) -> None:
    assert not imap_user.password.isascii()
    client = imap_client_factory(imap_user)  # plain_login = AUTHENTICATE PLAIN, UTF-8
    assert client.list_folders()


def test_thai_password_with_login_command_raises_unicode_error(imap_user: ImapUser) -> None:
    """Documentation: imaplib's LOGIN encodes ASCII, so it fails before sending."""
    client = IMAPClient(
        "localhost", port=imap_user.port, ssl=True, ssl_context=tls_context(imap_user.cafile), timeout=10
    )
    try:
        with pytest.raises(UnicodeEncodeError):
            client.login(imap_user.name, imap_user.password)
    finally:
        client.shutdown()


def test_starttls_listener_refuses_login_before_starttls(dovecot_server: DovecotServer, imap_user: ImapUser) -> None:
    if not dovecot_server.starttls_enforced:
        pytest.skip("127.0.0.2 unavailable: Dovecot trusts same-IP clients, plaintext LOGIN would pass")
    name, password = "plain-" + imap_user.name, "ascii-secret"
    dovecot_server.add_user(name, password)
    client = IMAPClient(dovecot_server.starttls_host, port=dovecot_server.starttls_port, ssl=False, timeout=10)
    try:
        caps = client.capabilities()
        assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps
        with pytest.raises(IMAPClientError, match=r"PRIVACYREQUIRED|disallowed"):
            client.login(name, password)
        client.starttls(tls_context(dovecot_server.cafile))
        client.login(name, password)
        assert client.list_folders()
        client.logout()
    finally:
        if client._imap.state != "LOGOUT":
            client.shutdown()


def test_starttls_fixture_connection(imap_user: ImapUser, imap_client_factory: Connect) -> None:
    client = imap_client_factory(imap_user, starttls=True)
    assert client._imap.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_add_user_while_running_rereads_passwd_file(dovecot_server: DovecotServer, imap_user: ImapUser) -> None:
    ctx = tls_context(dovecot_server.cafile)
    name = "late-" + imap_user.name
    dovecot_server.add_user(name, "รหัสAAA")
    with IMAPClient("localhost", port=dovecot_server.port, ssl=True, ssl_context=ctx, timeout=10) as client:
        client.plain_login(name, "รหัสAAA")
        client.logout()
    # Same length, same second: add_user bumps the mtime so Dovecot notices.
    dovecot_server.add_user(name, "รหัสBBB")
    with (
        IMAPClient("localhost", port=dovecot_server.port, ssl=True, ssl_context=ctx, timeout=10) as client,
        pytest.raises(IMAPClientError),
    ):
        client.plain_login(name, "รหัสAAA")
    with IMAPClient("localhost", port=dovecot_server.port, ssl=True, ssl_context=ctx, timeout=10) as client:
        client.plain_login(name, "รหัสBBB")
        client.logout()


# -------------------------------------------------------------- capabilities
def test_capabilities(imap_client: IMAPClient) -> None:
    caps = set(imap_client.capabilities())
    wanted = {b"COMPRESS=DEFLATE", b"CONDSTORE", b"QRESYNC", b"STATUS=SIZE", b"MULTIAPPEND", b"UIDPLUS", b"MOVE"}
    assert wanted <= caps


def test_status_size(imap_client: IMAPClient) -> None:
    """Dovecot 2.3.19 has RFC 8438 STATUS SIZE (and its older X-SIZE)."""
    msg = sample_mail.thai_qp_message()
    sample_mail.fill_mailbox(imap_client, {"INBOX": [msg]})
    status = imap_client.folder_status("INBOX", ["MESSAGES", "SIZE"])
    assert status == {b"MESSAGES": 1, b"SIZE": len(msg)}


# --------------------------------------------------------------- folders/mail
def test_thai_folder_names_round_trip(imap_client: IMAPClient) -> None:
    sample_mail.fill_mailbox(imap_client, {name: [] for name in sample_mail.SAMPLE_FOLDERS})
    listed = {name: flags for flags, _sep, name in imap_client.list_folders()}
    for name in sample_mail.SAMPLE_FOLDERS:
        assert name in listed
    # Parents that were never created show up as \Noselect.
    assert b"\\Noselect" in listed["งานคดี/2566"]
    assert b"\\Noselect" in listed["กล่องขาเข้า"]


def test_fill_mailbox_round_trips_bytes(imap_user: ImapUser, imap_client: IMAPClient) -> None:
    box = sample_mail.sample_mailbox()
    uids = sample_mail.fill_mailbox(imap_client, box)
    bare_lf = sample_mail.bare_lf_message()
    for folder, messages in box.items():
        if not messages:
            continue
        data = _fetch_all(imap_client, folder, uids[folder])
        for uid, msg in zip(uids[folder], messages, strict=True):
            got = data[uid]
            assert {flag.encode() for flag in msg.flags} <= set(got[b"FLAGS"])
            assert msg.internaldate is not None
            internal = got[b"INTERNALDATE"]
            assert isinstance(internal, datetime)
            assert internal.astimezone(UTC) == msg.internaldate.astimezone(UTC)
            if msg.raw == bare_lf:
                # Dovecot stores the bare-LF bytes as they came but serves
                # them with CRLF; RFC822.SIZE counts the CRLF form.
                assert got[b"BODY[]"] == msg.raw.replace(b"\n", b"\r\n")
                assert got[b"RFC822.SIZE"] == len(msg.raw) + msg.raw.count(b"\n")
                assert imap_user.server.find_message_file(imap_user.name, b"sample-bare-lf").read_bytes() == msg.raw
            else:
                assert got[b"BODY[]"] == msg.raw, folder
                assert got[b"RFC822.SIZE"] == len(msg.raw)


def test_message_without_final_newline_is_kept(imap_client: IMAPClient) -> None:
    raw = sample_mail.no_final_newline_message()
    assert not raw.endswith(b"\n")
    [uid] = sample_mail.fill_mailbox(imap_client, {"INBOX": [raw]})["INBOX"]
    assert _fetch_all(imap_client, "INBOX", [uid])[uid][b"BODY[]"] == raw


def test_big_message_round_trip(imap_client: IMAPClient) -> None:
    raw = sample_mail.big_message(20 * 1024 * 1024)
    assert len(raw) == 20 * 1024 * 1024 and raw == sample_mail.big_message(20 * 1024 * 1024)
    [uid] = sample_mail.fill_mailbox(imap_client, {"INBOX": [raw]})["INBOX"]
    got = _fetch_all(imap_client, "INBOX", [uid])[uid]
    assert got[b"RFC822.SIZE"] == len(raw)
    assert got[b"BODY[]"] == raw


def test_maildir_files_are_reachable_for_tests(imap_user: ImapUser, imap_client: IMAPClient) -> None:
    sample_mail.fill_mailbox(imap_client, sample_mail.sample_mailbox())
    server = imap_user.server
    path = server.find_message_file(imap_user.name, b"<sample-tis620@coj.go.th>")
    assert path.is_relative_to(server.folder_dir(imap_user.name, "งานคดี"))
    assert server.folder_dir(imap_user.name, "INBOX") == imap_user.maildir
    assert os.access(path, os.R_OK | os.W_OK)
    if os.geteuid() == 0:
        assert path.stat().st_uid == server.mail_uid != 0


# -------------------------------------------------------------- other servers
def test_courier_style_namespace(
    courier_server: DovecotServer, imap_user_factory: UserFactory, imap_client_factory: Connect
) -> None:
    user = imap_user_factory(courier_server)
    client = imap_client_factory(user)
    assert client.namespace().personal == (("INBOX.", "."),)
    uids = sample_mail.fill_mailbox(client, sample_mail.sample_mailbox(), ".", "INBOX.")
    names = {name for _flags, _sep, name in client.list_folders()}
    assert {"INBOX", "INBOX.Sent", "INBOX.ว่าง", "INBOX.งานคดี.2566.มกราคม", "INBOX.Project Notes"} <= names
    assert all(name == "INBOX" or name.startswith("INBOX.") for name in names)
    # Maildir++ on disk: one flat ".a.b" directory per folder.
    assert courier_server.folder_dir(user.name, "INBOX.งานคดี.2566.มกราคม").name.startswith(".&")
    data = _fetch_all(client, "INBOX.งานคดี", uids["งานคดี"])
    assert data[uids["งานคดี"][0]][b"BODY[]"] == sample_mail.tis620_message()


def test_quota_rejects_append_with_overquota(imap_user_factory: UserFactory, imap_client_factory: Connect) -> None:
    with DovecotServer(quota_bytes=40_000, plaintext_port=False) as server:
        client = imap_client_factory(imap_user_factory(server))
        sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.big_message(30_000)]})
        with pytest.raises(IMAPClientError, match=r"\[OVERQUOTA\]"):
            sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.big_message(30_000, seed=1)]})
        client.logout()


def test_alternative_certificates(imap_user_factory: UserFactory) -> None:
    """Each extra certificate kind fails verification for its own reason."""
    with DovecotServer(plaintext_port=False) as server:
        user = imap_user_factory(server)
        ctx = tls_context(server.cafile)
        for kind, error in [("expired", "expired"), ("wronghost", "Hostname mismatch"), ("selfsigned", "self-signed")]:
            server.use_cert(kind)
            with pytest.raises(ssl.SSLCertVerificationError, match=error):
                IMAPClient("localhost", port=server.port, ssl=True, ssl_context=ctx, timeout=10)
        server.use_cert("good")
        with IMAPClient("localhost", port=server.port, ssl=True, ssl_context=ctx, timeout=10) as client:
            client.plain_login(user.name, user.password)
            client.logout()


def test_stop_leaves_nothing_running() -> None:
    server = DovecotServer(plaintext_port=False).start()
    pid, port, base = server._proc.pid, server.port, server.base_dir  # type: ignore[union-attr]
    server.stop()
    assert not server.running and not base.exists()
    assert _live_processes_in_group(pid) == []  # zombies of reparented children are fine
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_cli_demo_server() -> None:
    base = Path(tempfile.mkdtemp(prefix="mbdcli", dir="/tmp"))
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "dovecot_server.py"), "--dir", str(base), "--demo"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) >= {"port", "starttls_port", "cafile", "dir"} and info["dir"] == str(base)
        ctx = tls_context(Path(info["cafile"]))
        with IMAPClient("localhost", port=info["port"], ssl=True, ssl_context=ctx, timeout=10) as client:
            client.plain_login("demo@coj.go.th", "demo-รหัส")
            total = sum(client.folder_status(name, ["MESSAGES"])[b"MESSAGES"]
                        for flags, _sep, name in client.list_folders() if b"\\Noselect" not in flags)  # fmt: skip
            assert total == sum(len(m) for m in sample_mail.demo_mailbox().values())
            client.logout()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", info["port"]), timeout=2).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)
