"""Storing what was fetched, in the order that makes a crash harmless:
pending rows committed → mail bytes written and fsynced → messages committed
(store/base.py).  After a UIDVALIDITY change a message already stored in an
earlier generation is moved into the new one instead of being written again;
each old copy is claimed by one new UID only."""

from __future__ import annotations

import logging

from mailbackup import faults
from mailbackup.headers import HeaderSummary, summarize
from mailbackup.i18n import _
from mailbackup.model import MessageMeta, StoredMessage
from mailbackup.state.rows import now_iso
from mailbackup.store.body import MessageBody
from mailbackup.sync.folder import FolderSync, SyncParts

log = logging.getLogger(__name__)


class Committer:
    def __init__(self, parts: SyncParts) -> None:
        self.parts = parts
        self.state = parts.state
        self.store = parts.store

    def commit(self, folder: FolderSync, items: list[tuple[MessageMeta, MessageBody]]) -> None:
        """pending → write + fsync → messages, in that order (crash safety)."""
        if not items:
            return
        to_write: list[tuple[StoredMessage, MessageBody]] = []
        matched: list[tuple[StoredMessage, MessageMeta]] = []
        claimed: set[tuple[int, int]] = set()
        for meta, body in items:
            message = self._describe(folder, meta, body)
            old = self._claim_old_copy(folder, message, claimed) if folder.new_generation else None
            if old is not None:
                matched.append((old, meta))
                body.discard()
            else:
                to_write.append((message, body))
        planned = self.store.plan(folder.record.local_path, [message for message, _ in to_write])
        bodies = [body for _, body in to_write]
        if planned:
            with self.state.transaction():
                self.state.add_pending(planned)
            faults.point("after-pending")
        try:
            stored = self.store.write(folder.record.local_path, list(zip(planned, bodies, strict=True)),
                                      folder.committed)
        finally:
            for body in bodies:
                body.discard()
        faults.point("after-write")
        self._commit_stored(folder, stored, matched)
        size = sum(message.size for message in stored)
        folder.result.fetched += len(stored)
        folder.result.fetched_bytes += size
        folder.result.matched += len(matched)
        self.parts.progress.saved(len(stored) + len(matched), size + sum(meta.size for _, meta in matched))

    def _commit_stored(self, folder: FolderSync, stored: list[StoredMessage],
                       matched: list[tuple[StoredMessage, MessageMeta]]) -> None:
        record_id = folder.record.id
        with self.state.transaction():
            self.state.insert_messages(stored)
            self.state.clear_pending_of(record_id, folder.uidvalidity, (message.uid for message in stored))
            for old, meta in matched:
                self.store.set_flags(folder.record.local_path, old, meta.flags)
                self.state.move_to_generation(old, folder.uidvalidity, meta.uid, meta.flags)
            self.state.clear_failures(record_id, folder.uidvalidity, (message.uid for message in stored))
            if stored and stored[-1].mbox_offset is not None:
                last = stored[-1]
                folder.committed = (last.mbox_offset or 0) + (last.mbox_length or 0)
                self.state.update_folder(record_id, mbox_committed=folder.committed)

    def _claim_old_copy(self, folder: FolderSync, message: StoredMessage,
                        claimed: set[tuple[int, int]]) -> StoredMessage | None:
        """An unclaimed copy of an earlier generation to move into this one.
        The moves run after the whole batch is matched, so the batch's own
        claims are kept in `claimed`: two identical messages take two rows."""
        for old in self.state.old_copies(folder.record.id, folder.uidvalidity, message.sha256, message.size,
                                         message.message_id):
            if (old.uidvalidity, old.uid) not in claimed:
                claimed.add((old.uidvalidity, old.uid))
                return old
        return None

    def _describe(self, folder: FolderSync, meta: MessageMeta, body: MessageBody) -> StoredMessage:
        try:
            headers = summarize(body.head())
        except Exception:  # a header nothing can parse never stops a backup: its bytes are kept as they are
            log.debug("UID %d: header fields unreadable", meta.uid, exc_info=True)
            headers = HeaderSummary(None, None, None, None)
        return StoredMessage(
            folder_id=folder.record.id, uidvalidity=folder.uidvalidity, uid=meta.uid, size=body.size,
            sha256=body.sha256, internaldate=meta.internaldate, flags=meta.flags,
            message_id=headers.message_id, subject=headers.subject, sender=headers.sender,
            location=None, saved_at=now_iso(),
        )

    def record_failure(self, folder: FolderSync, uid: int, error: str) -> None:
        folder.result.failed_uids.append(uid)
        self.parts.progress.warn(_("folder {folder!r}: UID {uid} skipped: {error}").format(
            folder=folder.info.name, uid=uid, error=error))
        with self.state.transaction():
            self.state.record_failure(folder.record.id, folder.uidvalidity, uid, error)

    def apply_flags(self, folder: FolderSync, changes: dict[int, tuple[str, ...]]) -> None:
        """New server flags for stored messages, in the store (a Maildir name) and the state."""
        record = folder.record
        with self.state.transaction():
            for uid, flags in changes.items():
                message = self.state.message(record.id, folder.uidvalidity, uid)
                if message is not None:
                    self.store.set_flags(record.local_path, message, flags)
                    self.state.set_flags(record.id, folder.uidvalidity, uid, flags)
        folder.result.flags_updated += len(changes)
