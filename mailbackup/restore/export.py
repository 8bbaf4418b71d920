"""Export an archive: a Thunderbird "Local Folders" tree, or a copy in the
other archive layout (mbox ↔ Maildir).

Public API: `ExportOptions`, `ExportProgress` (callback protocol),
`export_archive(archive, options, progress)` → `ExportStats`, and the
Thunderbird naming rules `thunderbird_name(component)` and
`thunderbird_hash(name)`.

Every message is written as it was archived, with the header lines its
reader takes read/replied/flagged from put first (statusheaders.py):
``X-Mozilla-Status`` for Thunderbird, ``Status:``/``X-Status:`` in an mbox
export; a Maildir export keeps flags in file names.  ``exact`` leaves them
out: byte for byte.  The archive itself is never changed.  Nothing here prints.

Thunderbird's layout (mailnews/local, nsMsgBrkMBoxStore): a folder is an
mbox file named like the folder, without extension; its subfolders live in a
directory of the same name plus ``.sbd``.  Thunderbird names the file after
the folder as given (UTF-8 on Linux and macOS, UTF-16 on Windows), so Thai
names stay readable, and when it discovers files it shows the file name as
the folder name.  Its own rule for a name it cannot use as is
(`NS_MsgHashIfNecessary`): a character from ``/\\:*?"<>|;#`` or a control
character, a leading ``.``, a trailing ``.``, ``~`` or space, or more than 55
UTF-16 code units make it keep what comes before (at most 47 units) and
append 8 hex digits of its string hash.  We export names that this rule
leaves unchanged, so Thunderbird finds every file under the name it shows:
an unusable character becomes ``_`` (readable, unlike a hash), and only an
over-long name is cut and hashed exactly as Thunderbird would.  Names that
Thunderbird skips when it scans a directory (``*.msf``, ``*.sbd``,
``rules.dat``, ...) and Windows device names get an ``_``.  A folder that
only holds others (an IMAP ``\\Noselect`` parent) gets an empty mbox file,
because Thunderbird looks for ``X.sbd`` only next to a file ``X``.
"""

from __future__ import annotations

import os
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mailbackup.archive import Archive
from mailbackup.errors import StorageError, UsageError
from mailbackup.i18n import _
from mailbackup.model import FolderInfo, StoredMessage
from mailbackup.restore.batching import batches
from mailbackup.restore.foldermap import source_path, source_prefix_of
from mailbackup.restore.statusheaders import MBOX_NAMES, MOZILLA_NAMES, mbox_headers, mozilla_headers, with_headers
from mailbackup.state.db import FolderRecord
from mailbackup.store import mboxrd
from mailbackup.store.base import MailStore
from mailbackup.store.body import MessageBody
from mailbackup.store.files import fsync_directory, make_private_dirs
from mailbackup.store.maildir import MaildirStore
from mailbackup.store.mbox import MboxStore
from mailbackup.sync.plan import select_folders
from mailbackup.text import system_error

KINDS = ("thunderbird", "mbox", "maildir")
MEGABYTE = 1 << 20
BATCH_MESSAGES = 200
BATCH_BYTES = 16 * MEGABYTE

# Thunderbird (nsMsgUtils.cpp, nsCRTGlue.h, nsMsgLocalStoreUtils.cpp).
TB_MAX_UNITS = 55
TB_HASH_DIGITS = 8
TB_FOLDER_SUFFIX = ".sbd"
TB_ILLEGAL = frozenset('/\\:*?"<>|;#') | {chr(code) for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))}
TB_ILLEGAL_FIRST = frozenset(".")
TB_ILLEGAL_LAST = frozenset(".~ ")
TB_IGNORED_NAMES = frozenset({
    "msgfilterrules.dat", "rules.dat", "filterlog.html", "junklog.html", "rulesbackup.dat", "popstate.dat",
    "sort.dat", "mailfilt.log", "filters.js", "feeds.json", "feeds.json.tmp", "feeds.json.backup",
    "feeds.json.corrupt", "feeditems.json", "feeditems.json.tmp", "feeditems.json.backup",
    "feeditems.json.corrupt", "feeds.rdf", "feeditems.rdf",
})
TB_IGNORED_SUFFIXES = (".snm", ".toc", ".mozmsgs", ".sbd", ".msf")
WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
                            | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789¹²³"})
REPLACEMENT = "_"
TB_INBOX = "Inbox"  # how Thunderbird spells the INBOX file


# ---------------------------------------------------------------------------
# Thunderbird names
# ---------------------------------------------------------------------------


def thunderbird_hash(name: str) -> str:
    """Thunderbird's `StringHash` over the UTF-16 (little-endian) units of
    `name`, as 8 lower-case hex digits."""
    value = 1
    for byte in name.encode("utf-16-le", "surrogatepass"):
        value = (0x63C63CD9 * value + 0x9C39C33D + byte) & 0xFFFFFFFF
    return f"{value:08x}"


