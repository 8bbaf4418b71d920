#!/usr/bin/env python3
"""A private, unprivileged Dovecot 2.3 IMAP server for tests and demos.

Stdlib only: it drives the ``dovecot`` and ``openssl`` binaries.  Tests import
it (``sys.path.insert(0, "<repo>/scripts"); import dovecot_server``); it is also
a CLI::

    python scripts/dovecot_server.py --dir DIR [--user NAME:PASSWORD ...] [--demo]

which prints one JSON line (port, starttls_port, cafile, dir) and serves until
SIGTERM/SIGINT.

Everything lives under one short directory (Unix socket paths over ~100 chars
fail, so pytest's deep ``tmp_path`` is not usable as base): the config, the
certificates, Dovecot's sockets and state, the passwd-files and the users'
homes.  Nothing from /etc/dovecot is included.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["CERT_KINDS", "DovecotError", "DovecotServer", "RawSession", "imap_utf7_encode"]

LISTEN_HOST = "127.0.0.1"
# Dovecot treats a client whose IP equals the server's IP as "secured" and
# then allows plaintext LOGIN even with disable_plaintext_auth (and even with
# ssl = required).  A client connecting to 127.0.0.2 comes from 127.0.0.1 on
# Linux, so the STARTTLS listener lives there to make STARTTLS enforced.
STARTTLS_HOST = "127.0.0.2"
START_TIMEOUT = 20.0
# SIGTERM first, SIGKILL to the group if the master has not exited by then.
STOP_GRACE = 3.0
STOP_TIMEOUT = 10.0
# Certificate kinds make_cert() can produce; "good" is what the server uses.
CERT_KINDS = ("good", "expired", "wronghost", "selfsigned")

_RUNNING: weakref.WeakSet[DovecotServer] = weakref.WeakSet()


class DovecotError(RuntimeError):
    """Dovecot (or openssl) failed; the message carries the log tail."""


def _stop_all_at_exit() -> None:
    # A test run that dies half way must not leave dovecot masters behind.
    for server in list(_RUNNING):
        server.stop()


atexit.register(_stop_all_at_exit)


def _free_port(host: str = LISTEN_HOST) -> int:
    # There is a small race between closing this socket and dovecot binding
    # the port; start() retries with fresh ports when the bind fails.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _can_bind(host: str) -> bool:
    try:
        _free_port(host)
        return True
    except OSError:  # e.g. macOS has only 127.0.0.1 on lo
        return False


def _greets(host: str, port: int, tls: bool) -> bool:
    """True once the listener answers with an IMAP greeting.

    Only an open port is not enough: imap-login greets after auth and stats
    are up, and a server stopped before that hangs ~5 s in shutdown.
    """
    try:
        with socket.create_connection((host, port), timeout=2) as raw:
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # readiness probe only
                with ctx.wrap_socket(raw) as conn:
                    return conn.recv(256).startswith(b"* OK")
            return raw.recv(256).startswith(b"* OK")
    except OSError:
        return False


def imap_utf7_encode(name: str) -> str:
    """Modified UTF-7 (RFC 3501 5.1.3): how Dovecot names folders on disk."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


# EC keys: RSA key generation made every server start ~1 s slower.
_KEY_ARGS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_@")


def _sleep_into_next_second() -> None:
    time.sleep(1.02 - time.time() % 1)


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DovecotError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


@dataclass
class RawSession:
    """One recorded session: (time, line) received from the client and sent to it."""

    received: list[tuple[float, str]]
    sent: list[tuple[float, str]]

    def commands(self) -> list[str]:
        """The client's command lines, without their tags."""
        return [line.partition(" ")[2] for _, line in self.received if line[:1] not in ("", "*", "+")]

    def when_received(self, needle: str) -> float:
        return next(time for time, line in self.received if needle in line)

    def when_sent(self, needle: str) -> float:
        return next(time for time, line in self.sent if needle in line)


def _rawlog_lines(path: Path) -> list[tuple[float, str]]:
    """Lines of a rawlog file: ``<unix time> <line>``; continuation lines
    (inside a literal) keep the time of the line before them."""
    lines: list[tuple[float, str]] = []
    when = 0.0
    for raw in path.read_bytes().split(b"\r\n") if path.exists() else []:
        stamp, _, rest = raw.partition(b" ")
        try:
            when, raw = float(stamp), rest
        except ValueError:
            pass
        if raw:
            lines.append((when, raw.decode("utf-8", "replace")))
    return lines


