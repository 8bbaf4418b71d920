"""Folders synced on several connections at once (`--connections N`).

On a slow link a folder costs round trips that no pipelining on one
connection can hide: EXAMINE with its listing must be answered before the
FETCH it decides can be sent.  With N connections, N folders wait at once.

Each extra connection is a worker thread with its own IMAP session, its own
connection to the state database (SQLite in WAL mode serializes the
writers; every transaction is BEGIN IMMEDIATE) and its own engine parts;
the folder store is shared.  Each folder has one owner; a worker with no
folder left stores batches of a big Maildir folder another owns
(sharing.py).  The crash-safety contract is the one-connection contract,
batch by batch, and the owner finishes its folder after the last batch.

A worker is only started when there are folders with work for it, and
only when the run may open another connection (a sweep counts them against
its per-server cap); one that cannot connect leaves its share to the
others.  The first error that would end a one-connection run (a full disk,
a server that cannot be reached again) ends this one too, once the folders
in hand are finished.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from mailbackup.archive import Archive
from mailbackup.errors import MailbackupError
from mailbackup.model import FolderInfo, FolderResult
from mailbackup.state.db import StateDB
from mailbackup.sync.folder import BackupProgress
from mailbackup.sync.sharing import ShareHub

if TYPE_CHECKING:
    from mailbackup.sync.engine import BackupEngine

log = logging.getLogger(__name__)
T = TypeVar("T")


class FolderQueue:
    """The folders still to sync, handed out one at a time to whichever worker asks."""

    def __init__(self, folders: list[FolderInfo]) -> None:
        self._folders = list(reversed(folders))
        self._lock = threading.Lock()
        self.failures: list[BaseException] = []

    def __iter__(self) -> Iterator[FolderInfo]:
        while (folder := self.take()) is not None:
            yield folder

    def take(self) -> FolderInfo | None:
        """The next folder; None when none is left or a worker failed."""
        taken = self.take_if(lambda _info: True)
        return None if taken is None else taken[0]

    def take_if(self, fits: Callable[[FolderInfo], T | None]) -> tuple[FolderInfo, T] | None:
        """The next folder with what `fits` says of it, unless that is None."""
        with self._lock:
            if self.failures or not self._folders or (said := fits(self._folders[-1])) is None:
                return None
            return self._folders.pop(), said

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self.failures.append(exc)


class LockedProgress:
    """One progress display fed by several workers: one call at a time."""

    def __init__(self, inner: BackupProgress) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def run_start(self, messages: int, size: int | None) -> None:
        with self._lock:
            self._inner.run_start(messages, size)

    def folder_start(self, name: str, messages: int, size: int) -> None:
        with self._lock:
            self._inner.folder_start(name, messages, size)

    def saved(self, messages: int, size: int) -> None:
        with self._lock:
            self._inner.saved(messages, size)

    def folder_done(self, result: FolderResult) -> None:
        with self._lock:
            self._inner.folder_done(result)

    def warn(self, text: str) -> None:
        with self._lock:
            self._inner.warn(text)


class Crew:
    """The extra connections of one run.  `hire()` starts their workers, which
    log in and then wait for `work()` to hand out the folders: a first backup
    hires before the folder list is read, so the logins overlap it; `dismiss()`
    sends away whoever is still waiting when there is nothing for them."""

    def __init__(self, engine: BackupEngine) -> None:
        self.engine = engine
        self.progress = LockedProgress(engine.progress)
        self.queue: FolderQueue | None = None
        self.results: dict[int, FolderResult] = {}
        self._position: dict[int, int] = {}
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self.hub = ShareHub()

    def hire(self, count: int) -> None:
        for _ in range(count - len(self._threads)):
            worker = len(self._threads) + 1  # 0 is the run's own connection
            thread = threading.Thread(target=self._extra_worker, args=(worker,), name=f"connection-{worker + 1}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def work(self, order: list[FolderInfo], extra: int) -> list[FolderResult]:
        """Sync `order` (already arranged: cheap folders first, then the biggest)
        on the engine's connection and up to `extra` more; the results in the
        order of `order`, only of folders begun."""
        self._position = {id(info): index for index, info in enumerate(order)}
        self.queue = queue = FolderQueue(order)
        self.hire(extra)
        self.hub.expect(len(self._threads) + 1)
        self._ready.set()
        try:
            self._sync_and_help(self.engine.sibling(self.engine.session, self.engine.archive, self.progress), 0)
        except BaseException as exc:
            queue.fail(exc)
        self.dismiss()
        self.engine.state.forget_folder_names()  # the others added theirs through their own handles
        if queue.failures:
            raise queue.failures[0]
        return [self.results[index] for index in sorted(self.results)]

    def dismiss(self) -> None:
        self._ready.set()
        for thread in self._threads:
            thread.join()
        self.engine.session.release_spares()  # opened ahead for workers there was no work for

    def _keep(self, info: FolderInfo, result: FolderResult) -> None:
        self.results[self._position[id(info)]] = result

    def _sync_and_help(self, engine: BackupEngine, worker: int) -> None:
        """Folders from the queue, then batches of the others' big folders (sharing.py)."""
        assert self.queue is not None
        engine.parts.hub = self.hub  # its own big folders' batches are offered there
        try:
            engine.sync_in_turn(self.queue, self._keep)
        finally:
            self.hub.worker_idle(worker)
        options = engine.options
        while found := self.hub.next_share(lambda: options.should_stop() or bool(self.queue and self.queue.failures),
                                           options.pipeline_depth):
            if not engine.fetcher.help(*found):
                break

    def _extra_worker(self, worker: int) -> None:
        engine = self.engine
        slots = engine.options.extra_slots
        try:
            if not slots.claim():
                return
            try:
                self._work_on_own_connection(worker)
            except BaseException as exc:
                self._ready.wait()
                if self.queue is not None:
                    self.queue.fail(exc)
            finally:
                slots.release()
        finally:
            self.hub.worker_idle(worker)  # whatever became of it (a second call counts nothing)

    def _work_on_own_connection(self, worker: int) -> None:
        engine = self.engine
        session = engine.session.sibling()
        try:
            session.connect()
        except MailbackupError as exc:  # a server's connection limit, say: the others share the folders
            log.info("another connection could not be opened (%s); going on with fewer", exc.message)
            return
        try:
            self._ready.wait()
            if self.queue is None:
                return
            state = StateDB(engine.state.path)
            try:
                archive = Archive(root=engine.archive.root, state=state, store=engine.archive.store)
                self._sync_and_help(engine.sibling(session, archive, self.progress), worker)
            finally:
                state.close()
        finally:
            session.close()
            if session.one_command_at_a_time:  # the run remembers the habit whichever connection met it
                engine.session.one_command_at_a_time = True