def thunderbird_name(component: str) -> str:
    """A file name Thunderbird uses unchanged and shows as the folder name."""
    name = "".join(REPLACEMENT if char in TB_ILLEGAL else char for char in component) or REPLACEMENT
    if name[0] in TB_ILLEGAL_FIRST:
        name = REPLACEMENT + name[1:]
    if name[-1] in TB_ILLEGAL_LAST:
        name = name[:-1] + REPLACEMENT
    if _skipped_by_thunderbird(name):
        name += REPLACEMENT
    if name.split(".", 1)[0].rstrip(" ").upper() in WINDOWS_DEVICES:
        name = REPLACEMENT + name
    return _shorten(name)


def _skipped_by_thunderbird(name: str) -> bool:
    lowered = name.lower()
    return (lowered in TB_IGNORED_NAMES or lowered.startswith("feeditems_error")
            or name.endswith(TB_IGNORED_SUFFIXES))


def _shorten(name: str) -> str:
    units = name.encode("utf-16-le", "surrogatepass")
    if len(units) // 2 <= TB_MAX_UNITS:
        return name
    keep = TB_MAX_UNITS - TB_HASH_DIGITS
    kept = units[: keep * 2]
    if 0xD800 <= int.from_bytes(kept[-2:], "little") <= 0xDBFF:  # never keep half a surrogate pair
        kept = kept[:-2]
    return kept.decode("utf-16-le", "surrogatepass") + thunderbird_hash(name)


def _sibling_key(name: str) -> str:
    """Windows and macOS fold case (and macOS normalises): one name per key."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())


class ThunderbirdTree:
    """Where each folder path goes in the exported tree; parents included."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, ...], str] = {}
        self._taken: dict[tuple[str, ...], set[str]] = {}

    def add(self, path: tuple[str, ...]) -> None:
        for depth in range(1, len(path) + 1):
            node = path[:depth]
            if node not in self._names:
                self._names[node] = self._unique(node)

    def _unique(self, node: tuple[str, ...]) -> str:
        component = node[-1]
        if len(node) == 1 and component.upper() == "INBOX":
            component = TB_INBOX
        taken = self._taken.setdefault(node[:-1], set())
        name, counter = thunderbird_name(component), 1
        while _sibling_key(name) in taken:
            counter += 1
            name = thunderbird_name(f"{component} ({counter})")
        taken.add(_sibling_key(name))
        return name

    def nodes(self) -> list[tuple[str, ...]]:
        return sorted(self._names)

    def file_for(self, out_dir: Path, path: tuple[str, ...]) -> Path:
        directory = out_dir
        for depth in range(1, len(path)):
            directory = directory / (self._names[path[:depth]] + TB_FOLDER_SUFFIX)
        return directory / self._names[path]


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


@dataclass
class ExportOptions:
    kind: str  # thunderbird, mbox or maildir
    out_dir: Path
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip_deleted: bool = False
    exact: bool = False  # byte for byte: no reader status headers


