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

from mailbackup.errors import StorageError
from mailbackup.model import StoredMessage
from mailbackup.state.written import MessageKey
from mailbackup.store.base import MailStore
from mailbackup.store.guarded import DamagedCopy, check_location, contained
from mailbackup.store.maildir import MaildirStore, base_name

MAILDIR_SUBDIRECTORIES = ("cur", "new")  # where a delivered message may be (a mail client moves it)


class WrittenCopies:
    """The copies of this run's backup, and the cheap check that stands for re-reading them."""

    def __init__(self, store: MailStore, keys: frozenset[MessageKey] = frozenset()) -> None:
        self.store = store
        self.keys = keys if isinstance(store, MaildirStore) else frozenset()
        self._files: dict[str, dict[str, list[os.DirEntry[str]]]] = {}  # per folder: stored name → its files

    def confirms(self, local_path: str, message: StoredMessage) -> bool:
        """True when `message` was written by this run's backup and its file
        is still a regular file of the recorded size at its recorded place."""
        if (message.folder_id, message.uidvalidity, message.uid) not in self.keys:
            return False
        try:
            found = self._folder_files(local_path).get(check_location(message.location), [])
            # Exactly one file, not a link, not a device: two would be a question for the full read.
            return len(found) == 1 and found[0].is_file(follow_symlinks=False) and \
                found[0].stat(follow_symlinks=False).st_size == message.size
        except (DamagedCopy, StorageError, OSError):
            return False

    def _folder_files(self, local_path: str) -> dict[str, list[os.DirEntry[str]]]:
        """One listing per folder (the files' types and sizes come with it), of
        directories that resolve inside the archive."""
        files = self._files.get(local_path)
        if files is None:
            files = self._files[local_path] = {}
            folder = self.store.resolve(local_path)
            for sub in MAILDIR_SUBDIRECTORIES:
                # contained() vets a file's directory; any plain name stands for the files listed in it.
                contained(folder / sub / "listed", self.store.mail_root)
                try:
                    entries = list(os.scandir(folder / sub))
                except FileNotFoundError:
                    continue
                for entry in entries:
                    files.setdefault(base_name(entry.name), []).append(entry)
        return files
