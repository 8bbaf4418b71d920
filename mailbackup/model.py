"""Frozen dataclasses shared by every layer: what a server, a folder and a
message look like once they have crossed our boundary.  No I/O here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from mailbackup.errors import UsageError
from mailbackup.i18n import _

DEFAULT_SERVER = "imap.mail.go.th:993"
IMAPS_PORT = 993
IMAP_PORT = 143


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, starttls: bool = False) -> ServerAddress:
        """Read ``HOST[:PORT]`` (IPv6 as ``[::1]:993``); the port defaults by TLS mode."""
        default_port = IMAP_PORT if starttls else IMAPS_PORT
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\s\[\]]+)(?::(\d+))?", text.strip())
        if not match:
            raise UsageError(_("cannot read server address {text!r}").format(text=text),
                             hint=_("expected HOST or HOST:PORT"))
        host = match.group(1) or match.group(3)
        port_text = match.group(2) or match.group(4)
        port = int(port_text) if port_text else default_port
        if not 0 < port < 65536:
            raise UsageError(_("port {port} is out of range in {text!r}").format(port=port, text=text))
        return cls(host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class TLSMode(Enum):
    IMPLICIT = "tls"  # TLS from the first byte (port 993)
    STARTTLS = "starttls"  # plain connect, then STARTTLS before anything else


@dataclass(frozen=True)
class ConnectionSettings:
    server: ServerAddress
    tls_mode: TLSMode = TLSMode.IMPLICIT
    cafile: str | None = None
    insecure: bool = False  # skip certificate and host-name checks (still encrypted)
    timeout: float = 60.0
    compress: str = "auto"  # COMPRESS=DEFLATE: "auto" (when offered, not on loopback), "always", "never"
    target: bool = False  # the target of a restore or migration: advice names its --to-… options


@dataclass(frozen=True)
class FolderInfo:
    """One LIST entry, name decoded from modified UTF-7."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...] = ()

    @property
    def selectable(self) -> bool:
        lowered = {flag.lower() for flag in self.flags}
        return "\\noselect" not in lowered and "\\nonexistent" not in lowered


@dataclass(frozen=True)
class FolderStatus:
    name: str
    messages: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int | None = None
    size: int | None = None  # bytes, when the server can tell (STATUS=SIZE)


@dataclass(frozen=True)
class SelectedFolder:
    name: str
    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None


def message_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """A message's flags as we keep them, sorted.  \\Recent belongs to one
    session, not to the message (RFC 3501 2.3.2), and flag names are
    case-insensitive: a server may send \\RECENT or \\recent."""
    return tuple(sorted(flag for flag in flags if flag.lower() != "\\recent"))


@dataclass(frozen=True)
class MessageMeta:
    """What the server says of a message before its body is fetched."""

    uid: int
    size: int
    flags: tuple[str, ...]
    internaldate: datetime


@dataclass
class FolderResult:
    """What one folder's sync did; filled by the engine, read by the CLI and reports."""

    name: str
    fetched: int = 0
    fetched_bytes: int = 0
    matched: int = 0  # found already stored after a UIDVALIDITY change
    flags_updated: int = 0
    gone: int = 0  # newly marked gone-from-server
    failed_uids: list[int] = field(default_factory=list)
    error: str | None = None
    skipped_unchanged: bool = False
    warnings: list[str] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)  # --repair: damaged copies removed to be fetched again


@dataclass
class RunStats:
    folders: list[FolderResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    out_of_time: bool = False  # --max-time reached: stopped cleanly after the last complete batch

    @property
    def messages(self) -> int:
        return sum(folder.fetched for folder in self.folders)

    @property
    def bytes(self) -> int:
        return sum(folder.fetched_bytes for folder in self.folders)

    @property
    def has_warnings(self) -> bool:
        return self.out_of_time or any(f.error or f.failed_uids or f.warnings for f in self.folders)


@dataclass(frozen=True)
class StoredMessage:
    """One archived copy of a message, as the state records it."""

    folder_id: int
    uidvalidity: int
    uid: int
    size: int
    sha256: str
    internaldate: datetime
    flags: tuple[str, ...]
    message_id: str | None
    subject: str | None
    sender: str | None
    location: str | None  # Maildir: file base name (no info suffix); mbox: None
    mbox_offset: int | None = None
    mbox_length: int | None = None
    saved_at: str = ""
    gone_at: str | None = None
    verified_at: str | None = None
