"""Fetching new messages: sizes a slice at a time, bodies streamed in
batches with several FETCHes in flight, and a batch the server fails on
isolated by halving it until the one message it cannot send is alone (that
one is recorded as failed; the others are stored)."""

from __future__ import annotations

import logging
from collections import deque

from mailbackup.errors import ConnectionLost, Interrupted, MailbackupError, ServerBusy, StorageError
from mailbackup.i18n import _
from mailbackup.imap.pipeline import BatchResult
from mailbackup.imap.pushback import busy_error
from mailbackup.model import FolderResult, MessageMeta
from mailbackup.store.body import MessageBody
from mailbackup.sync import plan
from mailbackup.sync.commit import Committer
from mailbackup.sync.folder import FolderSync, SyncParts
from mailbackup.sync.sharing import BatchQueue, Share, ShareHub

log = logging.getLogger(__name__)
META_CHUNK = 2000  # UIDs per FETCH of sizes


class Fetcher:
    def __init__(self, parts: SyncParts, committer: Committer) -> None:
        self.parts = parts
        self.options = parts.options
        self.committer = committer

    def fetch_meta(self, folder: FolderSync, uids: list[int]) -> list[MessageMeta]:
        session = self.parts.session
        metas: list[MessageMeta] = []
        for start in range(0, len(uids), META_CHUNK):
            chunk = uids[start:start + META_CHUNK]
            metas.extend(self.parts.call(folder, lambda chunk=chunk: session.fetch_meta(chunk)))  # type: ignore[misc]
        return metas

    def store_in_slices(self, folder: FolderSync, uids: list[int], known: dict[int, MessageMeta] | None) -> None:
        """Sizes are read and mail stored one slice of UIDs at a time, so memory
        does not grow with the folder (a folder of 100,000 messages)."""
        if not uids:
            self.parts.progress.folder_start(folder.info.name, 0, 0)
        step = self.options.new_slice
        for start in range(0, len(uids), step):
            wanted = uids[start:start + step]
            metas = [known[uid] for uid in wanted] if known is not None else self.fetch_meta(folder, wanted)
            described = {meta.uid for meta in metas}
            for uid in wanted:
                if uid not in described:  # listed by SEARCH, then no size: never let it pass unnoticed
                    self.committer.record_failure(folder, uid,
                                                  _("the server listed this message but did not describe it"))
            if start == 0:  # the byte total of a folder larger than one slice is extrapolated
                size = sum(meta.size for meta in metas)
                estimate = size * len(uids) // max(1, len(metas))
                self.parts.progress.folder_start(folder.info.name, len(uids), estimate)
            self._store_new(folder, metas)

    def _store_new(self, folder: FolderSync, metas: list[MessageMeta]) -> None:
        """Stream the batches with several FETCHes in flight, sharing the later
        ones with idle connections (sharing.py); the folder is done when every
        batch is stored, whoever stored it."""
        by_uid = {meta.uid: meta for meta in metas}
        # A new folder's bodies that came with its listing are in memory already: one batch, not asked again.
        limit = self.options.whole_folder_bytes if self.parts.session.holds_first_bodies else self.batch_limit()
        queue = BatchQueue(plan.batches(metas, self.options.batch_messages, limit))
        hub = self.parts.hub
        share = self._offer(hub, folder, queue, by_uid)
        try:
            while True:
                self._drain(folder, queue, by_uid)
                if share is None:
                    break
                share.wait_for_helpers()
                if not len(queue):  # else a helper gave batches back: they are this connection's again
                    break
        finally:
            if hub is not None and share is not None:
                hub.withdraw(share)
        if share is not None and share.error is not None:
            raise share.error

    def _offer(self, hub: ShareHub | None, folder: FolderSync, queue: BatchQueue,
               by_uid: dict[int, MessageMeta]) -> Share | None:
        if hub is None or folder.new_generation or not self.parts.store.concurrent_writers \
                or self.parts.session.holds_first_bodies or len(queue) <= hub.min_batches:
            return None
        return hub.offer(folder, queue, by_uid)

    def _drain(self, folder: FolderSync, queue: BatchQueue, by_uid: dict[int, MessageMeta]) -> None:
        """Until the queue is empty: after a lost connection, the batch at the
        head is isolated, then streaming resumes."""
        pushed_back = 0
        while len(queue):
            self._check_stop()
            try:
                self._stream(folder, queue, by_uid)
            except ConnectionLost as exc:
                log.info("connection lost while fetching (%s); isolating the batch in flight", exc.message)
                self.parts.reconnect(folder)
                head = queue.take_first()
                if head is not None:
                    self.committer.commit(folder, self._fetch_isolating(folder, head, by_uid))
            except ServerBusy as exc:  # e.g. Gmail's BYE [ALERT] at its bandwidth cap: not the messages' fault
                pushed_back += 1
                self.options.busy_wait.wait_or_raise(exc, tries=pushed_back, first_delay=self.options.retry_delay,
                                                     stop=self.options.stop)
                self.parts.reconnect(folder)

    def help(self, share: Share, taken: list[list[MessageMeta]]) -> bool:
        """Store `taken`, batches from the back of another connection's folder,
        on this connection, then more while it has some to spare.  False when
        this connection is of no more use (lost, refused): what it held went
        back to the owner."""
        owner = share.folder
        name = owner.info.name
        folder = FolderSync(info=owner.info, record=owner.record, result=FolderResult(name=name),
                            uidvalidity=owner.uidvalidity, committed=owner.committed)
        mine = BatchQueue(taken)
        error: BaseException | None = None
        usable = True
        try:
            selected = self.parts.call(None, lambda: self.parts.session.examine(name))
            if selected.uidvalidity != owner.uidvalidity:  # changed meanwhile: the owner's run sees to it
                return True
            while len(mine):
                self._drain(folder, mine, share.by_uid)
                mine.give_back(share.more(self.options.pipeline_depth))
        except StorageError as exc:  # the owner would meet it too: it ends the folder there
            error = exc
        except MailbackupError as exc:
            log.info("a connection helping with folder %r stopped (%s)", name, exc.message)
            usable = False
        except Exception as exc:
            error = exc
        finally:
            share.queue.give_back(mine.take_all())
            share.leave(folder.result, error)
        return usable

    def batch_limit(self) -> int:
        """Bytes per FETCH: the batches in flight share `batch_bytes`.  Dovecot
        answers pipelined FETCHes as fast as it can, so a later batch's bodies
        arrive while the first is still read (837 of 2,000 new messages in a
        run with three in flight), and all of them are in memory at once."""
        return self.options.batch_bytes // max(1, self.options.pipeline_depth)

    def _stream(self, folder: FolderSync, queue: BatchQueue, by_uid: dict[int, MessageMeta]) -> None:
        sent: deque[list[MessageMeta]] = deque()  # asked for, not yet answered: back to the queue if not stored
        results = self.parts.session.stream_bodies(
            queue.sending(sent), spool_dir=self.parts.archive.spool_dir,
            spool_above=self.options.large_message, depth=self.options.pipeline_depth)
        try:
            for result in results:
                batch = sent.popleft()
                fetched = self._received(result, by_uid)
                received = {got.uid for got, _ in fetched}
                missing = [meta for meta in batch if meta.uid not in received]
                if missing:  # refused or skipped by the server: try them alone, then give up on them
                    # Not while later FETCHes are unanswered on this connection: their answers would be
                    # read as the lone FETCH's.  They are read and dropped, and asked for again after.
                    results.close()
                    fetched += self._fetch_isolating(folder, missing, by_uid)
                self.committer.commit(folder, fetched)
                if missing or self.options.should_stop():
                    break
        finally:
            results.close()
            queue.give_back(sent)
        self._check_stop()

    def _received(self, result: BatchResult, by_uid: dict[int, MessageMeta]) -> list[tuple[MessageMeta, MessageBody]]:
        received = []
        seen: set[int] = set()
        for message in result.messages:
            if message.uid in seen:  # a server that answers twice for one UID: keep the first
                message.body.discard()
                continue
            seen.add(message.uid)
            known = by_uid[message.uid]
            meta = MessageMeta(uid=message.uid, size=message.size, flags=message.flags,
                               internaldate=message.internaldate or known.internaldate)
            received.append((meta, message.body))
        return received

    def _check_stop(self) -> None:
        if self.options.should_stop():  # Ctrl-C, or --max-time
            raise Interrupted(_("stopped by request after the last complete batch"))

    def _fetch_isolating(self, folder: FolderSync, batch: list[MessageMeta],
                         by_uid: dict[int, MessageMeta]) -> list[tuple[MessageMeta, MessageBody]]:
        """Fetch a batch alone; when the server drops us on it every time, halve
        it until the message it fails on is alone, then record that one as failed."""
        uids = [meta.uid for meta in batch]
        try:
            result = self.parts.call(folder, lambda: self._fetch_alone(uids), tries=2)
        except ConnectionLost as exc:
            if len(batch) == 1:
                self.committer.record_failure(folder, batch[0].uid, _("server fails on this message: {error}").format(
                    error=exc.message))
                return []
            middle = len(batch) // 2
            return (self._fetch_isolating(folder, batch[:middle], by_uid)
                    + self._fetch_isolating(folder, batch[middle:], by_uid))
        fetched = self._received(result, by_uid)
        got = {meta.uid for meta, _ in fetched}
        missing = [meta for meta in batch if meta.uid not in got]
        if result.status != "OK" and len(missing) > 1:
            # Some servers refuse the whole FETCH for one message they cannot read: isolate it.
            middle = len(missing) // 2
            return (fetched + self._fetch_isolating(folder, missing[:middle], by_uid)
                    + self._fetch_isolating(folder, missing[middle:], by_uid))
        for meta in missing:
            reason = result.text if result.status != "OK" else _("server returned no body for this message")
            self.committer.record_failure(folder, meta.uid, reason)
        return fetched

    def _fetch_alone(self, uids: list[int]) -> BatchResult:
        results = self.parts.session.stream_bodies([uids], spool_dir=self.parts.archive.spool_dir,
                                                   spool_above=self.options.large_message, depth=1)
        try:
            result = next(results)
        finally:
            results.close()
        if result.status != "OK" and (busy := busy_error(str(self.parts.session.settings.server), result.text)):
            for message in result.messages:
                message.body.discard()
            raise busy  # waited out by the retry policy, like any other pushback
        return result
