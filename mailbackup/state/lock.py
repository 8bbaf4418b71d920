"""One writer per account archive.

The lock is an OS file lock on ``<archive>/.lock``: the kernel drops it when
the holder dies (SIGKILL, power loss), so a stale lock is simply taken over.
The file also says who holds it, for the error message.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import IO

from mailbackup.errors import ArchiveLocked
from mailbackup.i18n import _

LOCK_FILE = ".lock"


class ArchiveLock:
    def __init__(self, archive_dir: Path) -> None:
        self.path = archive_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> ArchiveLock:
        # Never through a link: truncating the lock file must not cut a file outside the archive.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        if not _try_lock(handle):
            holder = handle.read().strip() or _("another process")
            handle.close()
            raise ArchiveLocked(
                _("archive {archive} is in use by {holder}").format(archive=self.path.parent, holder=holder),
                hint=_("wait for that run to finish; a lock left by a killed run is released automatically"),
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"mailbackup pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            _unlock(handle)
            handle.close()

    def __enter__(self) -> ArchiveLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle: IO[str]) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: IO[str]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
