#!/usr/bin/env python3
"""Other real IMAP servers, run unprivileged on loopback, for the compatibility suite.

Stdlib only (like ``dovecot_server.py``, whose test CA and readiness probe it
reuses).  Debian lets one ``imap-server`` package be installed at a time and
Dovecot is that one here, so the others are fetched with ``apt-get download``
and unpacked with ``dpkg-deb -x`` into a private prefix (``.compat/root`` in
the repository, git-ignored); hoodiecrow comes from npm into ``.compat/node``.
Their shared libraries do not conflict and are installed normally by
``scripts/setup_compat.sh``, which runs ``python3 scripts/compat_servers.py
install`` for the rest.

Each server class starts one instance in a short temp directory with its own
config, a certificate signed by the same test CA as Dovecot's, on a free port
of 127.0.0.1 (implicit TLS), in its own process group, and waits for the
greeting.  ``add_user`` returns a :class:`CompatAccount` a client can use at
once.  ``python3 scripts/compat_servers.py serve NAME`` runs one by hand and
prints its port, CA file and a test login as JSON.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dovecot_server import DovecotServer, _free_port, _greets

__all__ = ["SERVERS", "CompatAccount", "CompatError", "CompatServer", "install", "missing"]

REPO = Path(__file__).resolve().parent.parent
COMPAT_DIR = Path(os.environ.get("MAILBACKUP_COMPAT_DIR", REPO / ".compat"))
PREFIX = COMPAT_DIR / "root"
NODE_DIR = COMPAT_DIR / "node"
HOST = "127.0.0.1"
HOSTNAME = "localhost"
START_TIMEOUT = 30.0
STOP_GRACE = 3.0

# Packages unpacked into PREFIX (they conflict with dovecot-imapd as installed
# packages, not as files).  Their libraries are in setup_compat.sh.
DEBIAN_PACKAGES = {
    "cyrus": ["cyrus-common", "cyrus-imapd"],
    "courier": ["courier-base", "courier-imap", "courier-authlib", "courier-authlib-userdb"],
    "mailutils": ["mailutils-imap4d"],
}
NPM_PACKAGES = {"hoodiecrow": "hoodiecrow-imap@2.1.0"}

_RUNNING: weakref.WeakSet[CompatServer] = weakref.WeakSet()


class CompatError(RuntimeError):
    """A compat server failed to install or start; the message says why."""


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_RUNNING):
        server.stop()


@dataclass(frozen=True)
class CompatAccount:
    """A login on a compat server: what ``--server``/``--cafile`` and the password env need."""

    name: str
    password: str
    host: str
    port: int
    cafile: Path

    @property
    def server_arg(self) -> str:
        return f"{self.host}:{self.port}"


def _mail_owner() -> tuple[int, int, str, str]:
    """(uid, gid, user, group) the servers keep mail as: ``nobody`` when we are root."""
    entry = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    import grp

    return entry.pw_uid, entry.pw_gid, entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if os.geteuid() != 0:
        return
    for path in [root, *root.rglob("*")]:
        os.lchown(path, uid, gid)


def _library_env() -> dict[str, str]:
    # The unpacked binaries find their own private libraries (libcyrus*.so, libcourierauth.so) here.
    dirs = [PREFIX / "usr/lib/x86_64-linux-gnu", PREFIX / "usr/lib", PREFIX / "usr/lib/courier-authlib"]
    found = [str(path) for path in dirs if path.is_dir()]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join([*found, os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":")}


class CompatServer:
    """Base: one server process group in ``base_dir``, TLS on a free loopback port."""

    name = ""
    #: files under PREFIX (or NODE_DIR) that must exist to run it
    needs: tuple[Path, ...] = ()

    def __init__(self, base_dir: Path | None = None) -> None:
        self._own_dir = base_dir is None
        self.base_dir = (base_dir or Path(tempfile.mkdtemp(prefix=f"mbc{self.name[:2]}", dir="/tmp"))).resolve()
        self.port = 0
        self.users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.uid, self.gid, self.user, self.group = _mail_owner()

    # ------------------------------------------------------------- helpers
    @property
    def cafile(self) -> Path:
        return self.base_dir / "certs" / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def server_arg(self) -> str:
        return f"{HOSTNAME}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def login_name(self, number: int) -> str:
        """The test login for account *number* in the form this server takes."""
        return f"u{number}@coj.go.th"

    def account(self, name: str) -> CompatAccount:
        return CompatAccount(name, self.users[name], HOSTNAME, self.port, self.cafile)

    def _make_cert(self) -> tuple[Path, Path]:
        # The same CA-signed "good" certificate Dovecot serves (names localhost and 127.0.0.1).
        return DovecotServer(self.base_dir).make_cert("good")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])

    # ----------------------------------------------------------- lifecycle
    def start(self) -> CompatServer:
        reason = missing(self.name)
        if reason:
            raise CompatError(reason)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        cert, key = self._make_cert()
        last: CompatError | None = None
        for _attempt in range(3):  # a free port can be taken before the server binds it
            self.port = _free_port()
            command = self._prepare(cert, key)
            try:
                self._launch(command)
                _RUNNING.add(self)
                return self
            except CompatError as exc:
                last = exc
        assert last is not None
        raise last

    def _prepare(self, cert: Path, key: Path) -> list[str]:
        """Write the config for ``self.port``; return the command to run."""
        raise NotImplementedError

    def _launch(self, command: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          cwd=self.base_dir, env=_library_env(), start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise CompatError(f"{self.name} exited during start:\n{self.log_tail()}")
            if _greets(HOST, self.port, tls=True):
                return
            time.sleep(0.1)
        self.stop(remove_dir=False)
        raise CompatError(f"{self.name} did not greet within {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def stop(self, remove_dir: bool | None = None) -> None:
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is not None:
            # The group outlives a master that forked workers: signal all of it.
            for signum, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(proc.pid, signum)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
                if signum == signal.SIGTERM:
                    try:  # workers left behind by the master
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                break
        if remove_dir if remove_dir is not None else self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> CompatServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --------------------------------------------------------------- users
    def add_user(self, name: str, password: str) -> CompatAccount:
        with self._lock:
            self.users[name] = password
            self._add_user(name, password)
        return self.account(name)

    def _add_user(self, name: str, password: str) -> None:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError


# ------------------------------------------------------------------ Cyrus
CYRUS_BIN = PREFIX / "usr/lib/cyrus/bin"


class CyrusServer(CompatServer):
    """Cyrus IMAP 3.6: ``master`` with absolute ``cmd=`` paths, sasldb logins,
    INBOX created at first login (``autocreate_quota: 0``)."""

    name = "cyrus"
    needs = (CYRUS_BIN / "master", CYRUS_BIN / "imapd")

    def _prepare(self, cert: Path, key: Path) -> list[str]:
        base = self.base_dir
        for sub in ("conf", "partition", "run"):
            (base / sub).mkdir(exist_ok=True)
        conf = base / "imapd.conf"
        conf.write_text(f"""# Generated by scripts/compat_servers.py
