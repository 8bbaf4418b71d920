"""Storing what was fetched, in the order that makes a crash harmless:
pending rows committed → mail bytes written and fsynced → messages committed
(store/base.py).  After a UIDVALIDITY change a message already stored in an
earlier generation is moved into the new one instead of being written again;
each old copy is claimed by one new UID only.

Small new folders that come whole with their listing are stored `together`:
their messages are held until `flush()`, then stored in that same order with
one pending commit, one durability step and one message commit for them all
(a profile of a first backup of 2,000 small folders: a syncfs() and two
fsynced commits per folder were a quarter of its time).  What must follow a
held folder's messages (its bookkeeping, its "done") waits for them too
(`when_saved`): a crash before the flush leaves the folder looking never
backed up, so the next run fetches it again."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mailbackup import faults
from mailbackup.headers import HeaderSummary, summarize
from mailbackup.i18n import _
from mailbackup.model import FolderResult, MessageMeta, StoredMessage
from mailbackup.state.rows import now_iso
from mailbackup.store.base import FolderWrite
from mailbackup.store.body import MessageBody
from mailbackup.sync.folder import FolderSync, SyncParts

log = logging.getLogger(__name__)
HELD_FOLDERS = 64  # small folders stored together at most: what a crash makes the next run fetch again

Fetched = list[tuple[MessageMeta, MessageBody]]


class Committer:
    def __init__(self, parts: SyncParts) -> None:
        self.parts = parts
        self.state = parts.state
        self.store = parts.store
        self._held: list[tuple[FolderSync, Fetched]] = []
        self._held_bytes = 0
        self._after: list[Callable[[], None]] = []  # waits for the held messages, in the order given

    def commit(self, folder: FolderSync, items: Fetched) -> None:
        """pending → write + fsync → messages, in that order (crash safety);
        a folder stored `together` is held until `flush()`."""
        if not items:
            return
        if not folder.together:
            self._store([(folder, items)])
            return
        if self._held and self._held[-1][0] is folder:  # one part per folder: an mbox is appended once
            self._held[-1][1].extend(items)
        else:
            self._held.append((folder, list(items)))
        self._held_bytes += sum(body.size for _meta, body in items)
        # Bounded also within a folder: one whose status said small may hold far more (a liar's STATUS).
        if len(self._held) >= HELD_FOLDERS or self._held_bytes >= self.parts.options.batch_bytes:
            self.flush()

    def when_saved(self, result: FolderResult, action: Callable[[], None]) -> None:
        """`action` now, or once the held messages are stored when some are the folder's."""
        if any(folder.result is result for folder, _items in self._held):
            self._after.append(action)
        else:
            action()

    def flush(self) -> None:
        """Store the held messages, then what waited for them."""
        held, after = self._held, self._after
        self._held, self._after, self._held_bytes = [], [], 0
        if held:
            self._store(held)
        for action in after:
            action()

    def _store(self, parts: list[tuple[FolderSync, Fetched]]) -> None:
        try:
            writes: list[FolderWrite] = []
            matched: list[list[tuple[StoredMessage, MessageMeta]]] = []
            for folder, items in parts:
                to_write, moved = self._match(folder, items)
                planned = self.store.plan(folder.record.local_path, [message for message, _ in to_write])
                writes.append(FolderWrite(folder.record.local_path,
                                          list(zip(planned, [body for _, body in to_write], strict=True)),
                                          folder.committed))
                matched.append(moved)
            if any(part.items for part in writes):
                with self.state.transaction():
                    self.state.add_pending([message for part in writes for message, _ in part.items])
                faults.point("after-pending")
            stored = self.store.write_many(writes)
        finally:
            for _folder, items in parts:
                for _meta, body in items:
                    body.discard()
        faults.point("after-write")
        with self.state.transaction():
            for (folder, _items), saved, moved in zip(parts, stored, matched, strict=True):
                self._commit_stored(folder, saved, moved)
        for (folder, _items), saved, moved in zip(parts, stored, matched, strict=True):
            size = sum(message.size for message in saved)
            folder.result.fetched += len(saved)
            folder.result.fetched_bytes += size
            folder.result.matched += len(moved)
            self.parts.progress.saved(len(saved) + len(moved), size + sum(meta.size for _, meta in moved))

    def _match(self, folder: FolderSync, items: Fetched
               ) -> tuple[list[tuple[StoredMessage, MessageBody]], list[tuple[StoredMessage, MessageMeta]]]:
        """The messages to write, and those matched to a copy of an earlier generation (moved, not written)."""
        to_write: list[tuple[StoredMessage, MessageBody]] = []
        matched: list[tuple[StoredMessage, MessageMeta]] = []
        claimed: set[tuple[int, int]] = set()
        for meta, body in items:
            message = self._describe(folder, meta, body)
            old = self._claim_old_copy(folder, message, claimed) if folder.new_generation else None
            if old is not None:
                matched.append((old, meta))
            else:
                to_write.append((message, body))
        return to_write, matched

    def _commit_stored(self, folder: FolderSync, stored: list[StoredMessage],
                       matched: list[tuple[StoredMessage, MessageMeta]]) -> None:
        """In the caller's transaction."""
        record_id = folder.record.id
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