class DovecotServer:
    """One Dovecot instance on loopback with its own config, users and certs.

    Clients should connect to ``hostname`` ("localhost", which the certificate
    names) so that host-name verification is exercised, trusting ``cafile``.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        separator: str = "/",
        prefix: str = "",
        compress: bool = True,
        quota_bytes: int | None = None,
        plaintext_port: bool = True,
        hostname: str = "localhost",
        rawlog: bool = False,
        capabilities: str | None = None,
    ) -> None:
        if separator not in ("/", "."):
            raise ValueError("separator must be '/' or '.'")
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="mbd", dir="/tmp"))
        self.base_dir = self.base_dir.resolve()
        self.separator = separator
        self.prefix = prefix
        self.compress = compress
        self.quota_bytes = quota_bytes
        self.plaintext_port = plaintext_port
        self.hostname = hostname
        # Record every IMAP session, decrypted, as ~/rawlog/*.in and *.out (see rawlog_sessions).
        self.rawlog = rawlog
        # What the server advertises (Dovecot's `imap_capability`), to play a server without
        # some extension; None: Dovecot's own list.
        self.capabilities = capabilities
        self.host = LISTEN_HOST
        self.port = 0
        # Where the STARTTLS listener is; see STARTTLS_HOST.  If 127.0.0.2 is
        # unusable it falls back to 127.0.0.1 and starttls_enforced is False.
        self.starttls_host = STARTTLS_HOST if _can_bind(STARTTLS_HOST) else LISTEN_HOST
        self.starttls_enforced = self.starttls_host != LISTEN_HOST
        self.starttls_port = 0
        self.users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._cert_kind = "good"
        self._mail_uid, self._mail_gid, self._internal_user, self._login_user = self._choose_accounts()

    # ----------------------------------------------------------------- paths
    @property
    def conf_path(self) -> Path:
        return self.base_dir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "dovecot.log"

    @property
    def passwd_dir(self) -> Path:
        """One passwd-file per user (see add_user)."""
        return self.base_dir / "passwd.d"

    @property
    def cert_dir(self) -> Path:
        return self.base_dir / "certs"

    @property
    def cafile(self) -> Path:
        """PEM file clients should trust: the test CA that signed the certs."""
        return self.cert_dir / "ca.pem"

    @property
    def server_arg(self) -> str:
        """``host:port`` of the implicit-TLS listener, by name (not IP)."""
        return f"{self.hostname}:{self.port}"

    @property
    def starttls_server_arg(self) -> str:
        """``ip:port`` of the STARTTLS listener (an IP: see STARTTLS_HOST;
        the certificate names that IP, so verification still passes)."""
        return f"{self.starttls_host}:{self.starttls_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def mail_uid(self) -> int:
        """uid owning the mail files (not 0: Dovecot refuses root mail access)."""
        return self._mail_uid

    @property
    def mail_gid(self) -> int:
        return self._mail_gid

    def home(self, user: str) -> Path:
        return self.base_dir / "home" / user.lower()

    def maildir(self, user: str) -> Path:
        """The user's Maildir root (INBOX's cur/new/tmp live here)."""
        return self.home(user) / "Maildir"

    def folder_dir(self, user: str, folder: str) -> Path:
        """Directory of *folder* (a name as the client sees it, prefix and all).

        Dovecot stores names in modified UTF-7 on disk: LAYOUT=fs nests them
        ("a/b" -> Maildir/a/b), Maildir++ flattens them (".a.b").
        """
        name = folder[len(self.prefix) :] if self.prefix and folder.startswith(self.prefix) else folder
        if name.upper() == "INBOX" or name == "":
            return self.maildir(user)
        encoded = imap_utf7_encode(name)
        if self.separator == "/":
            return self.maildir(user).joinpath(*encoded.split("/"))
        return self.maildir(user) / ("." + encoded)

    def message_files(self, user: str) -> list[Path]:
        """Every stored message file of *user* (all folders, cur and new)."""
        root = self.maildir(user)
        if not root.exists():
            return []
        return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name in ("cur", "new"))

    def find_message_file(self, user: str, needle: bytes) -> Path:
        """The one stored file containing *needle* (e.g. a Message-ID)."""
        hits = [p for p in self.message_files(user) if needle in p.read_bytes()]
        if len(hits) != 1:
            raise LookupError(f"{len(hits)} message files contain {needle!r}")
        return hits[0]

    def fix_ownership(self, path: Path | None = None) -> None:
        """Give files a test wrote (as root) back to the mail user.

        Only needed when running as root: files the test process creates in a
        Maildir would otherwise be unreadable or unwritable for Dovecot.
        """
        if os.geteuid() != 0:
            return
        root = path or self.base_dir / "home"
        targets = [root, *root.rglob("*")] if root.is_dir() else [root]
        for target in targets:
            os.lchown(target, self._mail_uid, self._mail_gid)

    # -------------------------------------------------------------- accounts
    @staticmethod
    def _choose_accounts() -> tuple[int, int, str, str]:
        """(mail uid, mail gid, internal user, login user) for this process.

        Dovecot refuses mail access as uid 0 and imap-login refuses to run as
        root ("This process must not be run as root"), so as root the
        mailboxes and the login processes belong to ``nobody`` while the
        internal services run as root; otherwise everything runs as the
        calling user.
        """
        if os.geteuid() != 0:
            name = pwd.getpwuid(os.geteuid()).pw_name
            return os.geteuid(), os.getegid(), name, name
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            raise DovecotError("running as root needs a 'nobody' account for mail") from None
        return nobody.pw_uid, nobody.pw_gid, "root", nobody.pw_name

    # ----------------------------------------------------------------- users
    def add_user(self, name: str, password: str) -> None:
        """Add or update a user; takes effect at once while running.

        One passwd-file per user (``passwd.d/<name>``): Dovecot stats a
        passwd-file at most once per second, so edits to a shared file are
        missed by a login in the same second; a new per-user file is read on
        first use.  Changing an existing user's password waits for the next
        second for the same reason.
        """
        key = self._user_key(name)
        if any(ch in password for ch in ":\n\r\0"):
            raise ValueError("passwords may not contain ':', CR, LF or NUL")
        with self._lock:
            existed = key in self.users
            self.users[key] = password
            home = self.home(key)
            home.mkdir(parents=True, exist_ok=True)
            self._chown(home)
            if self.rawlog:
                (home / "rawlog").mkdir(exist_ok=True)
                self._chown(home / "rawlog")
            self._write_passwd(key)
            if existed:
                _sleep_into_next_second()

    def rawlog_sessions(self, user: str) -> list[RawSession]:
        """With ``rawlog=True``: every IMAP session of `user` after login, in the
        order they started, as Dovecot recorded it (decrypted, each line with
        the time it was received or sent)."""
        sessions = []
        for path in sorted((self.home(self._user_key(user)) / "rawlog").glob("*.in")):
            sessions.append(RawSession(_rawlog_lines(path), _rawlog_lines(path.with_suffix(".out"))))
        return sessions

    def remove_user(self, name: str) -> None:
        key = self._user_key(name)
        with self._lock:
            if self.users.pop(key, None) is not None:
                (self.passwd_dir / key).unlink(missing_ok=True)
                _sleep_into_next_second()

    @staticmethod
    def _user_key(name: str) -> str:
        # Dovecot lower-cases login names (auth_username_format = %Lu) and
        # allows only these characters by default (auth_username_chars).
        key = name.lower()
        if not key or key.startswith(".") or not set(key) <= _USERNAME_CHARS:
            raise ValueError(f"user name {name!r}: use only a-z 0-9 . - _ @")
        return key

    def _write_passwd(self, key: str) -> None:
        self.passwd_dir.mkdir(exist_ok=True)
        line = f"{key}:{{PLAIN}}{self.users[key]}:{self._mail_uid}:{self._mail_gid}::{self.home(key)}::\n"
        path = self.passwd_dir / key
        tmp = path.with_name(key + ".tmp")
        tmp.write_text(line, encoding="utf-8")
        # Dovecot reloads when mtime (whole seconds) or size differ: make a
        # same-size rewrite within one second visible too.
        old = int(path.stat().st_mtime) if path.exists() else 0
        mtime = max(int(time.time()), old + 1)
        os.utime(tmp, (mtime, mtime))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self._mail_uid, self._mail_gid)

    # ----------------------------------------------------------------- certs
    def make_cert(self, kind: str = "good") -> tuple[Path, Path]:
        """Create (once) and return ``(certfile, keyfile)`` of one kind.

        All but "selfsigned" are signed by the test CA in ``cafile``, so each
        fails verification for exactly one reason: "expired" (validity ended
        in 2021), "wronghost" (names only wrong.example.invalid), "selfsigned"
        (valid names, not signed by the CA).
        """
        if kind not in CERT_KINDS:
            raise ValueError(f"kind must be one of {CERT_KINDS}")
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self.cert_dir / f"{kind}.pem", self.cert_dir / f"{kind}.key"
        if cert.exists() and key.exists():
            return cert, key
        if kind == "selfsigned":
            self._openssl_selfsigned(cert, key, f"/CN={self.hostname}", self._san(self.hostname))
        else:
            self._ensure_ca()
            name = "wrong.example.invalid" if kind == "wronghost" else self.hostname
            san = "subjectAltName=DNS:wrong.example.invalid" if kind == "wronghost" else self._san(name)
            dates = ("20200101000000Z", "20210101000000Z") if kind == "expired" else None
            self._openssl_signed(cert, key, f"/CN={name}", san, dates)
        return cert, key

    @staticmethod
    def _san(hostname: str) -> str:
        names = {f"DNS:{hostname}", "DNS:localhost", f"IP:{LISTEN_HOST}", f"IP:{STARTTLS_HOST}"}
        return "subjectAltName=" + ",".join(sorted(names))

    def _ensure_ca(self) -> None:
        if not self.cafile.exists():
            _run(
                [
                    "openssl", "req", "-x509", *_KEY_ARGS, "-nodes", "-sha256",
                    "-days", "3650", "-subj", "/CN=mailbackup test CA",
                    "-keyout", str(self.cert_dir / "ca.key"), "-out", str(self.cafile),
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                ]
            )  # fmt: skip

    @staticmethod
    def _openssl_selfsigned(cert: Path, key: Path, subj: str, san: str) -> None:
        _run(
            [
                "openssl", "req", "-x509", *_KEY_ARGS, "-nodes", "-sha256",
                "-days", "3650", "-subj", subj, "-addext", san,
                "-keyout", str(key), "-out", str(cert),
            ]
        )  # fmt: skip

    def _openssl_signed(self, cert: Path, key: Path, subj: str, san: str, dates: tuple[str, str] | None) -> None:
        """Leaf certificate signed by the CA; ``openssl ca`` because only it
        can back-date (``x509 -days`` cannot be negative in OpenSSL 3.0)."""
        work = Path(tempfile.mkdtemp(prefix="ca", dir=self.cert_dir))
        try:
            csr = work / "req.csr"
            _run(["openssl", "req", "-new", *_KEY_ARGS, "-nodes", "-subj", subj,
                  "-keyout", str(key), "-out", str(csr)])  # fmt: skip
            (work / "index.txt").write_text("")
            (work / "ext.cnf").write_text(
                "[ca]\ndefault_ca = test\n[test]\n"
                f"dir = {work}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir\n"
                "serial = $dir/serial\ndefault_md = sha256\npolicy = any\n"
                "unique_subject = no\ncopy_extensions = none\nx509_extensions = leaf\n"
                "[any]\ncommonName = supplied\n"
                f"[leaf]\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature,keyEncipherment\n"
                f"extendedKeyUsage = serverAuth\n{san.replace('subjectAltName=', 'subjectAltName = ')}\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
            )
            (work / "serial").write_text(f"{time.time_ns():x}".rjust(16, "0") + "\n")
            cmd = ["openssl", "ca", "-batch", "-config", str(work / "ext.cnf"), "-notext",
                   "-cert", str(self.cafile), "-keyfile", str(self.cert_dir / "ca.key"),
                   "-in", str(csr), "-out", str(cert)]  # fmt: skip
            if dates:
                cmd += ["-startdate", dates[0], "-enddate", dates[1]]
            else:
                cmd += ["-days", "3650"]
            _run(cmd)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def use_cert(self, kind: str) -> None:
        """Serve another certificate kind from now on (reloads a running server)."""
        self.make_cert(kind)
        self._cert_kind = kind
        if self.running:
            self._write_config()
            self.reload()

    def reload(self) -> None:
        """SIGHUP the master: re-reads the config, new logins use it."""
        if self._proc is not None:
            mark = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._proc.send_signal(signal.SIGHUP)
            self._wait_for_log("SIGHUP received", since=mark)

    # ---------------------------------------------------------------- config
    def _config_text(self) -> str:
        cert, key = self.make_cert(self._cert_kind)
        layout = ":LAYOUT=fs" if self.separator == "/" else ""
        mail_plugins = ["quota"] if self.quota_bytes is not None else []
        imap_plugins = (["imap_zlib"] if self.compress else []) + (
            ["imap_quota"] if self.quota_bytes is not None else []
        )
        quota = ""
        if self.quota_bytes is not None:
            # The "count" backend keeps no maildirsize file in the Maildir,
            # so tests that scan the Maildir see only mail.
            quota = (
                "plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n"
                f"  quota_rule = *:storage={self.quota_bytes}B\n}}\n"
            )
        imaps_listener = (
            f"  inet_listener imaps {{\n    address = {self.host}\n    port = {self.port}\n    ssl = yes\n  }}\n"
        )
        imap_listener = (
            f"  inet_listener imap {{\n    address = {self.starttls_host}\n    port = {self.starttls_port}\n  }}\n"
            if self.plaintext_port
            else "  inet_listener imap {\n    port = 0\n  }\n"
        )
        return f"""# Generated by scripts/dovecot_server.py; self-contained, includes nothing.