@dataclass
class FolderExport:
    source: str
    path: str  # relative to the output directory
    messages: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class ExportStats:
    folders: list[FolderExport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return sum(folder.messages for folder in self.folders)

    @property
    def bytes(self) -> int:
        return sum(folder.bytes for folder in self.folders)

    @property
    def has_warnings(self) -> bool:
        return any(folder.failed for folder in self.folders)


class ExportProgress(Protocol):
    def folder_start(self, name: str, messages: int, size: int) -> None: ...
    def exported(self, messages: int, size: int) -> None: ...
    def warn(self, text: str) -> None: ...


class NoExportProgress:
    def folder_start(self, name: str, messages: int, size: int) -> None:
        pass

    def exported(self, messages: int, size: int) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


def export_archive(archive: Archive, options: ExportOptions, progress: ExportProgress | None = None) -> ExportStats:
    if options.kind not in KINDS:
        raise UsageError(_("unknown export kind {kind!r}").format(kind=options.kind),
                         hint=_("use one of {kinds}").format(kinds=", ".join(KINDS)))
    _prepare_output(options.out_dir)
    started = time.monotonic()
    exporter = _Exporter(archive, options, progress or NoExportProgress())
    stats = exporter.run()
    stats.seconds = time.monotonic() - started
    return stats


def _prepare_output(out_dir: Path) -> None:
    """A new or empty directory: an export never mixes with older files."""
    try:
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise UsageError(_("{path} already exists and is not empty").format(path=out_dir),
                             hint=_("export into a new directory"))
        make_private_dirs(out_dir)
    except OSError as exc:
        raise StorageError(_("cannot create {path}: {error}").format(path=out_dir, error=system_error(exc))) \
            from None


class _Exporter:
    def __init__(self, archive: Archive, options: ExportOptions, progress: ExportProgress) -> None:
        self.archive = archive
        self.options = options
        self.progress = progress

    def records(self) -> list[FolderRecord]:
        by_name = {record.name: record for record in self.archive.state.folders()}
        infos = [FolderInfo(name=record.name, delimiter=record.delimiter) for record in by_name.values()]
        return [by_name[info.name] for info in select_folders(infos, self.options.include, self.options.exclude)]

    def messages(self, record: FolderRecord) -> list[StoredMessage]:
        return list(self.archive.state.messages(record.id, include_gone=not self.options.skip_deleted))

    def run(self) -> ExportStats:
        if self.options.kind == "thunderbird":
            return self._thunderbird()
        return self._other_layout()

    def _read(self, record: FolderRecord, message: StoredMessage, result: FolderExport) -> bytes | None:
        try:
            return self.archive.store.read_verified(record.local_path, message)
        except (OSError, ValueError) as exc:
            text = _("folder {folder!r}: UID {uid} ({subject}) not exported: damaged archived copy: {error}").format(
                folder=record.name, uid=message.uid, subject=message.subject or "", error=exc)
            result.failed.append(text)
            self.progress.warn(text)
            return None

    def _for_reader(self, body: bytes, message: StoredMessage, names: tuple[bytes, ...]) -> bytes:
        """The exported copy: the archived bytes with the status headers of the reader `names` stands for."""
        if self.options.exact or not names:
            return body
        headers = mozilla_headers(message.flags) if names == MOZILLA_NAMES else mbox_headers(message.flags)
        return with_headers(body, headers, names)

    # -- Thunderbird --------------------------------------------------
    def _thunderbird(self) -> ExportStats:
        stats = ExportStats()
        out_dir = self.options.out_dir
        prefix = source_prefix_of(self.archive.state)
        records = {source_path(r.name, r.delimiter, prefix): r for r in self.records()}
        tree = ThunderbirdTree()
        for path in sorted(records):
            tree.add(path)
        for node in tree.nodes():  # parents first: each file before its .sbd directory
            target = tree.file_for(out_dir, node)
            make_private_dirs(target.parent)
            record = records.get(node)
            result = FolderExport(source=record.name if record else "/".join(node),
                                  path=target.relative_to(out_dir).as_posix())
            stats.folders.append(result)
            self._write_thunderbird_mbox(target, record, result)
        for directory in {path.parent for path in out_dir.rglob("*") if path.is_file()}:
            fsync_directory(directory)
        return stats

    def _write_thunderbird_mbox(self, target: Path, record: FolderRecord | None, result: FolderExport) -> None:
        messages = self.messages(record) if record else []
        self.progress.folder_start(result.source, len(messages), sum(m.size for m in messages))
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o600)
            with os.fdopen(fd, "wb") as handle:
                for message in messages:
                    assert record is not None
                    body = self._read(record, message, result)
                    if body is None:
                        continue
                    handle.write(mboxrd.entry(message.sender, message.internaldate,
                                              self._for_reader(body, message, MOZILLA_NAMES)))
                    result.messages += 1
                    result.bytes += len(body)
                    self.progress.exported(1, len(body))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(_("cannot write {path}: {error}").format(path=target, error=system_error(exc))) \
                from None

    # -- mbox <-> Maildir ---------------------------------------------
    def _other_layout(self) -> ExportStats:
        stats = ExportStats()
        store: MailStore = MboxStore(self.options.out_dir) if self.options.kind == "mbox" \
            else MaildirStore(self.options.out_dir)
        for record in self.records():
            result = FolderExport(source=record.name, path=record.local_path)
            stats.folders.append(result)
            messages = self.messages(record)
            self.progress.folder_start(record.name, len(messages), sum(m.size for m in messages))
            store.prepare(record.local_path)
            committed = 0
            for group in batches(messages, BATCH_MESSAGES, BATCH_BYTES, lambda m: m.size):
                committed = self._copy(store, record, group, committed, result)
        return stats

    def _copy(self, store: MailStore, record: FolderRecord, group: list[StoredMessage], committed: int,
              result: FolderExport) -> int:
        """Write one group through the store (atomic files, fsync); the new
        committed length of an mbox."""
        items = [(message, body) for message in group if (body := self._read(record, message, result)) is not None]
        if not items:
            return committed
        planned = store.plan(record.local_path, [message for message, _ in items])
        names = MBOX_NAMES if self.options.kind == "mbox" else ()
        bodies = [MessageBody.from_bytes(self._for_reader(body, message, names)) for message, body in items]
        stored = store.write(record.local_path, list(zip(planned, bodies, strict=True)), committed)
        size = sum(body.size for body in bodies)
        result.messages += len(stored)
        result.bytes += size
        self.progress.exported(len(stored), size)
        last = stored[-1]
        return (last.mbox_offset or 0) + (last.mbox_length or 0) if last.mbox_offset is not None else committed
