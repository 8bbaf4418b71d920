"""The backup engine: brings one account's archive up to date with its server.

Per folder: one STATUS decides whether anything changed; if so EXAMINE,
list UIDs, store what is new in batches, carry flag changes, mark what the
server no longer has.  Write order per batch (see store/base.py): pending
rows committed → mail bytes written and fsynced → messages committed.  A
dropped connection is retried with backoff; a message the server fails on
every time is isolated by splitting its batch and recorded as failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol, TypeVar

from mailbackup import faults
from mailbackup.archive import Archive
from mailbackup.errors import ConnectError, ConnectionLost, FolderError, Interrupted, ServerBusy, ServerError
from mailbackup.headers import HeaderSummary, summarize
from mailbackup.i18n import _
from mailbackup.imap.pipeline import BatchResult
from mailbackup.imap.pushback import WaitBudget, busy_error
from mailbackup.imap.session import ImapSession
from mailbackup.model import FolderInfo, FolderResult, FolderStatus, MessageMeta, RunStats, StoredMessage
from mailbackup.state.db import FolderRecord, now_iso
from mailbackup.store.body import MessageBody
from mailbackup.store.naming import local_path_for, path_key, unique_local_path
from mailbackup.sync import plan

log = logging.getLogger(__name__)
T = TypeVar("T")
MEGABYTE = 1 << 20
META_CHUNK = 2000


@dataclass
class BackupOptions:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    batch_messages: int = 500
    batch_bytes: int = 16 * MEGABYTE
    large_message: int = 8 * MEGABYTE  # above this, a body is streamed to a file, not held in memory
    pipeline_depth: int = 3  # FETCH commands in flight: hides round trips on slow links
    new_slice: int = 5000  # new messages handled per slice: bounds memory on huge folders
    dry_run: bool = False
    repair: bool = False  # re-hash every stored copy; fetch damaged ones again from the server
    refresh_flags: bool = False  # without CONDSTORE: re-read all flags even of unchanged folders
    max_retries: int = 5
    retry_delay: float = 1.0  # first backoff; doubles per try
    stop: threading.Event = field(default_factory=threading.Event)
    # Waits a busy server (throttled, too many connections) may cost this run in all.
    busy_wait: WaitBudget = field(default_factory=WaitBudget)


class Progress(Protocol):
    def folder_start(self, name: str, messages: int, size: int) -> None: ...
    def saved(self, messages: int, size: int) -> None: ...
    def folder_done(self, result: FolderResult) -> None: ...
    def warn(self, text: str) -> None: ...


class NoProgress:
    def folder_start(self, name: str, messages: int, size: int) -> None:
        pass

    def saved(self, messages: int, size: int) -> None:
        pass

    def folder_done(self, result: FolderResult) -> None:
        pass

    def warn(self, text: str) -> None:
        log.warning("%s", text)


@dataclass
class FolderRun:
    """Everything known about the folder being synced."""

    info: FolderInfo
    record: FolderRecord
    result: FolderResult
    uidvalidity: int = 0
    new_generation: bool = False
    committed: int = 0  # mbox length covered by the state


class BackupEngine:
    def __init__(self, session: ImapSession, archive: Archive, options: BackupOptions,
                 progress: Progress | None = None) -> None:
        self.session = session
        self.archive = archive
        self.state = archive.state
        self.store = archive.store
        self.options = options
        self.progress = progress or NoProgress()
        self._path_keys: set[str] | None = None
        self._statuses: dict[str, FolderStatus] = {}  # read with the folder list, where the server can

    # -- the run ------------------------------------------------------
    def run(self) -> RunStats:
        started = time.monotonic()
        stats = RunStats()
        run_id = None if self.options.dry_run else self.state.start_run("backup")
        if not self.options.dry_run:
            self._clean_spool()
        try:
            server_folders, self._statuses = self._call(None, self._list_folders)
            self._note_vanished_folders(server_folders)
            for info in plan.select_folders(server_folders, self.options.include, self.options.exclude):
                if self.options.stop.is_set():
                    break
                result = FolderResult(name=info.name)
                stats.folders.append(result)
                try:
                    self._sync_folder_safely(info, result)
                except Interrupted:
                    break
            if self.options.stop.is_set():
                stats.interrupted = True
        except BaseException:
            # A run that ended in an error must never count as the last good backup.
            self._finish_run(run_id, stats, started, "failed")
            raise
        self._finish_run(run_id, stats, started, None)
        return stats

    def _finish_run(self, run_id: int | None, stats: RunStats, started: float, status: str | None) -> None:
        stats.seconds = time.monotonic() - started
        if run_id is None:
            return
        if status is None:
            status = "interrupted" if stats.interrupted else ("warnings" if stats.has_warnings else "ok")
        self.state.finish_run(run_id, status, stats.messages, stats.bytes)

    def _list_folders(self) -> tuple[list[FolderInfo], dict[str, FolderStatus]]:
        """The folders, with every folder's status in the same round trip when the
        server can (a STATUS per folder is a round trip per folder).  Not when
        --include picks a few: the server would open every folder for nothing."""
        if self.options.include:
            return self.session.list_folders(), {}
        return self.session.list_with_status()

    def _clean_spool(self) -> None:
        """Large bodies on their way in from a run that was killed: we hold the
        archive lock, so nothing in the spool belongs to anyone now."""
        spool = self.archive.spool_dir
        if spool.is_dir():
            for leftover in spool.iterdir():
                if leftover.is_file():
                    leftover.unlink()

    def _sync_folder_safely(self, info: FolderInfo, result: FolderResult) -> None:
        try:
            self._sync_folder(info, result)
        except (FolderError, ServerError) as exc:
            result.error = exc.message
            self.progress.warn(_("folder {folder!r}: {error}").format(folder=info.name, error=exc.message))
        finally:
            self.progress.folder_done(result)

    # -- one folder ---------------------------------------------------
    def _sync_folder(self, info: FolderInfo, result: FolderResult) -> None:
        record = self._folder_record(info)
        run = FolderRun(info=info, record=record, result=result, committed=record.mbox_committed)
        if not self.options.dry_run:
            self.store.prepare(record.local_path)
            self._recover(run)
            if self.options.repair:
                self._repair(run)
            record = run.record
        # The status read with the folder list may be minutes old by now: good enough to
        # skip an unchanged folder (what arrives meanwhile waits for the next run, as it
        # would a moment later); EXAMINE below gives the figures the folder is synced to.
        status = self._statuses.pop(info.name, None) or self._call(None, lambda: self.session.status(info.name))
        has_failures = bool(record.id and self.state.failures(record.id))
        if plan.is_unchanged(record, status, has_failures=has_failures) and not self.options.refresh_flags:
            result.skipped_unchanged = True
            return
        listed: list[MessageMeta] | None = None
        if not (record.id and self.state.count_messages(record.id)) and status.messages <= self.options.new_slice:
            # Nothing stored yet: UIDs and sizes come in the same round trip as EXAMINE.
            selected, listed = self._call(None, lambda: self.session.examine_listing(info.name))
        else:
            selected = self._call(None, lambda: self.session.examine(info.name))
        run.uidvalidity = selected.uidvalidity
        # Judged from the stored rows, not the folder record: a first run killed
        # before it finished never recorded a UIDVALIDITY, yet stored mail.
        run.new_generation = bool(record.id) and self.state.has_other_generation(record.id, selected.uidvalidity)
        if run.new_generation:
            self.progress.warn(_("folder {folder!r}: UIDVALIDITY changed (now {uidvalidity}); starting a new "
                                 "generation, matching what is already stored").format(
                folder=info.name, uidvalidity=selected.uidvalidity))
        stored = self.state.stored_uids(record.id, run.uidvalidity) if record.id else set()
        active = self.state.active_uids(record.id, run.uidvalidity) if record.id else set()
        known: dict[int, MessageMeta] | None = None
        if selected.exists and not stored and selected.exists <= self.options.new_slice:
            # Nothing of this generation stored yet: the sizes come with the UIDs
            # (on a 50 ms link, a round trip per folder is worth saving).
            if listed is None:
                listed = self._call(run, lambda: self.session.fetch_meta("1:*"))
            known = {meta.uid: meta for meta in listed if meta.uid < selected.uidnext}
            if len(known) != selected.exists:  # a server that hides or invents messages: ask SEARCH
                known = None
        if known is not None:
            server_uids = sorted(known)
        else:
            server_uids = self._call(run, lambda: self.session.search_uids(1)) if selected.exists else []
        diff = plan.diff_uids(server_uids, stored, active)
        self._warn_if_emptied(run, selected.exists)
        if not run.new_generation and record.uidvalidity:
            self._sync_flags(run, record, selected.highestmodseq, active)
        if self.options.dry_run:
            metas = list(known.values()) if known is not None else self._fetch_meta(run, diff.new)
            self.progress.folder_start(info.name, len(metas), sum(meta.size for meta in metas))
            result.fetched, result.fetched_bytes = len(metas), sum(meta.size for meta in metas)
            return
        self._store_in_slices(run, diff.new, known)
        with self.state.transaction():  # failures of messages the server no longer has are over
            self.state.forget_failures_not_in(record.id, run.uidvalidity, set(server_uids))
        self._finish_folder(run, selected.uidnext, selected.highestmodseq, selected.exists, diff.gone)

    def _folder_record(self, info: FolderInfo) -> FolderRecord:
        record = self.state.folder(info.name)
        if record is not None:
            if record.gone_at:
                self.state.update_folder(record.id, gone_at=None)
            return record
        try:
            wanted = local_path_for(info.name, info.delimiter)
            if self._path_keys is None:  # read once: a server may list 10,000 folders
                self._path_keys = self.state.path_keys()
            local = unique_local_path(wanted, self._path_keys)
        except ValueError as exc:
            raise FolderError(_("folder name cannot be stored safely: {reason}").format(reason=exc)) from None
        if self.options.dry_run:
            return FolderRecord(0, info.name, info.delimiter, str(local), None, None, None, None, 0, 0, None, None)
        key = path_key(PurePosixPath(local))
        self._path_keys.add(key)
        return self.state.add_folder(info.name, info.delimiter, str(local), key)

    def _recover(self, run: FolderRun) -> None:
        """Finish what a killed run left: keep whole writes, drop torn ones."""
        self._settle_rewrite(run)
        pending = self.state.pending(run.record.id)
        recovery = self.store.recover(run.record.local_path, pending, run.committed)
        if recovery.shorter_than_committed is not None:
            self._forget_lost_tail(run, recovery.shorter_than_committed)
            return
        if not pending and recovery.mbox_committed in (None, run.committed):
            return
        with self.state.transaction():
            self.state.insert_messages(m for m in recovery.completed
                                       if not self.state.message(m.folder_id, m.uidvalidity, m.uid))
            self.state.clear_pending(run.record.id)
            if recovery.mbox_committed is not None:
                self.state.update_folder(run.record.id, mbox_committed=recovery.mbox_committed)
                run.committed = recovery.mbox_committed
        if pending:
            log.info("folder %r: recovered %d of %d messages from an interrupted run",
                     run.info.name, len(recovery.completed), len(pending))

    def _repair(self, run: FolderRun) -> None:
        """Re-hash every stored copy; remove the damaged ones that the server
        still has so this run fetches them again.  Copies of mail the server
        no longer holds are kept (verify keeps naming them)."""
        rows = list(self.state.messages(run.record.id))
        damaged = [row for row in rows if self.store.is_damaged(run.record.local_path, row)]
        fixable = [row for row in damaged if row.gone_at is None]
        if fixable:
            gone = {(row.uidvalidity, row.uid) for row in fixable}
            kept = [row for row in rows if (row.uidvalidity, row.uid) not in gone]
            rewritten = self.store.discard(run.record.local_path, fixable, kept)
            rewrite_key = f"rewrite:{run.record.id}"
            with self.state.transaction():
                self.state.forget_messages(fixable)
                if self.store.format == "mbox":
                    self.state.set_mbox_places(rewritten)
                    run.committed = sum(row.mbox_length or 0 for row in rewritten)
                    self.state.update_folder(run.record.id, mbox_committed=run.committed)
                    self.state.set_meta(rewrite_key, "1")
            self._settle_rewrite(run)
            run.record = self.state.folder_by_id(run.record.id)
        if damaged:
            text = _("folder {folder!r}: {damaged} damaged copies found; {fixed} fetched again").format(
                folder=run.info.name, damaged=len(damaged), fixed=len(fixable))
            if len(damaged) > len(fixable):
                text += _(", {count} no longer on the server (kept as they are)").format(
                    count=len(damaged) - len(fixable))
            run.result.warnings.append(text)
            self.progress.warn(text)

    def _settle_rewrite(self, run: FolderRun) -> None:
        """An mbox rewrite (repair) is in place once the state says so: the
        state is committed first, the file renamed after."""
        key = f"rewrite:{run.record.id}"
        committed = self.state.get_meta(key) is not None
        self.store.settle_rewrite(run.record.local_path, committed=committed)
        if committed:
            with self.state.transaction():
                self.state.delete_meta(key)

    def _forget_lost_tail(self, run: FolderRun, length: int) -> None:
        """The folder's mbox was cut short by something else (a disk problem, a
        mail client): forget the lost entries so the server's copies are fetched
        again, and cut the file back to its last whole entry."""
        # Cut first, then commit: cutting again after a crash is harmless, while
        # a committed state over an uncut file would be refused on the next run.
        self.store.cut_back(run.record.local_path, self.state.mbox_end_within(run.record.id, length))
        with self.state.transaction():
            self.state.clear_pending(run.record.id)
            dropped, committed = self.state.forget_mbox_tail(run.record.id, length)
        run.committed = committed
        run.record = self.state.folder_by_id(run.record.id)
        text = _("folder {folder!r}: the mbox file was shorter than recorded; {count} messages were lost locally "
                 "and are fetched again from the server").format(folder=run.info.name, count=dropped)
        run.result.warnings.append(text)
        self.progress.warn(text)

    def _warn_if_emptied(self, run: FolderRun, exists: int) -> None:
        if exists == 0 and run.record.id:
            held = len(self.state.active_uids(run.record.id, run.record.uidvalidity or run.uidvalidity))
            if held:
                text = _("folder {folder!r} is EMPTY on the server but the archive holds {count} messages: they "
                         "are kept and marked gone-from-server").format(folder=run.info.name, count=held)
                run.result.warnings.append(text)
                self.progress.warn(text)

    # -- flags --------------------------------------------------------
    def _sync_flags(self, run: FolderRun, record: FolderRecord, modseq: int | None, active: set[int]) -> None:
        if not active:
            return
        top = max(active)
        if modseq is not None and record.highestmodseq is not None:
            if modseq == record.highestmodseq:
                return
            server = self._call(run, lambda: self.session.fetch_flags(f"1:{top}", record.highestmodseq))
        else:
            server = self._call(run, lambda: self.session.fetch_flags(f"1:{top}"))
        stored = self.state.flags_of(record.id, run.uidvalidity)
        changes = plan.changed_flags(stored, server)
        if not changes or self.options.dry_run:
            return
        with self.state.transaction():
            for uid, flags in changes.items():
                message = self.state.message(record.id, run.uidvalidity, uid)
                if message is not None:
                    self.store.set_flags(record.local_path, message, flags)
                    self.state.set_flags(record.id, run.uidvalidity, uid, flags)
        run.result.flags_updated += len(changes)

    # -- new messages -------------------------------------------------
    def _fetch_meta(self, run: FolderRun, uids: list[int]) -> list[MessageMeta]:
        metas: list[MessageMeta] = []
        for start in range(0, len(uids), META_CHUNK):
            chunk = uids[start:start + META_CHUNK]
            metas.extend(self._call(run, lambda chunk=chunk: self.session.fetch_meta(chunk)))  # type: ignore[misc]
        return metas

    def _store_in_slices(self, run: FolderRun, uids: list[int], known: dict[int, MessageMeta] | None) -> None:
        """Sizes are read and mail stored one slice of UIDs at a time, so memory
        does not grow with the folder (a folder of 100,000 messages)."""
        if not uids:
            self.progress.folder_start(run.info.name, 0, 0)
        step = self.options.new_slice
        for start in range(0, len(uids), step):
            wanted = uids[start:start + step]
            metas = [known[uid] for uid in wanted] if known is not None else self._fetch_meta(run, wanted)
            described = {meta.uid for meta in metas}
            for uid in wanted:
                if uid not in described:  # listed by SEARCH, then no size: never let it pass unnoticed
                    self._record_failure(run, uid, _("the server listed this message but did not describe it"))
            if start == 0:  # the byte total of a folder larger than one slice is extrapolated
                size = sum(meta.size for meta in metas)
                self.progress.folder_start(run.info.name, len(uids), size * len(uids) // max(1, len(metas)))
            self._store_new(run, metas)

    def _store_new(self, run: FolderRun, metas: list[MessageMeta]) -> None:
        """Stream the batches with several FETCHes in flight; after a lost
        connection, the batch at the head is isolated, then streaming resumes."""
        by_uid = {meta.uid: meta for meta in metas}
        remaining = deque(plan.batches(metas, self.options.batch_messages, self.options.batch_bytes))
        while remaining:
            self._check_stop()
            try:
                self._stream(run, remaining, by_uid)
            except ConnectionLost as exc:
                log.info("connection lost while fetching (%s); isolating the batch in flight", exc.message)
                self._reconnect(run)
                self._commit(run, self._fetch_isolating(run, remaining.popleft(), by_uid))

    def _stream(self, run: FolderRun, remaining: deque[list[MessageMeta]], by_uid: dict[int, MessageMeta]) -> None:
        results = self.session.stream_bodies(
            [[meta.uid for meta in batch] for batch in list(remaining)], spool_dir=self.archive.spool_dir,
            spool_above=self.options.large_message, depth=self.options.pipeline_depth)
        try:
            for result in results:
                batch = remaining.popleft()
                fetched = self._received(result, by_uid)
                received = {got.uid for got, _ in fetched}
                missing = [meta for meta in batch if meta.uid not in received]
                if missing:  # refused or skipped by the server: try them alone, then give up on them
                    fetched += self._fetch_isolating(run, missing, by_uid)
                self._commit(run, fetched)
                if self.options.stop.is_set():
                    break
        finally:
            results.close()
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
        if self.options.stop.is_set():
            raise Interrupted(_("stopped by request after the last complete batch"))

    def _fetch_isolating(self, run: FolderRun, batch: list[MessageMeta],
                         by_uid: dict[int, MessageMeta]) -> list[tuple[MessageMeta, MessageBody]]:
        """Fetch a batch alone; when the server drops us on it every time, halve
        it until the message it fails on is alone, then record that one as failed."""
        uids = [meta.uid for meta in batch]
        try:
            result = self._call(run, lambda: self._fetch_alone(uids), tries=2)
        except ConnectionLost as exc:
            if len(batch) == 1:
                self._record_failure(run, batch[0].uid, _("server fails on this message: {error}").format(
                    error=exc.message))
                return []
            middle = len(batch) // 2
            return (self._fetch_isolating(run, batch[:middle], by_uid)
                    + self._fetch_isolating(run, batch[middle:], by_uid))
        fetched = self._received(result, by_uid)
        got = {meta.uid for meta, _ in fetched}
        missing = [meta for meta in batch if meta.uid not in got]
        if result.status != "OK" and len(missing) > 1:
            # Some servers refuse the whole FETCH for one message they cannot read: isolate it.
            middle = len(missing) // 2
            return (fetched + self._fetch_isolating(run, missing[:middle], by_uid)
                    + self._fetch_isolating(run, missing[middle:], by_uid))
        for meta in missing:
            reason = result.text if result.status != "OK" else _("server returned no body for this message")
            self._record_failure(run, meta.uid, reason)
        return fetched

    def _fetch_alone(self, uids: list[int]) -> BatchResult:
        results = self.session.stream_bodies([uids], spool_dir=self.archive.spool_dir,
                                             spool_above=self.options.large_message, depth=1)
        try:
            result = next(results)
        finally:
            results.close()
        if result.status != "OK" and (busy := busy_error(str(self.session.settings.server), result.text)):
            for message in result.messages:
                message.body.discard()
            raise busy  # waited out by _call, like any other pushback
        return result

    def _record_failure(self, run: FolderRun, uid: int, error: str) -> None:
        run.result.failed_uids.append(uid)
        self.progress.warn(_("folder {folder!r}: UID {uid} skipped: {error}").format(
            folder=run.info.name, uid=uid, error=error))
        with self.state.transaction():
            self.state.record_failure(run.record.id, run.uidvalidity, uid, error)

    def _commit(self, run: FolderRun, items: list[tuple[MessageMeta, MessageBody]]) -> None:
        """pending → write + fsync → messages, in that order (crash safety)."""
        if not items:
            return
        to_write: list[tuple[StoredMessage, MessageBody]] = []
        matched: list[tuple[StoredMessage, MessageMeta]] = []
        for meta, body in items:
            message = self._describe(run, meta, body)
            old = self.state.find_old_copy(run.record.id, run.uidvalidity, body.sha256, body.size,
                                           message.message_id) if run.new_generation else None
            if old is not None:
                matched.append((old, meta))
                body.discard()
            else:
                to_write.append((message, body))
        planned = self.store.plan(run.record.local_path, [message for message, _ in to_write])
        bodies = [body for _, body in to_write]
        if planned:
            with self.state.transaction():
                self.state.add_pending(planned)
            faults.point("after-pending")
        try:
            stored = self.store.write(run.record.local_path, list(zip(planned, bodies, strict=True)), run.committed)
        finally:
            for body in bodies:
                body.discard()
        faults.point("after-write")
        with self.state.transaction():
            self.state.insert_messages(stored)
            self.state.clear_pending(run.record.id)
            for old, meta in matched:
                self.store.set_flags(run.record.local_path, old, meta.flags)
                self.state.move_to_generation(old, run.uidvalidity, meta.uid, meta.flags)
            for message in stored:
                self.state.clear_failure(run.record.id, run.uidvalidity, message.uid)
            if stored and stored[-1].mbox_offset is not None:
                last = stored[-1]
                run.committed = (last.mbox_offset or 0) + (last.mbox_length or 0)
                self.state.update_folder(run.record.id, mbox_committed=run.committed)
        size = sum(message.size for message in stored)
        run.result.fetched += len(stored)
        run.result.fetched_bytes += size
        run.result.matched += len(matched)
        self.progress.saved(len(stored) + len(matched), size + sum(meta.size for _, meta in matched))

    def _describe(self, run: FolderRun, meta: MessageMeta, body: MessageBody) -> StoredMessage:
        try:
            headers = summarize(body.head())
        except Exception:  # a header nothing can parse never stops a backup: its bytes are kept as they are
            log.debug("UID %d: header fields unreadable", meta.uid, exc_info=True)
            headers = HeaderSummary(None, None, None, None)
        return StoredMessage(
            folder_id=run.record.id, uidvalidity=run.uidvalidity, uid=meta.uid, size=body.size,
            sha256=body.sha256, internaldate=meta.internaldate, flags=meta.flags,
            message_id=headers.message_id, subject=headers.subject, sender=headers.sender,
            location=None, saved_at=now_iso(),
        )

    def _finish_folder(self, run: FolderRun, uidnext: int, modseq: int | None, exists: int, gone: list[int]) -> None:
        when = now_iso()
        with self.state.transaction():
            if gone:
                run.result.gone = self.state.mark_gone(run.record.id, run.uidvalidity, gone, when)
            if run.new_generation:
                self.state.mark_generation_gone(run.record.id, run.uidvalidity, when)
            self.state.update_folder(
                run.record.id, uidvalidity=run.uidvalidity, uidnext=uidnext, highestmodseq=modseq,
                server_messages=exists, last_sync=when,
                generation=run.record.generation + (1 if run.new_generation else 0),
            )

    def _note_vanished_folders(self, server_folders: list[FolderInfo]) -> None:
        names = {folder.name for folder in server_folders}
        for record in self.state.folders():
            if record.name not in names and not record.gone_at and not self.options.dry_run:
                held = self.state.count_messages(record.id)
                self.progress.warn(_("folder {folder!r} is no longer on the server; its {count} archived messages "
                                     "are kept").format(folder=record.name, count=held))
                with self.state.transaction():
                    self.state.update_folder(record.id, gone_at=now_iso())

    # -- retries ------------------------------------------------------
    def _call(self, run: FolderRun | None, action: Callable[[], T], tries: int | None = None) -> T:
        """Run an IMAP action; on a lost connection reconnect (with backoff),
        re-select the folder and try again, `tries` times in all.  A server
        that says it is busy is waited for as it asks (not counted as a try),
        within `options.busy_wait`."""
        attempts = tries or (self.options.max_retries + 1)
        attempt = busy_tries = 0
        while True:
            try:
                return action()
            except ConnectionLost as exc:
                attempt += 1
                if attempt == attempts:
                    raise
                log.info("connection lost (%s); reconnecting, try %d", exc.message, attempt)
                self._reconnect(run)
            except (ServerBusy, FolderError) as exc:
                busy_tries += 1
                self.options.busy_wait.wait_or_raise(exc, tries=busy_tries, first_delay=self.options.retry_delay,
                                                     stop=self.options.stop)

    def _reconnect(self, run: FolderRun | None) -> None:
        delay = self.options.retry_delay
        attempt = busy_tries = 0
        time.sleep(delay)
        while True:
            try:
                self.session.reconnect()
                if run is not None:
                    self.session.examine(run.info.name)
                return
            except (ConnectionLost, ConnectError) as exc:
                attempt += 1
                if attempt >= self.options.max_retries:
                    raise ConnectError(_("could not reconnect after {count} tries: {error}").format(
                        count=attempt, error=exc.message)) from None
                delay = min(delay * 2, 60.0)
                time.sleep(delay)
            except (ServerBusy, FolderError) as exc:  # e.g. NO [LIMIT] too many connections at login
                busy_tries += 1
                self.options.busy_wait.wait_or_raise(exc, tries=busy_tries, first_delay=self.options.retry_delay,
                                                     stop=self.options.stop)


def describe_stats_line(stats: RunStats) -> str:
    return _("{folders} folders, {count} messages, {megabytes:.1f} MB in {seconds:.1f} s").format(
        folders=len(stats.folders), count=stats.messages, megabytes=stats.bytes / MEGABYTE, seconds=stats.seconds)