configdirectory: {base}/conf
defaultpartition: default
partition-default: {base}/partition
cyrus_user: {self.user}
cyrus_group: {self.group}
servername: {HOSTNAME}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {base}/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: 0
autocreate_quota: 0
tls_server_cert: {cert}
tls_server_key: {key}
syslog_prefix: mailbackup-compat-cyrus
""", encoding="utf-8")
        (base / "cyrus.conf").write_text(f"""START {{
  recover cmd="{CYRUS_BIN}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imaps cmd="{CYRUS_BIN}/imapd -s -C {conf}" listen="{HOST}:{self.port}" prefork=0
}}
EVENTS {{
}}
DAEMON {{
}}
""", encoding="utf-8")
        self._write_sasldb_owner()
        _chown_tree(base, self.uid, self.gid)
        return [str(CYRUS_BIN / "master"), "-D", "-C", str(conf), "-M", str(base / "cyrus.conf"),
                "-p", str(base / "run/master.pid")]

    def _write_sasldb_owner(self) -> None:
        sasldb = self.base_dir / "sasldb2"
        if not sasldb.exists():  # imapd opens it read-only and fails on a missing file
            self._saslpasswd("mailbackup-placeholder", os.urandom(12).hex())

    def _saslpasswd(self, name: str, password: str) -> None:
        done = subprocess.run(["saslpasswd2", "-f", str(self.base_dir / "sasldb2"), "-c", "-p", "-u", HOSTNAME, name],
                              input=password.encode("utf-8"), capture_output=True, check=False)
        if done.returncode != 0:
            raise CompatError(f"saslpasswd2 failed: {done.stderr.decode('utf-8', 'replace').strip()}")
        _chown_tree(self.base_dir / "sasldb2", self.uid, self.gid)

    def login_name(self, number: int) -> str:
        return f"u{number}"  # without virtdomains Cyrus takes no domain part

    def _add_user(self, name: str, password: str) -> None:
        self._saslpasswd(name, password)

    def version(self) -> str:
        return _deb_version("cyrus-imapd")


# -------------------------------------------------------------- mailutils
IMAP4D = PREFIX / "usr/sbin/imap4d"


class MailutilsServer(CompatServer):
    """GNU mailutils imap4d: daemon mode with its own TLS; virtual-domain
    logins (``user@domain`` in ``passwd-dir/domain``), mbox mail under each home."""

    name = "mailutils"
    needs = (IMAP4D,)
    domain = "coj.go.th"

    def _prepare(self, cert: Path, key: Path) -> list[str]:
        base = self.base_dir
        (base / "passwd").mkdir(exist_ok=True)
        (base / "home").mkdir(exist_ok=True)
        (base / "passwd" / self.domain).touch()
        conf = base / "imap4d.conf"
        conf.write_text(f"""# Generated by scripts/compat_servers.py
