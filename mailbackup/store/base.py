"""The contract every local mail store keeps (Maildir and mbox behind it).

A store owns the files under the account's ``mail/`` directory and nothing
else: it never touches the state database.  The engine drives it in a fixed
order that makes crashes harmless:

1. `plan()` names where each new message will go (recorded as pending);
2. `write()` puts the bytes there and makes them durable (fsync);
   `write_many()` does so for several folders at once, with one durability
   step where the format allows (a first backup of many small folders);
3. the engine commits the state;
4. after a crash, `recover()` says which pending writes completed.

`inventory()` tells verification what is stored where, so nothing outside a
store needs to know its format.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from mailbackup.errors import StorageError
from mailbackup.i18n import N_, _
from mailbackup.model import StoredMessage
from mailbackup.store.body import MessageBody
from mailbackup.store.guarded import DamagedCopy
from mailbackup.store.naming import is_safe_relative
from mailbackup.text import system_error


@dataclass(frozen=True)
class Recovery:
    completed: list[StoredMessage]  # pending writes found whole on disk
    mbox_committed: int | None = None  # new committed length of an mbox file
    shorter_than_committed: int | None = None  # an mbox found cut below its committed length: its length


@dataclass(frozen=True)
class FolderWrite:
    """One folder's part of `write_many()`: its planned messages with their bodies."""

    local_path: str
    items: list[tuple[StoredMessage, MessageBody]]
    committed: int = 0  # the folder file's committed length (mbox)


@dataclass(frozen=True)
class Absent:
    """Why a recorded message is not whole where the state says it is."""

    kind: Literal["missing", "corrupt"]
    reason: str


@dataclass
class Inventory:
    """What is stored where: one folder's files held against the state's records."""

    absent: dict[tuple[int, int], Absent] = field(default_factory=dict)  # (uidvalidity, uid) → why
    stray: list[str] = field(default_factory=list)  # files no record names, relative to the folder
    problems: list[str] = field(default_factory=list)  # the files contradict the state
    warnings: list[str] = field(default_factory=list)  # harmless: leftovers of a killed run, odd names


@dataclass(frozen=True)
class Damage:
    reason: str
    tampered: bool = False  # a bad location, a link or a non-regular file: not wear but someone's doing


CHANGED = N_("its size or SHA-256 is not the one recorded when it was saved")


class MailStore(ABC):
    format: str = ""
    # Whether several connections may write new messages into one folder at once (sync/sharing.py).
    concurrent_writers: bool = False

    def __init__(self, mail_root: Path) -> None:
        self.mail_root = mail_root
        self._safe: set[str] = set()  # local paths already checked

    def resolve(self, local_path: str) -> Path:
        """The directory or file base for a folder; refuses anything unsafe."""
        relative = PurePosixPath(local_path)
        # Checked once per folder and run: each folder is resolved several times (prepare, recover,
        # each batch), and the checks were 12% of a 100,000-folder backup's profile.
        if local_path not in self._safe:
            if not is_safe_relative(relative):
                raise StorageError(_("refusing unsafe local folder path {path!r}").format(path=local_path))
            self._safe.add(local_path)
        return self.mail_root.joinpath(*relative.parts)

    @abstractmethod
    def prepare(self, local_path: str) -> None:
        """Create the folder's files, privately (0700 directories, 0600 files)."""

    @abstractmethod
    def plan(self, local_path: str, messages: list[StoredMessage]) -> list[StoredMessage]:
        """Return the messages with their planned location filled in."""

    @abstractmethod
    def write(self, local_path: str, items: list[tuple[StoredMessage, MessageBody]],
              committed: int) -> list[StoredMessage]:
        """Write and fsync the bodies; return the messages as stored."""

    def write_many(self, writes: list[FolderWrite]) -> list[list[StoredMessage]]:
        """`write()` for several folders, each folder's messages as stored.  A
        format that can make them all durable in one step overrides this."""
        return [self.write(part.local_path, part.items, part.committed) for part in writes]

    @abstractmethod
    def recover(self, local_path: str, pending: list[StoredMessage], committed: int) -> Recovery:
        """Keep whole pending writes, remove torn ones and temporary leftovers."""

    def is_damaged(self, local_path: str, message: StoredMessage) -> bool:
        """True when the stored copy is missing, unreadable or no longer hashes
        to what was recorded when it was saved."""
        return self.damage(local_path, message) is not None

    def damage(self, local_path: str, message: StoredMessage) -> Damage | None:
        """Why the stored copy is not the one recorded (missing, unreadable, a
        bad location, a link, other bytes), or None when it is."""
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self.iter_chunks(local_path, message):
                digest.update(chunk)
                size += len(chunk)
        except DamagedCopy as exc:
            return Damage(str(exc), tampered=True)
        except OSError as exc:
            return Damage(system_error(exc))
        except ValueError as exc:
            return Damage(str(exc))
        return None if (size, digest.hexdigest()) == (message.size, message.sha256) else Damage(_(CHANGED))

    def read_verified(self, local_path: str, message: StoredMessage) -> bytes:
        """The message, only when its size and SHA-256 are those recorded when
        it was saved (DamagedCopy otherwise): what restore and export send on."""
        try:
            body = self.read(local_path, message)
        except OSError as exc:
            raise DamagedCopy(system_error(exc)) from None
        if len(body) != message.size or hashlib.sha256(body).hexdigest() != message.sha256:
            raise DamagedCopy(_(CHANGED))
        return body

    @abstractmethod
    def discard(self, local_path: str, damaged: list[StoredMessage],
                kept: list[StoredMessage]) -> list[StoredMessage] | None:
        """Remove damaged copies so fresh ones can be fetched.  A format that
        rewrites the folder's file to do so (mbox) returns `kept` with their
        new places, to be committed before `settle_rewrite()`; otherwise None."""

    @abstractmethod
    def settle_rewrite(self, local_path: str, *, committed: bool) -> None:
        """After `discard()`: put the rewritten file in place when the state
        committed it, or throw it away when it did not (crash in between)."""

    @abstractmethod
    def cut_back(self, local_path: str, length: int) -> None:
        """Cut a damaged folder file back to `length` bytes (a format with one file per folder)."""

    @abstractmethod
    def set_flags(self, local_path: str, message: StoredMessage, flags: tuple[str, ...]) -> StoredMessage:
        """Reflect new flags where the format can (a Maildir file name)."""

    @abstractmethod
    def inventory(self, local_path: str, messages: list[StoredMessage], *, committed: int,
                  deep: bool = False) -> Inventory:
        """Which of `messages` (the folder's records) are on disk, what else is
        there, and what contradicts the state; `committed` is the folder's
        committed length (mbox), `deep` also checks the file's structure.
        Nothing is hashed or changed."""

    @abstractmethod
    def read(self, local_path: str, message: StoredMessage) -> bytes:
        """The message exactly as the server sent it."""

    @abstractmethod
    def iter_chunks(self, local_path: str, message: StoredMessage) -> Iterator[bytes]:
        """The message as the server sent it, in bounded chunks (for hashing)."""
