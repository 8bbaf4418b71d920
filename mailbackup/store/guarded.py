"""The archive is untrusted input (it may sit on a share others can write
to): every message file mailbackup reads back from it, and every file it
removes, renames or cuts there, goes through this module.

* a stored location (a Maildir file name from the state) must be a plain
  name: no separator, no ``..``, no drive, no NUL (`is_plain_name`);
* a file is opened without following a symbolic link, and only if it is a
  regular file (`open_regular`): a FIFO would hang the run, a device or a
  link could hand us bytes from anywhere;
* a file is removed, renamed or cut only when its directory resolves inside
  the account directory and its name is plain (`remove`, `rename`,
  `open_regular(..., root=...)`).  The last component is never followed:
  removing or renaming a symbolic link acts on the link itself.

Public API: `DamagedCopy`, `is_plain_name`, `check_location`, `contained`,
`open_regular`, `create_private`, `remove`, `rename`, `NOFOLLOW`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from mailbackup.errors import StorageError
from mailbackup.i18n import _

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
# A FIFO swapped in for a message file would block open() until a writer came.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_REPARSE_POINT = getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0x400)


class DamagedCopy(ValueError):
    """An archived copy that is not what the state records: a bad location, a
    link or a non-regular file, or other bytes.  Per message: the caller
    reports it and goes on."""


def is_plain_name(name: str) -> bool:
    """A file name that stays in its directory: no separator, not ``..``, no NUL."""
    return name not in ("", ".", "..") and not any(char in name for char in "/\\\0")


def check_location(location: str | None) -> str:
    """`location` when it is a plain file name (no drive either: ``C:x``); else DamagedCopy naming it."""
    if location is None or not is_plain_name(location) or ":" in location:
        raise DamagedCopy(_("the stored location {location!r} is not a plain file name").format(location=location))
    return location


def contained(path: Path, root: Path) -> Path:
    """`path` when its name is plain and its directory resolves inside `root`."""
    base = os.path.realpath(root)
    directory = os.path.realpath(path.parent)
    if not is_plain_name(path.name) or os.path.commonpath([base, directory]) != base:
        raise StorageError(_("refusing to touch {path}: it is not inside {root}").format(path=path, root=root))
    return path


def _is_link(path: Path) -> bool:
    """Without O_NOFOLLOW (Windows): a symbolic link or another reparse point."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISLNK(info.st_mode) or bool(getattr(info, "st_file_attributes", 0) & _REPARSE_POINT)


def open_regular(path: Path, *, write: bool = False, root: Path | None = None) -> BinaryIO:
    """Open a file without following a link at its name; regular files only.
    With `root`, the file must lie inside it.  Refused: DamagedCopy for a
    read (that copy is damaged), StorageError for a write (the run stops)."""
    refusal = _refusal(path, root)
    if refusal is None:
        opened = _open_checked(path, write)
        if not isinstance(opened, str):
            return opened
        refusal = opened
    if write:
        raise StorageError(refusal)
    raise DamagedCopy(refusal)


def _refusal(path: Path, root: Path | None) -> str | None:
    if root is not None:
        try:
            contained(path, root)
        except StorageError as exc:
            return exc.message
    if not NOFOLLOW and _is_link(path):
        return _("{path} is a symbolic link").format(path=path)
    return None


def _open_checked(path: Path, write: bool) -> BinaryIO | str:
    flags = (os.O_RDWR if write else os.O_RDONLY) | NOFOLLOW | _NONBLOCK | _BINARY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _("{path} is a symbolic link").format(path=path)
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return _("{path} is not a regular file").format(path=path)
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "r+b" if write else "rb")
    except BaseException:
        os.close(fd)
        raise


def remove(path: Path, root: Path, *, missing_ok: bool = False) -> None:
    """Remove a file inside `root` (a link is removed, not what it points to)."""
    try:
        os.unlink(contained(path, root))
    except FileNotFoundError:
        if not missing_ok:
            raise


def rename(source: Path, target: Path, root: Path) -> None:
    """os.replace() between two places inside `root`."""
    os.replace(contained(source, root), contained(target, root))


def create_private(path: Path, root: Path | None = None) -> BinaryIO:
    """Create or empty a private file (0600) for writing; a link at its name is refused, not followed."""
    if root is not None:
        contained(path, root)
    if not NOFOLLOW and _is_link(path):
        raise StorageError(_("refusing to write through the symbolic link {path}").format(path=path))
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | NOFOLLOW | _BINARY, 0o600)
    return os.fdopen(fd, "wb")