mode daemon;
foreground yes;
logging {{ syslog false; }}
auth {{
  authentication generic;
  authorization virtdomain;
}}
virtdomain {{ passwd-dir "{base}/passwd"; }}
tls {{ ssl-certificate-file "{cert}"; ssl-key-file "{key}"; }}
server {HOST}:{self.port} {{ tls-mode connection; }}
""", encoding="utf-8")
        return [str(IMAP4D), "--no-site-config", f"--config-file={conf}", *os.environ.get("COMPAT_DEBUG", "").split()]

    def _add_user(self, name: str, password: str) -> None:
        local, _, domain = name.partition("@")
        if domain != self.domain:
            raise ValueError(f"mailutils test users are NAME@{self.domain}")
        home = self.base_dir / "home" / local
        home.mkdir(parents=True, exist_ok=True)
        # An account that never received mail has no spool: APPEND to INBOX would answer TRYCREATE.
        (home / "INBOX").touch()
        _chown_tree(home, self.uid, self.gid)
        hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode("utf-8"),
                                capture_output=True, check=True).stdout.decode().strip()
        lines = [line for line in (self.base_dir / "passwd" / domain).read_text().splitlines()
                 if not line.startswith(local + ":")]
        lines.append(f"{local}:{hashed}:{self.uid}:{self.gid}::{home}:/bin/false")
        (self.base_dir / "passwd" / domain).write_text("\n".join(lines) + "\n")

    def version(self) -> str:
        return _deb_version("mailutils-imap4d")


# ---------------------------------------------------------------- Courier
COURIER_AUTHLIB = PREFIX / "usr/lib/courier-authlib"


class CourierServer(CompatServer):
    """Courier-IMAP 5 with courier-authlib's userdb, in a private mount namespace.

    authlib has its paths compiled in (``/etc/courier/authdaemonrc``,
    ``/etc/courier/userdb.dat``, modules in ``/usr/lib/courier-authlib``, the
    socket in ``/run/courier/authdaemon``), so the server runs under
    ``unshare --mount``: a tmpfs on ``/run`` and read-only overlays put this
    instance's ``etc/courier`` and the unpacked libraries at those paths for
    its processes only; the machine's own /etc, /run and /usr are untouched.
    Needs root or unprivileged user namespaces.
    """

    name = "courier"
    needs = (PREFIX / "usr/lib/courier/courier/imaplogin", PREFIX / "usr/bin/imapd",
             COURIER_AUTHLIB / "libauthuserdb.so")

    def _prepare(self, cert: Path, key: Path) -> list[str]:
        base = self.base_dir
        etc = base / "etc" / "courier"
        etc.mkdir(parents=True, exist_ok=True)
        (base / "home").mkdir(exist_ok=True)
        # couriertls takes one PEM with the key and the certificate.
        (etc / "imapd.pem").write_bytes(key.read_bytes() + cert.read_bytes())
        os.chmod(etc / "imapd.pem", 0o600)
        (etc / "authdaemonrc").write_text(
            'authmodulelist="authuserdb"\nauthmodulelistorig="authuserdb"\ndaemons=2\n'
            'authdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=0\nDEFAULTOPTIONS=""\nLOGGEROPTS=""\n')
        for name in ("imapd", "imapd-ssl"):
            shutil.copy(PREFIX / "etc/courier" / name, etc / name)
        self._write_userdb()
        tcpd = (f"{PREFIX}/usr/sbin/couriertcpd -address={HOST} -maxprocs=40 -maxperip=40 -nodnslookup "
                f"-noidentlookup {self.port} {PREFIX}/usr/bin/couriertls -server -tcpd "
                f"{PREFIX}/usr/lib/courier/courier/imaplogin {PREFIX}/usr/bin/imapd Maildir")
        script = f"""set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/courier/authdaemon
