"""Before a folder is synced: finish what a killed run left (keep whole
writes, drop torn ones), and with --repair re-hash every stored copy so the
damaged ones are fetched again.  The order of each step (cut or rewrite the
file, commit the state, then settle) keeps a crash in between harmless."""

from __future__ import annotations

import logging

from mailbackup.i18n import _
from mailbackup.sync.folder import FolderSync, SyncParts

log = logging.getLogger(__name__)


def recover(parts: SyncParts, folder: FolderSync) -> None:
    """Finish what a killed run left: keep whole writes, drop torn ones."""
    state = parts.state
    _settle_rewrite(parts, folder)
    pending = state.pending(folder.record.id)
    recovery = parts.store.recover(folder.record.local_path, pending, folder.committed)
    if recovery.shorter_than_committed is not None:
        _forget_lost_tail(parts, folder, recovery.shorter_than_committed)
        return
    if not pending and recovery.mbox_committed in (None, folder.committed):
        return
    with state.transaction():
        state.insert_messages(m for m in recovery.completed if not state.message(m.folder_id, m.uidvalidity, m.uid))
        state.clear_pending(folder.record.id)
        if recovery.mbox_committed is not None:
            state.update_folder(folder.record.id, mbox_committed=recovery.mbox_committed)
            folder.committed = recovery.mbox_committed
    if pending:
        log.info("folder %r: recovered %d of %d messages from an interrupted run",
                 folder.info.name, len(recovery.completed), len(pending))


def repair(parts: SyncParts, folder: FolderSync) -> None:
    """Re-hash every stored copy; remove the damaged ones that the server
    still has so this run fetches them again.  Copies of mail the server
    no longer holds are kept (verify keeps naming them)."""
    state, store = parts.state, parts.store
    rows = list(state.messages(folder.record.id))
    damages = {(row.uidvalidity, row.uid): store.damage(folder.record.local_path, row) for row in rows}
    damaged = [row for row in rows if damages[(row.uidvalidity, row.uid)] is not None]
    for row in damaged:
        found = damages[(row.uidvalidity, row.uid)]
        if found is not None and found.tampered:  # someone edited the archive: say which row, touch nothing outside
            parts.warn(folder, _("folder {folder!r}: UID {uid} ({subject}): {reason}").format(
                folder=folder.info.name, uid=row.uid, subject=row.subject or "", reason=found.reason))
    fixable = [row for row in damaged if row.gone_at is None]
    if fixable:
        gone = {(row.uidvalidity, row.uid) for row in fixable}
        kept = [row for row in rows if (row.uidvalidity, row.uid) not in gone]
        rewritten = store.discard(folder.record.local_path, fixable, kept)
        with state.transaction():
            state.forget_messages(fixable)
            if rewritten is not None:  # the folder file was rewritten: new places, committed before it is settled
                state.set_mbox_places(rewritten)
                folder.committed = sum(row.mbox_length or 0 for row in rewritten)
                state.update_folder(folder.record.id, mbox_committed=folder.committed)
                state.set_meta(_rewrite_key(folder), "1")
        _settle_rewrite(parts, folder)
        folder.record = state.folder_by_id(folder.record.id)
    # A copy fetched again is repaired, not a warning (one that then fails
    # to download is in failed_uids); one the server no longer has stays damaged.
    folder.result.repaired = sorted(row.uid for row in fixable)
    if len(damaged) > len(fixable):
        text = _("folder {folder!r}: {damaged} damaged copies found; {fixed} fetched again").format(
            folder=folder.info.name, damaged=len(damaged), fixed=len(fixable))
        text += _(", {count} no longer on the server (kept as they are)").format(
            count=len(damaged) - len(fixable))
        parts.warn(folder, text)


def _rewrite_key(folder: FolderSync) -> str:
    return f"rewrite:{folder.record.id}"


def _settle_rewrite(parts: SyncParts, folder: FolderSync) -> None:
    """A rewrite of the folder file (repair) is in place once the state says
    so: the state is committed first, the file renamed after."""
    key = _rewrite_key(folder)
    committed = parts.state.get_meta(key) is not None
    parts.store.settle_rewrite(folder.record.local_path, committed=committed)
    if committed:
        with parts.state.transaction():
            parts.state.delete_meta(key)


def _forget_lost_tail(parts: SyncParts, folder: FolderSync, length: int) -> None:
    """The folder's mbox was cut short by something else (a disk problem, a
    mail client): forget the lost entries so the server's copies are fetched
    again, and cut the file back to its last whole entry."""
    state = parts.state
    # Cut first, then commit: cutting again after a crash is harmless, while
    # a committed state over an uncut file would be refused on the next run.
    parts.store.cut_back(folder.record.local_path, state.mbox_end_within(folder.record.id, length))
    with state.transaction():
        state.clear_pending(folder.record.id)
        dropped, committed = state.forget_mbox_tail(folder.record.id, length)
    folder.committed = committed
    folder.record = state.folder_by_id(folder.record.id)
    parts.warn(folder, _("folder {folder!r}: the mbox file was shorter than recorded; {count} messages were lost "
                         "locally and are fetched again from the server").format(folder=folder.info.name,
                                                                                   count=dropped))
