"""Shared fixtures: a real Dovecot server and IMAP users/clients on it.

Deliberately imports nothing from ``mailbackup`` so the fixtures work while
the package is being written.  The server helpers live in ``scripts/`` so
the demo CLI can share them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

# The suite checks English output unless a test asks for Thai (--lang th, or a
# Thai locale with MAILBACKUP_LANG emptied): a developer's Thai desktop must not change that.
os.environ["MAILBACKUP_LANG"] = "en"

from dovecot_server import DovecotServer  # noqa: E402

# Session-wide so user names stay unique across all servers of a run.
_user_numbers = itertools.count(1)


@dataclass(frozen=True)
class ImapUser:
    """A mailbox on a test server, with everything a client needs."""

    name: str
    password: str
    server_arg: str  # "localhost:PORT" (implicit TLS)
    cafile: Path
    maildir: Path
    server: DovecotServer

    @property
    def host(self) -> str:
        return self.server.hostname

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    """Default server: separator "/", no prefix, COMPRESS, STARTTLS port."""
    server = DovecotServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def courier_server() -> Iterator[DovecotServer]:
    """Courier-style namespace: separator ".", prefix "INBOX." (Maildir++)."""
    server = DovecotServer(separator=".", prefix="INBOX.")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def new_user(server: DovecotServer) -> ImapUser:
    """Add a fresh ``u<N>@coj.go.th`` with a Thai password to *server*."""
    number = next(_user_numbers)
    name, password = f"u{number}@coj.go.th", f"รหัสผ่านไทย{number}"
    server.add_user(name, password)
    return ImapUser(name, password, server.server_arg, server.cafile, server.maildir(name), server)


def new_filled_user(server: DovecotServer, mailbox: Any) -> ImapUser:
    """A fresh user whose mailbox holds `mailbox` (a sample_mail folder → messages mapping)."""
    import sample_mail

    user = new_user(server)
    with IMAPClient(user.host, port=user.port, ssl=True, ssl_context=tls_context(user.cafile), timeout=30) as client:
        client.plain_login(user.name, user.password)
        sample_mail.fill_mailbox(client, mailbox)
        client.logout()
    return user


@pytest.fixture(scope="session")
def rawlog_server() -> Iterator[DovecotServer]:
    """A server that records every session (Dovecot's rawlog): the tests read
    what the server saw, command by command, with times."""
    server = DovecotServer(rawlog=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap_user_factory() -> Callable[[DovecotServer], ImapUser]:
    """Call with any DovecotServer to get a fresh user on it."""
    return new_user


@pytest.fixture
def imap_user(dovecot_server: DovecotServer) -> ImapUser:
    """A fresh, empty mailbox on the session server."""
    return new_user(dovecot_server)


def tls_context(cafile: Path) -> ssl.SSLContext:
    """Verifying client context: trusts only the test CA, checks host names."""
    return ssl.create_default_context(cafile=str(cafile))


@pytest.fixture
def imap_client_factory() -> Iterator[Callable[..., IMAPClient]]:
    """``connect(user, *, starttls=False)`` -> logged-in IMAPClient.

    TLS is verified against the user's cafile for host "localhost"; login
    uses AUTHENTICATE PLAIN because imaplib's LOGIN cannot send a Thai
    password.  Every client is logged out at teardown.
    """
    clients: list[IMAPClient] = []

    def connect(user: ImapUser, *, starttls: bool = False) -> IMAPClient:
        ctx = tls_context(user.cafile)
        if starttls:
            client = IMAPClient(user.server.starttls_host, port=user.server.starttls_port, ssl=False, timeout=30)
            client.starttls(ctx)
        else:
            client = IMAPClient(user.host, port=user.port, ssl=True, ssl_context=ctx, timeout=30)
        clients.append(client)
        client.plain_login(user.name, user.password)
        return client

    yield connect
    for client in clients:
        try:
            client.logout()
        except Exception:  # already logged out or broken by the test
            with contextlib.suppress(Exception):
                client.shutdown()


@pytest.fixture
def imap_client(imap_user: ImapUser, imap_client_factory: Callable[..., IMAPClient]) -> IMAPClient:
    """A logged-in client for ``imap_user``."""
    return imap_client_factory(imap_user)
