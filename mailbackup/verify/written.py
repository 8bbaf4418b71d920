"""The archive side of copies the backup of this same run just wrote.

A sweep backs an account up and verifies it at once, in one process, under
one archive lock.  The copies that backup wrote were hashed as they came off
the wire, written, fsynced and only then recorded (store/base.py); reading
them back a second later would hash the page cache, not the disk.  So for
those copies alone (the state's `WriteMark`, state/written.py) verification
may check, instead of the bytes, that the file is where the state says
(a plain stored name, in a directory inside the archive), a regular file,
of the recorded size.  Anything else, or any doubt, reads the copy again.
The report counts both kinds (`checked_at_download` and `checked`), and
these copies get no `verified_at`: a standalone `mailbackup verify` still
reads them first.

Only Maildir has one file per copy to look at; an mbox copy is read again.

Public API: `WrittenCopies`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailbackup.errors import StorageError
from mailbackup.model import StoredMessage
from mailbackup.state.written import MessageKey
from mailbackup.store.base import MailStore
from mailbackup.store.guarded import DamagedCopy, contained
from mailbackup.store.maildir import MaildirStore


class WrittenCopies:
    """The copies of this run's backup, and the cheap check that stands for re-reading them."""

    def __init__(self, store: MailStore, keys: frozenset[MessageKey] = frozenset()) -> None:
        self.store = store
        self.keys = keys if isinstance(store, MaildirStore) else frozenset()
        self._inside: set[Path] = set()  # directories found inside the archive

    def confirms(self, local_path: str, message: StoredMessage) -> bool:
        """True when `message` was written by this run's backup and its file
        is still a regular file of the recorded size at its recorded place."""
        if (message.folder_id, message.uidvalidity, message.uid) not in self.keys:
            return False
        assert isinstance(self.store, MaildirStore)
        try:
            path = self.store.find(local_path, message)
            if path is None or not self._inside_archive(path):
                return False
            info = os.lstat(path)
        except (DamagedCopy, StorageError, OSError):
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size == message.size

    def _inside_archive(self, path: Path) -> bool:
        if path.parent not in self._inside:
            try:
                contained(path, self.store.mail_root)
            except StorageError:
                return False
            self._inside.add(path.parent)
        return True
