"""Open an encrypted, authenticated IMAP connection, and translate what can go
wrong on the way into our error hierarchy.

Rules kept here: TLS is verified (certificate and host name) unless the user
asked for ``--insecure``; a password is never sent before the connection is
encrypted; non-ASCII passwords go through AUTHENTICATE PLAIN in UTF-8
because imaplib's LOGIN encodes passwords as ASCII.  A refused login is
reported by its response code and our own words, never the server's (which
may repeat the password); a server that breaks the protocol while we log in
is reported as that (exit 9), not as a wrong password.
"""

from __future__ import annotations

import errno
import imaplib
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import imapclient
from imapclient import exceptions as imap_exceptions

from mailbackup.errors import (
    AuthError,
    ConnectError,
    ConnectionLost,
    MailbackupError,
    ServerError,
    TLSError,
)
from mailbackup.i18n import N_, _
from mailbackup.imap import compress, wire
from mailbackup.imap.pushback import busy_error
from mailbackup.imap.redact import NO_REDACTION, Redaction
from mailbackup.model import ConnectionSettings, TLSMode
from mailbackup.text import system_error

log = logging.getLogger(__name__)

TLS_HINT = N_("use --cafile FILE to trust the server's certificate authority, or --insecure to skip the check")
TARGET_TLS_HINT = N_("use --to-cafile FILE to trust the target server's certificate authority, or --to-insecure "
                     "to skip the check")
# Circular ศย ๐๑๓/ว ๓๓๙: a forgotten password goes through the unit's computer officer.
LOGIN_HINT = N_("check the password (`mailbackup auth set` stores a new one); if it is forgotten, give your name, "
                "surname and ID-card number to your unit's computer officer, who asks the mail administrator "
                "(mailadmin@coj.go.th) for a new one")
# RFC 5530 codes a login refusal carries, each with our own words for it.
REFUSALS = {
    "AUTHENTICATIONFAILED": N_("the server did not accept the user name and password"),
    "AUTHORIZATIONFAILED": N_("the account may not log in"),
    "EXPIRED": N_("the password has expired"),
    "PRIVACYREQUIRED": N_("the server wants a more secure connection"),
    "CONTACTADMIN": N_("the mail administrator has to look at this account"),
}
OTHER_REFUSAL = N_("the server refused the login")
RESPONSE_CODE = re.compile(r"\s*\[([A-Za-z][A-Za-z0-9-]{0,39})[\] ]")


