"""Maildir store: one directory per folder (children nested inside it), each
with ``cur/ new/ tmp/``; every message one file, delivered tmp → cur.

File names: ``<time>.M<usec>P<pid>Q<n>.<host>,S=<size><sep>2,<flags>``, the
separator ``:`` on POSIX and ``;`` on Windows, where ``:`` is illegal.  The
state records the name without the info part, so a flag change is a rename.
The file's mtime is the message's INTERNALDATE, as mail clients expect.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from mailbackup.errors import StorageError
from mailbackup.i18n import _
from mailbackup.model import StoredMessage
from mailbackup.store.base import Absent, FolderWrite, Inventory, MailStore, Recovery
from mailbackup.store.body import CHUNK, MessageBody
from mailbackup.store.files import make_durable, make_private_dirs, make_renames_durable
from mailbackup.store.guarded import DamagedCopy, check_location, contained, open_regular, remove, rename
from mailbackup.store.keywords import KeywordTable, keywords_of
from mailbackup.text import system_error

FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
INFO_SEPARATORS = (":", ";", "!")
# Our names and those of other tools: <digits>.<unique>[<sep>2,<flags>]; no
# separators, slashes or spaces in the base.
WELL_FORMED = re.compile(r"\d+\.[^:;!/\\\s]+(?:[:;!]2,[A-Za-z]*)?")
SUBDIRS = ("cur", "new", "tmp")


def default_info_separator() -> str:
    return ";" if os.name == "nt" else ":"


SYSTEM_LETTERS = {flag.casefold(): letter for flag, letter in FLAG_LETTERS.items()}


def info_suffix(flags: tuple[str, ...], separator: str, keyword_letters: str = "") -> str:
    """``:2,`` with the system flags' capital letters, then the keywords' (see keywords.py)."""
    letters = sorted({SYSTEM_LETTERS[flag.casefold()] for flag in flags if flag.casefold() in SYSTEM_LETTERS})
    return f"{separator}2,{''.join(letters)}{keyword_letters}"


def base_name(file_name: str) -> str:
    """A Maildir file name without its info part (``:2,S`` or ``;2,S``): what the state records."""
    cut = min((index for index in (file_name.find(sep) for sep in INFO_SEPARATORS) if index >= 0),
              default=len(file_name))
    return file_name[:cut]


def _list_files(directory: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(directory) if entry.is_file())
    except FileNotFoundError:
        return []


def _safe_host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:40] or "host"


class MaildirStore(MailStore):
    format = "maildir"
    concurrent_writers = True  # a file per message, names unique per store (_unique_name)

    def __init__(self, mail_root: Path, info_separator: str | None = None) -> None:
        super().__init__(mail_root)
        self.separator = info_separator or default_info_separator()
        self._counter = itertools.count(1)  # next() is atomic: a run's connections write at once
        self._host = _safe_host()
        self._keyword_tables: dict[Path, KeywordTable] = {}
        self._keywords_lock = threading.Lock()  # two connections storing into one folder add keywords at once

    def prepare(self, local_path: str) -> None:
        folder = self.resolve(local_path)
        for sub in SUBDIRS:
            make_private_dirs(folder / sub)

    def _unique_name(self, size: int) -> str:
        count = next(self._counter)
        now = time.time()
        return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{count}.{self._host},S={size}"

    def plan(self, local_path: str, messages: list[StoredMessage]) -> list[StoredMessage]:
        return [replace(message, location=self._unique_name(message.size)) for message in messages]

    def write(self, local_path: str, items: list[tuple[StoredMessage, MessageBody]],
              committed: int) -> list[StoredMessage]:
        return self.write_many([FolderWrite(local_path, items, committed)])[0]

    def write_many(self, writes: list[FolderWrite]) -> list[list[StoredMessage]]:
        """Every folder's files into its tmp/, one durability step for all of
        them, then into cur/: a first backup of 10,000 small folders paid one
        syncfs() and two fsynced commits per folder before."""
        staged: list[tuple[Path, list[Path]]] = []
        for part in writes:
            folder = self.resolve(part.local_path)
            # Checked once a batch (the names are ours, from plan()): both directories resolve inside mail/.
            contained(folder / "tmp" / "x", self.mail_root)
            contained(folder / "cur" / "x", self.mail_root)
            staged.append((folder, [self._write_tmp(folder / "tmp", message, body) for message, body in part.items]))
        files = [path for _folder, paths in staged for path in paths]
        if files:
            make_durable(files, files[0].parent)  # bytes on disk before any name appears in cur/
        for part, (folder, paths) in zip(writes, staged, strict=True):
            for (message, _body), tmp_path in zip(part.items, paths, strict=True):
                os.replace(tmp_path, folder / "cur" / self._file_name(folder, message, message.flags))
        make_renames_durable([folder / "cur" for folder, paths in staged if paths])
        return [[message for message, _body in part.items] for part in writes]

    def _linked(self, spooled: Path, size: int, path: Path) -> bool:
        """A large body spooled to a file (in the archive, so on its file system)
        becomes the message's file without a copy; its spool name goes with
        `MessageBody.discard`.  False where there are no hard links, or the name is
        taken: the copy then writes it, or reports why not.  A link planted at the
        spool name is linked as a link, not followed, and then undone."""
        try:
            os.link(spooled, path, follow_symlinks=False)
        except (NotImplementedError, OSError):  # no linkat() here, no hard links there, or the name taken: copy
            return False
        found = os.lstat(path)
        if stat.S_ISREG(found.st_mode) and found.st_size == size:
            return True
        remove(path, self.mail_root)
        return False

    def _write_tmp(self, tmp_dir: Path, message: StoredMessage, body: MessageBody) -> Path:
        path = tmp_dir / check_location(message.location)
        stamp = message.internaldate.timestamp()
        if body.path is not None and self._linked(body.path, body.size, path):
            os.utime(path, (stamp, stamp))
            return path
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags, 0o600)
            with os.fdopen(fd, "wb") as handle:
                for chunk in body.chunks():
                    handle.write(chunk)
        except OSError as exc:
            remove(path, self.mail_root, missing_ok=True)
            raise StorageError(_("cannot write {path}: {error}").format(path=path, error=system_error(exc))) \
                from None
        os.utime(path, (stamp, stamp))
        return path

    def _file_name(self, folder: Path, message: StoredMessage, flags: tuple[str, ...], *, add: bool = True) -> str:
        """The message's name in cur/; `add`: give new keywords their letters (writes dovecot-keywords)."""
        assert message.location
        return message.location + info_suffix(flags, self.separator, self._keyword_letters(folder, flags, add=add))

    def _keyword_letters(self, folder: Path, flags: tuple[str, ...], *, add: bool) -> str:
        if not keywords_of(flags):
            return ""
        with self._keywords_lock:
            table = self._keyword_tables.get(folder)
            if table is None:
                table = self._keyword_tables[folder] = KeywordTable(folder)
            return table.letters(flags, add=add)

    def find(self, local_path: str, message: StoredMessage) -> Path | None:
        """The message's file, wherever its flags or another mail client put it.
        DamagedCopy when the state's location is not a plain file name."""
        base = check_location(message.location)
        folder = self.resolve(local_path)
        exact = folder / "cur" / self._file_name(folder, message, message.flags, add=False)
        if os.path.lexists(exact):
            return exact
        for sub in ("cur", "new"):
            try:
                names = os.listdir(folder / sub)
            except FileNotFoundError:
                continue
            for name in names:
                if base_name(name) == base:
                    return folder / sub / name
        return None

    def inventory(self, local_path: str, messages: list[StoredMessage], *, committed: int,
                  deep: bool = False) -> Inventory:
        """Which recorded files exist; stray, duplicate and malformed names."""
        folder = self.resolve(local_path)
        found = Inventory()
        bases: dict[str, str] = {}
        for sub in ("cur", "new"):
            for name in _list_files(folder / sub):
                relative = f"{sub}/{name}"
                if not WELL_FORMED.fullmatch(name):
                    found.warnings.append(_("malformed Maildir file name {name}").format(name=relative))
                base = base_name(name)
                if base in bases:
                    found.warnings.append(_("two files for one message: {first} and {second}").format(
                        first=bases[base], second=relative))
                bases.setdefault(base, relative)
        known = {message.location for message in messages if message.location}
        found.stray.extend(sorted(path for base, path in bases.items() if base not in known))
        leftovers = _list_files(folder / "tmp")
        if leftovers:
            found.warnings.append(_("{count} files in tmp/ left by an interrupted backup (the next backup removes "
                                    "them)").format(count=len(leftovers)))
        for message in messages:
            if not message.location:
                found.absent[(message.uidvalidity, message.uid)] = Absent("corrupt", _("no file name recorded"))
            elif message.location not in bases:
                found.absent[(message.uidvalidity, message.uid)] = Absent("missing", _("message file not found"))
        return found

    def discard(self, local_path: str, damaged: list[StoredMessage],
                kept: list[StoredMessage]) -> list[StoredMessage] | None:
        for message in damaged:
            path = self._find_safely(local_path, message)
            if path is not None:
                remove(path, self.mail_root)
        return None  # one file per message: the others stay where they are

    def settle_rewrite(self, local_path: str, *, committed: bool) -> None:
        pass  # nothing is rewritten: damaged files are simply removed

    def cut_back(self, local_path: str, length: int) -> None:
        pass  # one file per message: there is no folder file to cut

    def set_flags(self, local_path: str, message: StoredMessage, flags: tuple[str, ...]) -> StoredMessage:
        updated = replace(message, flags=flags)
        current = self._find_safely(local_path, message)
        if current is None:
            return updated
        folder = self.resolve(local_path)
        target = folder / "cur" / self._file_name(folder, message, flags)
        if current != target:
            rename(current, target, self.mail_root)
        return updated

    def _find_safely(self, local_path: str, message: StoredMessage) -> Path | None:
        """find(), with None for a location that is no plain name: nothing of ours to touch."""
        try:
            return self.find(local_path, message)
        except DamagedCopy:
            return None

    def recover(self, local_path: str, pending: list[StoredMessage], committed: int) -> Recovery:
        folder = self.resolve(local_path)
        completed = []
        for message in pending:
            path = self._find_safely(local_path, message)
            if path is not None and not self.is_damaged(local_path, message):
                completed.append(message)
            elif path is not None:
                remove(path, self.mail_root)
        self._clean_tmp(folder / "tmp")
        return Recovery(completed=completed)

    def _clean_tmp(self, tmp_dir: Path) -> None:
        # We hold the archive lock, so anything in tmp/ is a torn delivery of ours.
        if tmp_dir.is_dir():
            for entry in os.scandir(tmp_dir):
                if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    remove(Path(entry.path), self.mail_root)

    def read(self, local_path: str, message: StoredMessage) -> bytes:
        return b"".join(self.iter_chunks(local_path, message))

    def iter_chunks(self, local_path: str, message: StoredMessage) -> Iterator[bytes]:
        path = self.find(local_path, message)
        if path is None:
            raise FileNotFoundError(f"message file {message.location} not found in {local_path}")
        with open_regular(path, root=self.mail_root) as handle:
            while block := handle.read(CHUNK):
                yield block
