"""What the parts of the backup engine share: the options of a run, the
progress callback, the folder being synced, and server calls that survive a
dropped connection (imap/retry.py) by re-opening that folder."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from mailbackup.archive import Archive
from mailbackup.imap.pushback import WaitBudget
from mailbackup.imap.retry import Retrying, RetryPolicy
from mailbackup.imap.session import ImapSession
from mailbackup.model import FolderInfo, FolderResult
from mailbackup.state.db import FolderRecord, StateDB
from mailbackup.store.base import MailStore

if TYPE_CHECKING:
    from mailbackup.sync.sharing import ShareHub

log = logging.getLogger(__name__)
T = TypeVar("T")
MEGABYTE = 1 << 20
BATCH_BYTES = 4 * MEGABYTE


@dataclass(frozen=True)
class ConnectionSlots:
    """Leave to open a connection besides the run's first: `claim()` says
    whether one is free now (never waits), `release()` gives it back."""

    claim: Callable[[], bool] = lambda: True
    release: Callable[[], None] = lambda: None


@dataclass
class BackupOptions:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    batch_messages: int = 500
    # A batch's bodies are held until it is written: its size is what new mail adds to a run's memory
    # (16 MB batches: 45 MB peak against the no-op's 31 MB with 200 new mixed messages; 4 MB: 36 MB).
    batch_bytes: int = BATCH_BYTES
    whole_folder_bytes: int = 16 * MEGABYTE  # a new folder up to this size comes whole with its listing
    # Above this a body is streamed to a file, which becomes the Maildir file without a copy: a 7 MB message
    # held in memory was most of what 1,000 new mixed messages added to a run's peak (45 MB; 1 MB: 37-40 MB).
    large_message: int = MEGABYTE
    pipeline_depth: int = 3  # FETCH commands in flight: hides round trips on slow links
    new_slice: int = 5000  # new messages handled per slice: bounds memory on huge folders
    dry_run: bool = False
    repair: bool = False  # re-hash every stored copy; fetch damaged ones again from the server
    refresh_flags: bool = False  # without CONDSTORE: re-read all flags even of unchanged folders
    max_retries: int = 5
    retry_delay: float = 1.0  # first backoff; doubles per try
    stop: threading.Event = field(default_factory=threading.Event)
    # --max-time: a time.monotonic() after which the run stops after its last complete batch, as on `stop`
    stop_at: float | None = None
    # Waits a busy server (throttled, too many connections) may cost this run in all.
    busy_wait: WaitBudget = field(default_factory=WaitBudget)
    # --connections: folders are synced on up to this many connections at once (parallel.py)
    connections: int = 1
    # A sweep counts the extra connections against its per-server cap: each must be claimed first.
    extra_slots: ConnectionSlots = field(default_factory=lambda: ConnectionSlots())

    def should_stop(self) -> bool:
        """Stopped by request (Ctrl-C, a sweep's signal) or out of time (--max-time)."""
        return self.stop.is_set() or (self.stop_at is not None and time.monotonic() >= self.stop_at)


class BackupProgress(Protocol):
    def run_start(self, messages: int, size: int | None) -> None: ...  # what the run expects to fetch, at most
    def folder_start(self, name: str, messages: int, size: int) -> None: ...
    def saved(self, messages: int, size: int) -> None: ...
    def folder_done(self, result: FolderResult) -> None: ...
    def warn(self, text: str) -> None: ...


class NoBackupProgress:
    def run_start(self, messages: int, size: int | None) -> None:
        pass

    def folder_start(self, name: str, messages: int, size: int) -> None:
        pass

    def saved(self, messages: int, size: int) -> None:
        pass

    def folder_done(self, result: FolderResult) -> None:
        pass

    def warn(self, text: str) -> None:
        log.warning("%s", text)


@dataclass
class FolderSync:
    """Everything known about the folder being synced."""

    info: FolderInfo
    record: FolderRecord
    result: FolderResult
    uidvalidity: int = 0
    new_generation: bool = False
    committed: int = 0  # mbox length covered by the state
    together: bool = False  # a small new folder, stored with the next ones (commit.py)


class SyncParts:
    """One run's session, archive, options and progress, shared by the engine's parts."""

    def __init__(self, session: ImapSession, archive: Archive, options: BackupOptions,
                 progress: BackupProgress) -> None:
        self.session = session
        self.archive = archive
        self.options = options
        self.progress = progress
        policy = RetryPolicy(options.max_retries, options.retry_delay, options.busy_wait, options.stop)
        self.retrying = Retrying(policy, session.reconnect, str(session.settings.server))
        self.hub: ShareHub | None = None  # set when the run has other connections to share batches with

    @property
    def state(self) -> StateDB:
        return self.archive.state

    @property
    def store(self) -> MailStore:
        return self.archive.store

    def call(self, folder: FolderSync | None, action: Callable[[], T], tries: int | None = None) -> T:
        """Run an IMAP action under the retry policy; after a reconnect `folder` is examined again."""
        return self.retrying.call(action, self._reopen(folder), tries)

    def reconnect(self, folder: FolderSync | None) -> None:
        self.retrying.reconnect(self._reopen(folder))

    def warn(self, folder: FolderSync, text: str) -> None:
        """A warning the folder's result keeps (reports show it) and the user sees now."""
        folder.result.warnings.append(text)
        self.progress.warn(text)

    def _reopen(self, folder: FolderSync | None) -> Callable[[], object] | None:
        if folder is None:
            return None
        name = folder.info.name
        return lambda: self.session.examine(name)
