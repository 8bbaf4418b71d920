"""The backup engine: brings one account's archive up to date with its server.

Per folder: one STATUS decides whether anything changed; if so EXAMINE,
list UIDs, store what is new in batches, carry flag changes, mark what the
server no longer has.  The decisions are data (plan.py: `plan_start`,
`plan_folder`); this module gathers what they need and executes them, with
its parts: recovery.py (what a killed run left), fetch.py (streaming and
isolating), commit.py (the crash-safe write order: pending rows committed →
mail bytes written and fsynced → messages committed).  A dropped connection
is retried with backoff and a busy server waited out (imap/retry.py).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePosixPath

from mailbackup.archive import Archive
from mailbackup.errors import FolderError, Interrupted, MailbackupError, ServerError
from mailbackup.i18n import _
from mailbackup.imap.listing import list_folder
from mailbackup.imap.opening import Ahead, FirstBodies
from mailbackup.imap.pushback import pushback_of, stopped_by_pushback
from mailbackup.imap.session import ImapSession
from mailbackup.localerrors import local_error
from mailbackup.model import FolderInfo, FolderResult, FolderStatus, MessageMeta, RunStats, SelectedFolder
from mailbackup.state.db import FolderRecord
from mailbackup.state.rows import now_iso
from mailbackup.store.guarded import remove
from mailbackup.store.naming import local_path_for, path_key, unique_local_path
from mailbackup.sync import allmail, habits, parallel, plan
from mailbackup.sync.commit import Committer
from mailbackup.sync.fetch import Fetcher
from mailbackup.sync.folder import BackupOptions, BackupProgress, FolderSync, NoBackupProgress, SyncParts
from mailbackup.sync.recovery import recover, repair
from mailbackup.uids import SortedUids

FEW_FLAGS = 5_000  # flag answers up to this many UIDs are matched by UID, larger ones against the whole folder
# A login answered this fast means a near server (loopback: 3-5 ms, a LAN; a link of 25 ms each way takes 50 ms or
# more): one connection's pipeline keeps up with it.
NEAR_LOGIN_SECONDS = 0.04


@dataclass
class _NewFolderNames:
    """The path keys of every folder directory, read once, shared by a run's connections."""

    keys: set[str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _comes_whole(status: FolderStatus, first_bodies: FirstBodies | None) -> bool:
    """The folder's opening answers all there is to fetch: it is empty, or its bodies come with it."""
    return status.messages == 0 or first_bodies is not None


class BackupEngine:
    def __init__(self, session: ImapSession, archive: Archive, options: BackupOptions,
                 progress: BackupProgress | None = None) -> None:
        self.session = session
        self.archive = archive
        self.state = archive.state
        self.options = options
        self.progress = progress or NoBackupProgress()
        self.parts = SyncParts(session, archive, options, self.progress)
        self.committer = Committer(self.parts)
        self.fetcher = Fetcher(self.parts, self.committer)
        self._names = _NewFolderNames()
        self._statuses: dict[str, FolderStatus] = {}  # read with the folder list, where the server can
        self._status_errors: dict[str, FolderError | ServerError] = {}  # statuses read before the run that failed
        self._queue: parallel.FolderQueue | None = None  # the folders `sync_in_turn` takes from
        # The next folders, taken from the queue while this one is synced: their openings go out behind its own.
        self._taken_ahead: deque[tuple[FolderInfo, Ahead]] = deque()

    # -- the run ------------------------------------------------------
    def run(self) -> RunStats:
        started = time.monotonic()
        stats = RunStats()
        run_id = None if self.options.dry_run else self.state.start_run("backup")
        if not self.options.dry_run:
            self._clean_spool()
        habits.recall(self.state, self.session)
        crew = parallel.Crew(self)
        hired = self.options.connections > 1 and not self.state.folders()
        if hired:
            # A first backup has work in every folder that holds mail: the other
            # connections log in while the folder list is read.
            crew.hire(self.options.connections - 1)
        try:
            server_folders, self._statuses = self.parts.call(None, self._list_folders)
            self._note_vanished_folders(server_folders)
            selected = plan.select_folders(server_folders, self.options.include, self.options.exclude)
            expected = self._announce(selected)
            order, busy = self._arrange(selected, expected)
            extra = min(self.options.connections, max(busy, self._shareable(expected, hired))) - 1
            if extra > 0:
                stats.folders.extend(crew.work(order, extra))
            else:
                crew.dismiss()
                self.sync_in_turn(selected, lambda _info, result: stats.folders.append(result))
            if self.options.should_stop():
                stats.interrupted = self.options.stop.is_set()
                stats.out_of_time = not stats.interrupted
            elif not self.options.dry_run:
                stats.folders.extend(allmail.check_skipped(self.parts, server_folders))
        except BaseException:
            # A run that ended in an error must never count as the last good backup.
            self._finish_run(run_id, stats, started, "failed")
            raise
        finally:
            crew.dismiss()
            if not self.options.dry_run:
                habits.remember(self.state, self.session)
        self._finish_run(run_id, stats, started, None)
        return stats

    def sync_in_turn(self, folders: Iterable[FolderInfo],
                     keep: Callable[[FolderInfo, FolderResult], None]) -> None:
        """Sync folder after folder on this engine's connection, until done or stopped."""
        self._queue = queue = folders if isinstance(folders, parallel.FolderQueue) else parallel.FolderQueue(
            list(folders))
        try:
            while (info := self._taken_ahead.popleft()[0] if self._taken_ahead else queue.take()) is not None:
                if self.options.should_stop():
                    break
                result = FolderResult(name=info.name)
                keep(info, result)
                try:
                    self._sync_folder_safely(info, result)
                except Interrupted:
                    break
                if not self._taken_ahead:  # the next folder is not one to hold
                    self.committer.flush()
        except BaseException:
            self._save_held()
            raise
        else:
            self.committer.flush()
        finally:
            self._queue = None
            self._taken_ahead.clear()

    def _save_held(self) -> None:
        """The small folders held when the run ends in an error: whole, so kept
        if the archive can take them; never instead of the error that ended it."""
        try:
            self.committer.flush()
        except Exception as exc:  # a store or the state may let a raw local failure through (a full disk)
            failure = exc if isinstance(exc, MailbackupError) else local_error(exc)
            if failure is None:
                raise  # not the archive's: a bug is never hidden
            self.progress.warn(_("the small folders fetched last could not be saved ({error}); the next run "
                                 "fetches them again").format(error=failure.message))

    def sibling(self, session: ImapSession, archive: Archive, progress: BackupProgress) -> BackupEngine:
        """An engine for another connection of the same run (parallel.py): it shares
        what the folder list told and the names handed out to new folders."""
        twin = BackupEngine(session, archive, self.options, progress)
        twin._statuses, twin._status_errors = self._statuses, self._status_errors
        twin._names = self._names
        return twin

    @staticmethod
    def _arrange(selected: list[FolderInfo], expected: dict[str, tuple[int, int | None]]
                 ) -> tuple[list[FolderInfo], int]:
        """The order for several connections, and how many folders have work: first
        the folders the status says are unchanged (no round trip: done while the
        other connections log in), then the biggest first, so that no connection
        is left with a big folder at the end.  A folder without a status has work."""
        def work(info: FolderInfo) -> int:
            new, size = expected.get(info.name, (1, None))
            return max(new, size or 0) if new else 0  # bytes where the server told them

        idle = [info for info in selected if not work(info)]
        busy = sorted((info for info in selected if work(info)), key=work, reverse=True)
        return idle + busy, len(busy)

    def _shareable(self, expected: dict[str, tuple[int, int | None]], hired: bool) -> int:
        """How many connections the biggest folder's batches could keep busy
        (sharing.py), each with a full pipeline.  Sharing hides a far link's
        round trips; near the server, connections not already open are not
        opened for it: each costs a login and holds its own batches (1,000 new
        messages into a 20,000-message folder on loopback took as long on one
        connection and 33 MB at peak, against 36-41 MB on four)."""
        if not self.archive.store.concurrent_writers or self.options.dry_run:
            return 0
        login = self.session.login_seconds
        if not hired and login is not None and login < NEAR_LOGIN_SECONDS:
            return 0
        options = self.options
        return max((plan.batches_expected(new, size, options.batch_messages, self.fetcher.batch_limit())
                    for new, size in expected.values()), default=0) // max(1, options.pipeline_depth)

    def _announce(self, selected: list[FolderInfo]) -> dict[str, tuple[int, int | None]]:
        """Tell the progress what the run expects, before the first download, so
        its totals hold from the start; per folder with a status, the messages
        (and bytes) it expects.  Statuses the folder list did not bring
        are read now, pipelined (each folder's sync then uses them: no extra round
        trip); a folder the pipelined read left out is asked alone."""
        unknown = [info.name for info in selected if info.name not in self._statuses and info.selectable]
        if unknown:
            self._statuses.update(self.parts.call(None, partial(self.session.statuses, unknown)))
        for info in selected:
            if info.name not in self._statuses and info.selectable:
                try:
                    self._statuses[info.name] = self.parts.call(None, partial(self.session.status, info.name))
                except (FolderError, ServerError) as exc:
                    self._status_errors[info.name] = exc  # the folder's own sync reports it, as it would have
        expected = {info.name: plan.expected_new(self.state.folder(info.name), status) for info in selected
                    if (status := self._statuses.get(info.name)) is not None}
        sizes = [size for _new, size in expected.values()]
        self.progress.run_start(sum(new for new, _size in expected.values()),
                                None if None in sizes else sum(size for size in sizes if size is not None))
        return expected

    def _finish_run(self, run_id: int | None, stats: RunStats, started: float, status: str | None) -> None:
        stats.seconds = time.monotonic() - started
        if run_id is None:
            return
        if status is None:
            stopped = stats.interrupted or stats.out_of_time
            status = "interrupted" if stopped else ("warnings" if stats.has_warnings else "ok")
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
                if leftover.is_file() or leftover.is_symlink():
                    remove(leftover, self.archive.root)

    def _sync_folder_safely(self, info: FolderInfo, result: FolderResult) -> None:
        try:
            self._sync_folder(info, result)
        except (FolderError, ServerError) as exc:
            busy = pushback_of(exc)
            if busy is not None and self.options.busy_wait.in_place_limit is None:
                # Waited as long as this run may (a sweep requeues instead): the next folders would
                # only meet the same answer, and a daily cap is not the messages' fault.
                result.error = exc.message
                raise stopped_by_pushback(busy) from None
            result.error = exc.message
            self.progress.warn(_("folder {folder!r}: {error}").format(folder=info.name, error=exc.message))
        finally:
            self.committer.when_saved(result, partial(self.progress.folder_done, result))

    # -- one folder ---------------------------------------------------
    def _sync_folder(self, info: FolderInfo, result: FolderResult) -> None:
        record = self._folder_record(info)
        folder = FolderSync(info=info, record=record, result=result, committed=record.mbox_committed)
        if not self.options.dry_run:
            self.archive.store.prepare(record.local_path)
            recover(self.parts, folder)
            if self.options.repair:
                repair(self.parts, folder)
        record = folder.record
        # The status read with the folder list may be minutes old by now: good enough to
        # skip an unchanged folder (what arrives meanwhile waits for the next run, as it
        # would a moment later); EXAMINE below gives the figures the folder is synced to.
        if info.name in self._status_errors:
            raise self._status_errors.pop(info.name)
        status = self._statuses.pop(info.name, None) or self.parts.call(None, lambda: self.session.status(info.name))
        start = plan.plan_start(record, status, has_failures=bool(record.id and self.state.failures(record.id)),
                                stored_any=bool(record.id) and self.state.holds_messages(record.id),
                                refresh_flags=self.options.refresh_flags, new_slice=self.options.new_slice)
        if start.skip:
            result.skipped_unchanged = True
            return
        try:
            first_bodies = self._first_bodies(status) if start.list_with_examine else None
            facts = self._gather(folder, start.list_with_examine, first_bodies,
                                 whole=_comes_whole(status, first_bodies))
            folder.together = first_bodies is not None and not folder.new_generation
            todo = plan.plan_folder(facts)
            self._check_stored(folder, facts, todo)
            selected, consistent = facts.selected, facts.consistent
            del facts  # its UID arrays (800 KB each at 100,000 messages) go before the new mail comes in
            self._execute(folder, selected, todo, consistent=consistent)
        finally:
            self.session.drop_first_bodies()

    def _first_bodies(self, status: FolderStatus) -> FirstBodies | None:
        """A small folder backed up the first time comes whole with its listing
        (one round trip instead of two), when its status says it fits one batch."""
        options = self.options
        if options.dry_run or not 0 < status.messages <= options.batch_messages or status.size is None \
                or status.size > options.whole_folder_bytes:
            return None
        return FirstBodies(count=status.messages, spool_dir=self.archive.spool_dir, spool_above=options.large_message)

    def _take_ahead(self) -> list[Ahead]:
        """Up to pipeline-depth next folders, taken now when their openings can
        go out behind this one's (imap/opening.py): the openings their own
        syncs will ask for, in order."""
        ahead = self._taken_ahead
        # `--pipeline 1` waits for each answer before asking again: nothing goes out ahead then.
        most = self.options.pipeline_depth if self.options.pipeline_depth > 1 else 0
        while self._queue is not None and len(ahead) < most:
            taken = self._queue.take_if(self._opening_of)
            if taken is None:
                break
            ahead.append(taken)
        return [opening for _info, opening in ahead]

    def _opening_of(self, info: FolderInfo) -> Ahead | None:
        """A folder never backed up whose status says it is empty or comes
        whole with its listing: the opening `_sync_folder` will ask for."""
        status = self._statuses.get(info.name)
        if status is None or info.name in self._status_errors or self.state.folder(info.name) is not None:
            return None
        first_bodies = self._first_bodies(status)
        return (info.name, first_bodies) if _comes_whole(status, first_bodies) else None

    def _gather(self, folder: FolderSync, list_with_examine: bool, first_bodies: FirstBodies | None, *,
                whole: bool = False) -> plan.FolderFacts:
        """EXAMINE, what the state holds of this generation, and the server's UIDs;
        when its opening brings the `whole` folder, the next folders' go out with it."""
        name, record = folder.info.name, folder.record
        listed: list[MessageMeta] | None = None
        if list_with_examine:
            tries = itertools.count()  # the bodies with the first try only: a link that drops them gets batches
            then = self._take_ahead() if whole else []
            selected, listed = self.parts.call(None, lambda: self.session.examine_listing(
                name, *((first_bodies, then) if next(tries) == 0 else (None, []))))
        else:
            selected = self.parts.call(None, lambda: self.session.examine(name))
        folder.uidvalidity = selected.uidvalidity
        # Judged from the stored rows, not the folder record: a first run killed
        # before it finished never recorded a UIDVALIDITY, yet stored mail.
        folder.new_generation = bool(record.id) and self.state.has_other_generation(record.id, selected.uidvalidity)
        if folder.new_generation:
            self.progress.warn(_("folder {folder!r}: UIDVALIDITY changed (now {uidvalidity}); starting a new "
                                 "generation, matching what is already stored").format(
                folder=name, uidvalidity=selected.uidvalidity))
        stored = self.state.stored_uids(record.id, folder.uidvalidity) if record.id else SortedUids()
        if plan.wants_listing(selected, stored, self.options.new_slice):
            if listed is None:
                listed = self.parts.call(folder, lambda: self.session.fetch_meta("1:*"))
            listed = plan.below_uidnext(listed, selected)
        else:
            listed = None
        listing = self.parts.call(folder, lambda: list_folder(self.session, listed,
                                                              reopen=lambda: self.session.examine(name)))
        if not listing.consistent:  # keep everything; the numbers go to the user and the report
            self.parts.warn(folder, listing.contradiction(name))
        known = listing.metas if listing.consistent else None
        active = self.state.active_uids(record.id, folder.uidvalidity, stored) if record.id else SortedUids()
        return plan.FolderFacts(record=record, selected=selected, stored=stored, active=active,
                                new_generation=folder.new_generation, known=known, searched=listing.uids,
                                consistent=listing.consistent)

    def _check_stored(self, folder: FolderSync, facts: plan.FolderFacts, todo: plan.FolderPlan) -> None:
        """What the stored copies need before new mail: a warning, new flags."""
        self._warn_if_emptied(folder, facts.selected.exists)
        if todo.sync_flags:
            self._sync_flags(folder, facts.selected.highestmodseq, facts.active)

    def _execute(self, folder: FolderSync, selected: SelectedFolder, todo: plan.FolderPlan, *,
                 consistent: bool) -> None:
        if self.options.dry_run:
            metas = list(todo.known.values()) if todo.known is not None else self.fetcher.fetch_meta(folder, todo.fetch)
            size = sum(meta.size for meta in metas)
            self.progress.folder_start(folder.info.name, len(metas), size)
            folder.result.fetched, folder.result.fetched_bytes = len(metas), size
            return
        self.fetcher.store_in_slices(folder, todo.fetch, todo.known)
        self._finish_folder(folder, selected, todo, consistent=consistent)

    def _folder_record(self, info: FolderInfo) -> FolderRecord:
        record = self.state.folder(info.name)
        if record is not None:
            if record.gone_at:
                self.state.update_folder(record.id, gone_at=None)
            return record
        with self._names.lock:  # two connections must not hand out one directory twice
            try:
                wanted = local_path_for(info.name, info.delimiter)
                if self._names.keys is None:  # read once: a server may list 10,000 folders
                    self._names.keys = self.state.path_keys()
                local = unique_local_path(wanted, self._names.keys)
            except ValueError as exc:
                raise FolderError(_("folder name cannot be stored safely: {reason}").format(reason=exc)) from None
            if self.options.dry_run:
                return FolderRecord(0, info.name, info.delimiter, str(local), None, None, None, None, 0, 0, None,
                                    None)
            key = path_key(PurePosixPath(local))
            self._names.keys.add(key)
            return self.state.add_folder(info.name, info.delimiter, str(local), key)

    def _warn_if_emptied(self, folder: FolderSync, exists: int) -> None:
        record = folder.record
        if exists == 0 and record.id:
            held = len(self.state.active_uids(record.id, record.uidvalidity or folder.uidvalidity))
            if held:
                self.parts.warn(folder, _("folder {folder!r} is EMPTY on the server but the archive holds {count} "
                                          "messages: they are kept and marked gone-from-server").format(
                    folder=folder.info.name, count=held))

    def _sync_flags(self, folder: FolderSync, modseq: int | None, active: SortedUids) -> None:
        record = folder.record
        if not active:
            return
        top = active.last()
        if modseq is not None and record.highestmodseq is not None:
            if modseq == record.highestmodseq:
                return
            server = self.parts.call(folder, lambda: self.session.fetch_flags(f"1:{top}", record.highestmodseq))
        else:
            server = self.parts.call(folder, lambda: self.session.fetch_flags(f"1:{top}"))
        # CHANGEDSINCE answers with a few UIDs: look those up rather than every stored message's flags.
        stored = self.state.flags_of_uids(record.id, folder.uidvalidity, server) if len(server) <= FEW_FLAGS \
            else self.state.flags_of(record.id, folder.uidvalidity)
        changes = plan.changed_flags(stored, server)
        if changes and not self.options.dry_run:
            self.committer.apply_flags(folder, changes)

    def _finish_folder(self, folder: FolderSync, selected: SelectedFolder, todo: plan.FolderPlan, *,
                       consistent: bool = True) -> None:
        """The folder's bookkeeping, in one commit that need not wait for the disk:
        its messages are committed already (a folder stored together with others:
        once they are), and a lost update is redone next run (a profile of 10,000
        small folders: one fsynced commit less per folder)."""
        self.committer.when_saved(folder.result, partial(self._record_finish, folder, selected, todo, consistent))

    def _record_finish(self, folder: FolderSync, selected: SelectedFolder, todo: plan.FolderPlan,
                       consistent: bool) -> None:
        when = now_iso()
        with self.state.bookkeeping():
            # failures of messages the server no longer has are over
            self.state.forget_failures_not_in(folder.record.id, folder.uidvalidity, todo.on_server)
            if todo.gone:
                folder.result.gone = self.state.mark_gone(folder.record.id, folder.uidvalidity, todo.gone, when)
            if folder.new_generation and consistent:  # on a contradictory answer the old copies stay live
                self.state.mark_generation_gone(folder.record.id, folder.uidvalidity, when)
            self.state.update_folder(
                folder.record.id, uidvalidity=folder.uidvalidity, uidnext=selected.uidnext,
                highestmodseq=selected.highestmodseq, server_messages=selected.exists, last_sync=when,
                generation=folder.record.generation + (1 if folder.new_generation else 0),
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

