"""One account's archive directory: where its mail, state and reports live.

    <dest>/<account>/mail/…        the folders (Maildir or mbox)
    <dest>/<account>/state.sqlite3 what is stored, per message
    <dest>/<account>/reports/      verification reports
    <dest>/<account>/tmp/          large messages on their way in
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mailbackup.errors import StorageError, UsageError
from mailbackup.i18n import _
from mailbackup.state.db import STATE_FILE, StateDB
from mailbackup.state.lock import ArchiveLock
from mailbackup.store.base import MailStore
from mailbackup.store.maildir import MaildirStore
from mailbackup.store.mbox import MboxStore
from mailbackup.store.naming import encode_component
from mailbackup.text import system_error

FORMATS = ("maildir", "mbox")


def account_dir(dest: Path, account: str) -> Path:
    return dest / encode_component(account.strip())


def archive_exists(dest: Path, account: str) -> bool:
    """Whether `account` has been backed up into `dest` before (its state file is there)."""
    return (account_dir(dest, account) / STATE_FILE).exists()


@dataclass
class Archive:
    root: Path
    state: StateDB
    store: MailStore
    lock: ArchiveLock | None = field(default=None)

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def spool_dir(self) -> Path:
        return self.root / "tmp"

    def close(self) -> None:
        self.state.close()
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(dest: Path, account: str, *, format: str | None = None, lock: bool = True,
                 create: bool = True) -> Archive:
    """Open (or create) an account archive, taking its lock when writing."""
    root = account_dir(dest, account)
    if not create and not archive_exists(dest, account):
        raise UsageError(_("no backup of {account} in {dest}").format(account=account, dest=dest),
                         hint=_("run `mailbackup backup` first, or check --dest"))
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(_("cannot create archive directory {path}: {error}").format(
            path=root, error=system_error(exc))) from None
    archive_lock = ArchiveLock(root).acquire() if lock else None
    try:
        state = StateDB(root / STATE_FILE)
        chosen = _settle_format(state, format, account)
        mail_root = root / "mail"
        mail_root.mkdir(mode=0o700, exist_ok=True)
        store: MailStore = MaildirStore(mail_root, state.get_meta("maildir_info_separator")) \
            if chosen == "maildir" else MboxStore(mail_root)
        if isinstance(store, MaildirStore) and state.get_meta("maildir_info_separator") is None:
            state.set_meta("maildir_info_separator", store.separator)
    except BaseException:
        if archive_lock:
            archive_lock.release()
        raise
    return Archive(root=root, state=state, store=store, lock=archive_lock)


def _settle_format(state: StateDB, wanted: str | None, account: str) -> str:
    recorded = state.get_meta("format")
    if wanted and wanted not in FORMATS:
        raise UsageError(_("unknown format {format!r}").format(format=wanted), hint=_("use maildir or mbox"))
    if recorded and wanted and wanted != recorded:
        raise UsageError(
            _("the archive of {account} is in {recorded} format, not {wanted}").format(
                account=account, recorded=recorded, wanted=wanted),
            hint=_("use another --dest for a second format, or `mailbackup export` to convert"),
        )
    chosen = recorded or wanted or "maildir"
    if not recorded:
        state.set_meta("format", chosen)
        state.set_meta("account", account)
    return chosen


def private_umask() -> None:
    """Archives hold court mail: everything we create is for the owner only."""
    if os.name != "nt":
        os.umask(0o077)