# One context per CA file (as it is on disk) and mode, shared by every connection of the process:
# building one loads and parses the CA certificates, a fixed cost that a sweep paid per account.
# An SSLContext may wrap sockets from many threads at once.
_ContextKey = tuple[bool, str | None, int, int]
_contexts: dict[_ContextKey, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def make_ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    key = _context_key(settings)
    with _contexts_lock:
        context = _contexts.get(key)
        if context is None:
            context = _contexts[key] = _new_ssl_context(settings)
        return context


def _context_key(settings: ConnectionSettings) -> _ContextKey:
    """A CA file replaced on disk (a renewed certificate) gets a new context."""
    if settings.insecure or settings.cafile is None:
        return settings.insecure, None, 0, 0
    try:
        found = os.stat(settings.cafile)
    except OSError:
        return False, settings.cafile, -1, -1  # loading it reports the error, which is never kept
    return False, settings.cafile, found.st_mtime_ns, found.st_size


def _new_ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    if settings.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=settings.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(_("cannot load CA file {path}: {error}").format(path=settings.cafile, error=exc)) from None


def open_client(settings: ConnectionSettings, connected: Callable[[], None] | None = None) -> imapclient.IMAPClient:
    """Connect and secure the channel; no credentials are sent here.
    `connected` is called once the server accepted the TCP connection."""
    context = make_ssl_context(settings)
    implicit = settings.tls_mode is TLSMode.IMPLICIT
    with translate_errors(settings):
        announcing = cast(ssl.SSLContext, _Announcing(context, connected)) if connected else context
        client = imapclient.IMAPClient(settings.server.host, settings.server.port, ssl=implicit,
                                       ssl_context=announcing if implicit else None, timeout=settings.timeout)
        if connected is not None and not implicit:
            connected()
        wire.limit_responses(client)
        if not implicit:
            _start_tls(client, context, settings)
        wire.watch_progress(client, settings.timeout, str(settings.server))
    client.normalise_times = False  # keep INTERNALDATE's own time zone
    _send_at_once(client)
    return client


class _Announcing:
    """The context imapclient secures its new socket with: it tells first that
    the TCP connection is made (imapclient offers no other moment)."""

    def __init__(self, context: ssl.SSLContext, connected: Callable[[], None]) -> None:
        self._context, self._connected = context, connected

    def wrap_socket(self, sock: socket.socket, **options: Any) -> ssl.SSLSocket:
        self._connected()
        return self._context.wrap_socket(sock, **options)


def _send_at_once(client: imapclient.IMAPClient) -> None:
    """No Nagle delay: every command we send is whole, and several go out
    back to back without waiting for answers (pipelining).  Under Nagle the
    second would wait for the first to be acknowledged: a round trip."""
    sock = wire.socket_of(client)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    except (AttributeError, OSError):  # not a TCP socket (a test's socketpair): nothing to do
        log.debug("TCP_NODELAY not set", exc_info=True)


def _start_tls(client: imapclient.IMAPClient, context: ssl.SSLContext, settings: ConnectionSettings) -> None:
    if not client.has_capability("STARTTLS"):
        client.shutdown()
        raise TLSError(
            _("{server} does not offer STARTTLS; refusing to continue unencrypted").format(server=settings.server),
            hint=_("use implicit TLS on port 993 without --starttls"),
        )
    replies = _recording_replies(client)
    try:
        client.starttls(context)
    except imaplib.IMAP4.abort:
        raise
    except (imap_exceptions.IMAPClientError, imaplib.IMAP4.error) as exc:
        client.shutdown()
        # imaplib replaces a tagged NO with its own "Couldn't establish TLS session": show the server's words.
        reply = replies[-1] if replies else _server_text(exc)
        raise TLSError(_("{server} refused STARTTLS ({reply}); refusing to continue unencrypted").format(
            server=settings.server, reply=reply)) from None
    finally:
        vars(client._imap).pop("_simple_command", None)


def _recording_replies(client: imapclient.IMAPClient) -> list[str]:
    """The text of each tagged reply imaplib's commands get from now on, until
    the instance attribute set here is removed."""
    imap = client._imap
    original = imap._simple_command
    replies: list[str] = []

    def recording(name: str, *args: object) -> tuple[str, list[object]]:
        typ, data = original(name, *args)
        replies.append(" ".join(_text_of(item) for item in data if item is not None).strip() or typ)
        return typ, data

    imap._simple_command = recording
    return replies


def _text_of(item: object) -> str:
    text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    return " ".join(text.split())[:300]


def login(client: imapclient.IMAPClient, settings: ConnectionSettings, account: str, password: str) -> float:
    """Authenticate: AUTHENTICATE PLAIN (UTF-8) when offered, else LOGIN; LOGIN
    also when AUTHENTICATE fails otherwise than by a NO and the password is ASCII.
    Returns the seconds it took: a round trip (two with LOGIN after a refusal),
    the server's own time included."""
    if not _is_encrypted(client):
        raise TLSError(_("refusing to send a password over an unencrypted connection"))
    redaction = Redaction.of(account, password)
    started = time.monotonic()
    with translate_errors(settings, redaction=redaction):
        reply = _authenticate(client, settings, account, password)
    if reply.status != "OK":
        raise _refusal(settings, account, reply, redaction)
    return time.monotonic() - started


def settle(client: imapclient.IMAPClient, settings: ConnectionSettings, redaction: Redaction) -> bool:
    """After the login: compression where it pays, CONDSTORE on; True when compressed."""
    with translate_errors(settings, redaction=redaction):
        compressed = _maybe_compress(client, settings)
        _enable_condstore(client)
    return compressed


def _enable_condstore(client: imapclient.IMAPClient) -> None:
    """SELECT reports HIGHESTMODSEQ only once CONDSTORE is on; a STATUS asking
    for it switches it on implicitly, but a first sync skips STATUS."""
    if client.has_capability("ENABLE") and client.has_capability("CONDSTORE"):
        # Not waited for: its answer is read with the next command's (imaplib keeps
        # each tag's), a round trip saved per connection; a refusal changes nothing
        # we rely on (HIGHESTMODSEQ absent is handled: no CONDSTORE).
        wire.send_only(client, "ENABLE", "CONDSTORE")


def _maybe_compress(client: imapclient.IMAPClient, settings: ConnectionSettings) -> bool:
    if not compress.worth_compressing(settings.server.host, settings.compress):
        return False
    if not client.has_capability("COMPRESS=DEFLATE"):
        return False
    return compress.start(client)


def _authenticate(client: imapclient.IMAPClient, settings: ConnectionSettings, account: str,
                  password: str) -> wire.Reply:
    if client.has_capability("AUTH=PLAIN"):
        try:
            reply = wire.authenticate_plain(client, account, password)
        except imaplib.IMAP4.abort as exc:
            if wire.connection_closed(exc):
                raise  # the connection went away: a reconnect may cure it
            reply = wire.Reply("BAD", "")  # a line that is not IMAP
        if reply.status in ("OK", "NO") or not password.isascii():
            return reply
        log.debug("AUTHENTICATE PLAIN answered %s; trying LOGIN", reply.status)
        try:
            fallback = wire.login_command(client, account, password)
        except imaplib.IMAP4.error:  # broken again: AUTHENTICATE's answer tells what happened first
            return reply
        return reply if fallback.status == "BAD" else fallback
    if not password.isascii():
        raise AuthError(
            _("{server} offers no AUTHENTICATE PLAIN, and its LOGIN cannot carry a non-ASCII password").format(
                server=settings.server),
        )
    return wire.login_command(client, account, password)


def _refusal(settings: ConnectionSettings, account: str, reply: wire.Reply, redaction: Redaction) -> MailbackupError:
    """What a login answered with NO or BAD means, in our words and the response code only."""
    text = redaction.server_text(reply.text)
    busy = busy_error(str(settings.server), text)  # NO [LIMIT], [UNAVAILABLE], throttled: not a wrong password
    if busy is not None:
        return busy
    match = RESPONSE_CODE.match(reply.text)
    code = match.group(1).upper() if match and not redaction.contains(match.group(1)) else ""
    if reply.status != "NO":
        return ServerError(_("{server} broke the protocol while logging in (it answered {status}{code}); this "
                             "says nothing about the password").format(
            server=settings.server, status=reply.status, code=f" [{code}]" if code else ""))
    reason = _(REFUSALS.get(code, OTHER_REFUSAL))
    return AuthError(_("login refused for {account} on {server}: {reply}").format(
        account=account, server=settings.server, reply=f"[{code}] {reason}" if code else reason),
        hint=_(LOGIN_HINT))


def _is_encrypted(client: imapclient.IMAPClient) -> bool:
    return isinstance(wire.socket_of(client), ssl.SSLSocket)


@contextmanager
def translate_errors(settings: ConnectionSettings, *, redaction: Redaction = NO_REDACTION) -> Iterator[None]:
    """Turn socket, TLS and imapclient exceptions into one-line MailbackupErrors
    (the server's words with the password masked, see redact.py)."""
    server = settings.server
    try:
        yield
    except MailbackupError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise TLSError(_("certificate of {server} not trusted: {reason}").format(
            server=server, reason=exc.verify_message), hint=tls_hint(settings)) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError):
        raise ConnectionLost(_("connection to {server} lost during the TLS exchange").format(server=server)) from None
    except ssl.SSLError as exc:
        raise TLSError(_("TLS handshake with {server} failed: {reason}").format(
            server=server, reason=exc.reason or exc), hint=tls_hint(settings)) from None
    except socket.gaierror:
        raise ConnectError(_("cannot find server {host}").format(host=server.host),
                           hint=_("check the name and your network")) from None
    except ConnectionRefusedError:
        raise ConnectError(_("connection to {server} refused").format(server=server),
                           hint=_("check the host and port")) from None
    except TimeoutError:
        raise ConnectionLost(_("{server} did not answer within {seconds:g} seconds").format(
            server=server, seconds=settings.timeout)) from None
    except imaplib.IMAP4.abort as exc:
        reply = _server_text(exc, redaction)
        raise busy_error(str(server), reply) or ConnectionLost(
            _("connection to {server} lost: {reply}").format(server=server, reply=reply)) from None
    except (imap_exceptions.IMAPClientError, imaplib.IMAP4.error) as exc:
        reply = _server_text(exc, redaction)
        raise busy_error(str(server), reply) or ServerError(
            _("{server} refused: {reply}").format(server=server, reply=reply)) from None
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            raise ConnectError(_("cannot reach {server}: {error}").format(
                server=server, error=system_error(exc))) from None
        raise ConnectionLost(_("connection to {server} failed: {error}").format(
            server=server, error=system_error(exc))) from None


def tls_hint(settings: ConnectionSettings) -> str:
    """The options that cure a certificate problem, as spelled for this connection's command."""
    return _(TARGET_TLS_HINT) if settings.target else _(TLS_HINT)


def _server_text(exc: BaseException, redaction: Redaction = NO_REDACTION) -> str:
    """The server's words in `exc`, on one line, the password masked before they are cut to 300 characters."""
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return " ".join(redaction.server_text(text).split())[:300] or type(exc).__name__


def close_quietly(client: imapclient.IMAPClient, *, logout: bool = True) -> None:
    """LOGOUT (unless told not to) and close; a connection already broken is simply dropped."""
    try:
        if logout:
            wire.send_logout(client)
        client.shutdown()
    except Exception:
        log.debug("closing the IMAP connection failed", exc_info=True)
