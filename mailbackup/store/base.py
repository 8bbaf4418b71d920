"""The contract every local mail store keeps (Maildir and mbox behind it).

A store owns the files under the account's ``mail/`` directory and nothing
else: it never touches the state database.  The engine drives it in a fixed
order that makes crashes harmless:

1. `plan()` names where each new message will go (recorded as pending);
2. `write()` puts the bytes there and makes them durable (fsync);
3. the engine commits the state;
4. after a crash, `recover()` says which pending writes completed.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mailbackup.errors import StorageError
from mailbackup.model import StoredMessage
from mailbackup.store.body import MessageBody
from mailbackup.store.naming import is_safe_relative


@dataclass(frozen=True)
class Recovery:
    completed: list[StoredMessage]  # pending writes found whole on disk
    mbox_committed: int | None = None  # new committed length of an mbox file


class MailStore(ABC):
    format: str = ""

    def __init__(self, mail_root: Path) -> None:
        self.mail_root = mail_root

    def resolve(self, local_path: str) -> Path:
        """The directory or file base for a folder; refuses anything unsafe."""
        relative = PurePosixPath(local_path)
        if not is_safe_relative(relative):
            raise StorageError(f"refusing unsafe local folder path {local_path!r}")
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

    @abstractmethod
    def recover(self, local_path: str, pending: list[StoredMessage], committed: int) -> Recovery:
        """Keep whole pending writes, remove torn ones and temporary leftovers."""

    @abstractmethod
    def set_flags(self, local_path: str, message: StoredMessage, flags: tuple[str, ...]) -> StoredMessage:
        """Reflect new flags where the format can (a Maildir file name)."""

    @abstractmethod
    def read(self, local_path: str, message: StoredMessage) -> bytes:
        """The message exactly as the server sent it."""

    @abstractmethod
    def iter_chunks(self, local_path: str, message: StoredMessage) -> Iterator[bytes]:
        """The message as the server sent it, in bounded chunks (for hashing)."""


def make_private_dirs(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def fsync_directory(path: Path) -> None:
    """Make a rename durable; directories cannot be opened on Windows."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