base_dir = {self.base_dir}/run
state_dir = {self.base_dir}/state
instance_name = mbd-{self.base_dir.name}
log_path = {self.log_path}
protocols = imap
listen = {self.host}
shutdown_clients = yes

default_internal_user = {self._internal_user}
default_internal_group = {grp.getgrgid(os.getegid()).gr_name}
default_login_user = {self._login_user}
# Allow system-range and container uids/gids (but never 0 for mail).
first_valid_uid = 1
first_valid_gid = 0

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_verbose = yes
# Tests try wrong passwords on purpose; the default 2 s penalty only slows them.
auth_failure_delay = 0

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd_dir}/%u
}}

mail_location = maildir:~/Maildir{layout}
mail_max_userip_connections = 50
mail_plugins = $mail_plugins {" ".join(mail_plugins)}
namespace inbox {{
  inbox = yes
  separator = {self.separator}
  prefix = {self.prefix}
}}
protocol imap {{
  mail_plugins = $mail_plugins {" ".join(imap_plugins)}
{"  rawlog_dir = %h/rawlog" if self.rawlog else ""}
{f"  imap_capability = {self.capabilities}" if self.capabilities else ""}
}}
{quota}
service imap-login {{
  # An unprivileged master cannot chroot.
  chroot =
{imaps_listener}{imap_listener}}}
service anvil {{
  chroot =
  # Auth penalty (delaying logins from an IP after a failed one, 2-15 s)
  # would slow tests that try wrong passwords: unreachable anvil disables it.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth-worker {{
  user = $default_internal_user
}}
"""

    def _write_config(self) -> None:
        tmp = self.conf_path.with_suffix(".tmp")
        tmp.write_text(self._config_text(), encoding="utf-8")
        os.replace(tmp, self.conf_path)

    # ------------------------------------------------------------- lifecycle
    def start(self) -> DovecotServer:
        if self.running:
            return self
        if shutil.which("dovecot") is None:
            raise DovecotError("the dovecot binary is not installed (apt-get install dovecot-imapd)")
        self._prepare_dirs()
        last: DovecotError | None = None
        for _attempt in range(3):
            self.port = _free_port()
            self.starttls_port = _free_port(self.starttls_host) if self.plaintext_port else 0
            self._write_config()
            try:
                self._launch()
                _RUNNING.add(self)
                return self
            except DovecotError as exc:  # most likely a port grabbed meanwhile
                last = exc
        assert last is not None
        raise last

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # As root the mail uid ("nobody") must traverse into base_dir/home.
        os.chmod(self.base_dir, 0o711 if os.geteuid() == 0 else 0o700)
        (self.base_dir / "home").mkdir(exist_ok=True)
        os.chmod(self.base_dir / "home", 0o711 if os.geteuid() == 0 else 0o700)
        self.passwd_dir.mkdir(exist_ok=True)

    def _launch(self) -> None:
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.base_dir / "dovecot.stderr", "ab"),  # noqa: SIM115 - child owns it
            start_new_session=True,  # its own process group: stop() can reap stragglers
        )
        deadline = time.monotonic() + START_TIMEOUT
        listeners = [(self.host, self.port, True)]
        if self.plaintext_port:
            listeners.append((self.starttls_host, self.starttls_port, False))
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise DovecotError("dovecot exited during start:\n" + self.log_tail(since=mark))
            if all(_greets(*listener) for listener in listeners):
                return
            time.sleep(0.05)
        self.stop(remove_dir=False)
        raise DovecotError(f"dovecot did not listen within {START_TIMEOUT}s:\n" + self.log_tail(since=mark))

    def stop(self, remove_dir: bool | None = None) -> None:
        """Stop dovecot (and its children). A temp dir we made is removed
        unless ``remove_dir=False``; a caller's ``base_dir`` is kept."""
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                # The master is still alive, so its pid is still our group
                # id: kill the whole group (master and children) by that id.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
        if remove_dir if remove_dir is not None else self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------- log
    def log_tail(self, lines: int = 40, since: int = 0) -> str:
        text = ""
        for path in (self.log_path, self.base_dir / "dovecot.stderr"):
            if path.exists():
                with open(path, "rb") as fh:
                    fh.seek(since if path == self.log_path else 0)
                    text += fh.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def _wait_for_log(self, needle: str, since: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as fh:
                fh.seek(since)
                if needle.encode() in fh.read():
                    # The master logs first, then restarts services.
                    time.sleep(0.2)
                    return
            time.sleep(0.05)
        raise DovecotError(f"no {needle!r} in the dovecot log:\n" + self.log_tail(since=since))


# ---------------------------------------------------------------------- CLI
DEMO_USER = "demo@coj.go.th"
DEMO_PASSWORD = "demo-รหัส"


def _load_demo(server: DovecotServer) -> None:
    """Fill the demo user's mailbox over IMAP (needs imapclient)."""
    from imapclient import IMAPClient  # only the demo needs it

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sample_mail

    server.add_user(DEMO_USER, DEMO_PASSWORD)
    ctx = ssl.create_default_context(cafile=str(server.cafile))
    with IMAPClient(server.hostname, port=server.port, ssl=True, ssl_context=ctx, timeout=60) as client:
        client.plain_login(DEMO_USER, DEMO_PASSWORD)
        sample_mail.fill_mailbox(client, sample_mail.demo_mailbox(), server.separator, server.prefix)
        client.logout()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="server directory (default: a new short temp dir)")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--demo", action="store_true", help=f"add {DEMO_USER} with a sample Thai mailbox")
    parser.add_argument("--separator", default="/", choices=["/", "."])
    parser.add_argument("--prefix", default="")
    parser.add_argument("--quota-bytes", type=int)
    args = parser.parse_args(argv)

    server = DovecotServer(args.dir, separator=args.separator, prefix=args.prefix, quota_bytes=args.quota_bytes)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    try:
        for spec in args.user:
            name, sep, password = spec.partition(":")
            if not sep:
                parser.error(f"--user needs NAME:PASSWORD, got {spec!r}")
            server.add_user(name, password)
        if args.demo:
            _load_demo(server)
        info = {
            "port": server.port,
            "starttls_port": server.starttls_port,
            "starttls_host": server.starttls_host,
            "cafile": str(server.cafile),
            "dir": str(server.base_dir),
            "host": server.hostname,
        }
        print(json.dumps(info), flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print("dovecot exited:\n" + server.log_tail(), file=sys.stderr)
                return 1
    finally:
        server.stop(remove_dir=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