mount -t overlay overlay -o lowerdir={base}/etc:/etc /etc
mount -t overlay overlay -o lowerdir={PREFIX}/usr/lib:/usr/lib /usr/lib
{PREFIX}/usr/lib/courier/courier-authlib/authdaemond &
set -a
. /etc/courier/imapd
. /etc/courier/imapd-ssl
IMAP_TLS=1
TLS_CERTFILE=/etc/courier/imapd.pem
TLS_DHPARAMS=
TLS_CACHEFILE=
IMAP_EMPTYTRASH=
IMAP_SHAREDINDEXFILE=
exec {tcpd}
"""
        (base / "run.sh").write_text(script, encoding="utf-8")
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            unshare.insert(1, "--map-root-user")
        return [*unshare, "/bin/sh", str(base / "run.sh")]

    def _add_user(self, name: str, password: str) -> None:
        home = self.base_dir / "home" / name.partition("@")[0]
        maildir = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        _chown_tree(home, self.uid, self.gid)
        self._write_userdb()

    def _write_userdb(self) -> None:
        """userdb.dat and userdbshadow.dat as makeuserdb writes them (with makedatprog)."""
        etc = self.base_dir / "etc" / "courier"
        etc.mkdir(parents=True, exist_ok=True)
        accounts, shadows = [], []
        for name, password in self.users.items():
            home = self.base_dir / "home" / name.partition("@")[0]
            hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode("utf-8"),
                                    capture_output=True, check=True).stdout.decode().strip()
            accounts.append(f"{name}\tuid={self.uid}|gid={self.gid}|home={home}|mail={home}/Maildir|_=\n")
            shadows.append(f"{name}\tsystempw={hashed}\n")
        makedat = str(PREFIX / "usr/lib/courier/courier-authlib/makedatprog")
        # The databases live outside the overlay (a file replaced in an overlay's lower
        # directory may stay unseen by the mount); /etc/courier holds symlinks to them.
        userdb = self.base_dir / "userdb"
        userdb.mkdir(exist_ok=True)
        for lines, dat in ((accounts, "userdb.dat"), (shadows, "userdbshadow.dat")):
            subprocess.run([makedat, "-", str(userdb / (dat + ".tmp")), str(userdb / dat)],
                           input="".join(lines) + ".\n", text=True, check=True, env=_library_env())
            if not (etc / dat).is_symlink():
                (etc / dat).symlink_to(userdb / dat)

    def version(self) -> str:
        return _deb_version("courier-imap")


# ------------------------------------------------------------- hoodiecrow
HOODIECROW = NODE_DIR / "node_modules/hoodiecrow-imap"
HOODIECROW_PLUGINS = ["ID", "IDLE", "NAMESPACE", "UNSELECT", "UIDPLUS", "ENABLE", "CONDSTORE", "LITERALPLUS",
                      "SPECIAL-USE", "MOVE", "AUTH-PLAIN", "SASL-IR"]


class HoodiecrowServer(CompatServer):
    """hoodiecrow-imap (npm): an in-memory scriptable server with TLS of its own
    (``secureConnection``).  All its logins share one mailbox, so each account
    gets a server of its own: :meth:`add_user` restarts it empty."""

    name = "hoodiecrow"
    needs = (HOODIECROW / "bin/hoodiecrow",)

    def _prepare(self, cert: Path, key: Path) -> list[str]:
        config = {
            "secureConnection": True,
            "credentials": {"key": key.read_text(), "cert": cert.read_text()},
            "users": {name: {"password": password} for name, password in self.users.items()},
            "plugins": HOODIECROW_PLUGINS,
            "port": self.port,
        }
        path = self.base_dir / "hoodiecrow.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        node = shutil.which("node") or "node"
        return [node, str(HOODIECROW / "bin/hoodiecrow"), "--config", str(path)]

    def _add_user(self, name: str, password: str) -> None:
        self.users = {name: password}
        if self.running:
            self.stop(remove_dir=False)
            self.start()

    def version(self) -> str:
        data = json.loads((HOODIECROW / "package.json").read_text(encoding="utf-8"))
        return str(data["version"])


SERVERS: dict[str, type[CompatServer]] = {
    cls.name: cls for cls in (CyrusServer, CourierServer, MailutilsServer, HoodiecrowServer)
}


def missing(name: str) -> str:
    """Why server *name* cannot run here ("" when it can)."""
    cls = SERVERS[name]
    absent = [str(path) for path in cls.needs if not path.exists()]
    if absent:
        return f"{name} is not installed ({', '.join(absent)} missing): run scripts/setup_compat.sh"
    if name == "hoodiecrow" and shutil.which("node") is None:
        return "hoodiecrow needs node (apt-get install nodejs)"
    if name == "cyrus" and shutil.which("saslpasswd2") is None:
        return "cyrus needs saslpasswd2 (apt-get install sasl2-bin)"
    return ""


def _deb_version(package: str) -> str:
    control = COMPAT_DIR / "versions.json"
    versions = json.loads(control.read_text(encoding="utf-8")) if control.exists() else {}
    return str(versions.get(package, "unknown"))


# ---------------------------------------------------------------- install
def install(names: list[str]) -> None:
    """Fetch and unpack the servers *names* into COMPAT_DIR."""
    COMPAT_DIR.mkdir(parents=True, exist_ok=True)
    debs = COMPAT_DIR / "debs"
    debs.mkdir(exist_ok=True)
    versions_path = COMPAT_DIR / "versions.json"
    versions = json.loads(versions_path.read_text(encoding="utf-8")) if versions_path.exists() else {}
    # A server already unpacked is left alone: setup runs this on every call.
    names = [name for name in names if any(not path.exists() for path in SERVERS[name].needs)]
    packages = [pkg for name in names for pkg in DEBIAN_PACKAGES.get(name, [])]
    if packages:
        # apt-get download writes to the current directory; _apt cannot always read it, hence no sandbox.
        subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *packages], cwd=debs,
                       check=True, stdout=subprocess.DEVNULL)
        for package in packages:
            deb = max(debs.glob(f"{package}_*.deb"), key=lambda path: path.stat().st_mtime)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(PREFIX)], check=True)
            versions[package] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                                               text=True, check=True).stdout.strip()
    for name in names:
        if name in NPM_PACKAGES:
            NODE_DIR.mkdir(exist_ok=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix",
                            str(NODE_DIR), NPM_PACKAGES[name]], check=True, stdout=subprocess.DEVNULL)
    versions_path.write_text(json.dumps(versions, indent=1), encoding="utf-8")


def _serve(name: str) -> int:
    server = SERVERS[name]()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    try:
        login = "demo@coj.go.th" if name == "mailutils" else "demo"
        account = server.add_user(login, "demo-รหัส")
        print(json.dumps({"server": account.server_arg, "cafile": str(account.cafile), "user": account.name,
                          "password": account.password, "dir": str(server.base_dir)}, ensure_ascii=False),
              flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print(f"{name} exited:\n{server.log_tail()}", file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install_cmd = commands.add_parser("install", help="fetch and unpack servers into .compat/")
    install_cmd.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(SERVERS)}")
    serve_cmd = commands.add_parser("serve", help="run one server until Ctrl-C")
    serve_cmd.add_argument("name", choices=sorted(SERVERS))
    args = parser.parse_args(argv)
    if args.command == "install":
        unknown = set(args.names) - set(SERVERS)
        if unknown:
            parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
        install(args.names or sorted(SERVERS))
        return 0
    return _serve(args.name)


if __name__ == "__main__":
    sys.exit(main())
