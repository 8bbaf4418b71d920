"""A raw failure of the local disk or of the archive's state file (an
OSError, a sqlite3.Error let through from deep inside) as the one-line
StorageError a user can act on: the CLI turns what reaches it into that,
and the backup engine says it where it must not end the run in its place.

Public API: `local_error(exc)` (the StorageError, or None when `exc` is not
a local failure) and `LOCAL_ERRNOS`.
"""

from __future__ import annotations

import errno
import sqlite3

from mailbackup.errors import StateError, StorageError
from mailbackup.i18n import _
from mailbackup.text import system_error

# errno values that mean the local disk, not the network.
LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG,
                errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EMLINK}


def local_error(exc: BaseException) -> StorageError | None:
    """The one-line StorageError for a raw local failure, or None when it is not one."""
    if isinstance(exc, sqlite3.Error):
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            return StateError(_("the state file of the archive is damaged: {error}").format(error=exc),
                              hint=_("rename the account directory (its mail files stay readable) and run the "
                                     "backup again, which builds a new archive"))
        return StorageError(_("cannot write the state file of the archive: {error}").format(error=exc),
                            hint=_("free some space or fix the permissions of the archive, then run the same "
                                   "command again: what was saved stays saved"))
    if isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS:
        error = system_error(exc)
        text = (_("cannot write {path}: {error}").format(path=exc.filename, error=error) if exc.filename
                else _("cannot write: {error}").format(error=error))
        return StorageError(text, hint=_("free some space or fix the permissions of the archive, then run the same "
                                         "command again: what was saved stays saved"))
    return None
