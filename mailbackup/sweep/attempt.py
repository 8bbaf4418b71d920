"""One attempt at one account of a sweep: log in, back up, verify, read its
summary; the same code whether it runs in a thread of the sweep's process
or in a worker process (workers.py).

Public API: `AccountAttempt(options, limits, progress, password)` and its
`run(job, outcome)` → `Again | None`, which fills `outcome` and the job's
state and turns every error into the account's failure (or a requeue);
`Limits`, what an attempt asks of the sweep's per-server limits
(`ServerLimits` in a thread, a relay to the parent in a worker process).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from mailbackup.archive import Archive, open_archive
from mailbackup.config import AccountSettings
from mailbackup.errors import ConnectError, MailbackupError, ServerBusy, StorageError
from mailbackup.i18n import _
from mailbackup.imap.pushback import WaitBudget, pushback_of, recognise
from mailbackup.imap.session import ImapSession
from mailbackup.localerrors import local_error
from mailbackup.model import FolderResult
from mailbackup.state.written import WriteMark
from mailbackup.sweep.dispatch import Again, Job, grace_after, requeue, requeue_unreachable
from mailbackup.sweep.options import SweepOptions
from mailbackup.sweep.outcome import AccountOutcome
from mailbackup.sweep.progress import SweepProgress
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import BATCH_BYTES, MEGABYTE, BackupOptions, ConnectionSlots
from mailbackup.verify.check import verify_online
from mailbackup.verify.record import verify_recorded
from mailbackup.verify.results import VerifyOptions, VerifyResult
from mailbackup.verify.summary import AccountSummary, archive_summary

log = logging.getLogger(__name__)


class Pacer(Protocol):
    def take(self, amount: int, stop: threading.Event | None = None) -> float: ...


class Limits(Protocol):
    """The per-server limits as an attempt uses them (extra connections, bandwidth)."""

    def try_acquire(self, host: str) -> bool: ...
    def release(self, host: str) -> None: ...
    def bucket(self, host: str) -> Pacer | None: ...


class _EngineProgress:
    """The engine's Progress for one account: forwards to the sweep's, and
    paces the account against its server's bandwidth limit."""

    def __init__(self, account: str, sink: SweepProgress, bucket: Pacer | None, stop: threading.Event) -> None:
        self.account = account
        self.sink = sink
        self.bucket = bucket
        self.stop = stop

    def run_start(self, messages: int, size: int | None) -> None:
        pass  # the sweep's lines show each account's progress as it goes

    def folder_start(self, name: str, messages: int, size: int) -> None:
        self.sink.folder_start(self.account, name, messages, size)

    def saved(self, messages: int, size: int) -> None:
        self.sink.saved(self.account, messages, size)
        if self.bucket is not None:
            self.bucket.take(size, self.stop)

    def folder_done(self, result: FolderResult) -> None:
        pass

    def warn(self, text: str) -> None:
        self.sink.warning(self.account, text)


class _VerifyProgress:
    """Verification stages as debug lines naming the account (many run at once)."""

    def __init__(self, account: str) -> None:
        self.account = account

    def stage(self, text: str) -> None:
        log.debug("%s: %s", self.account, text)

    def start_hashing(self, messages: int, total_bytes: int) -> None:
        log.debug("%s: checking %d archived files (%d bytes)", self.account, messages, total_bytes)

    def hashed(self, byte_count: int) -> None:
        pass


class AccountAttempt:
    """Runs attempts of accounts; `password` looks an account's password up."""

    def __init__(self, options: SweepOptions, limits: Limits, progress: SweepProgress,
                 password: Callable[[AccountSettings], str]) -> None:
        self.options = options
        self.limits = limits
        self.progress = progress
        self.password = password

    def run(self, job: Job, outcome: AccountOutcome) -> Again | None:
        """One attempt; every error becomes the account's (the sweep goes on)."""
        return guarded(job, outcome, self.options, partial(self._attempt, job, outcome))

    def _attempt(self, job: Job, outcome: AccountOutcome) -> Again | None:
        try:
            return self._attempt_connected(job, outcome)
        finally:
            if job.closed_at is None:
                job.closed_at = time.monotonic()

    def _attempt_connected(self, job: Job, outcome: AccountOutcome) -> Again | None:
        settings = job.settings
        password = self.password(settings)
        # Log in before opening the archive: an account nobody can log in to gets no empty archive.
        with ImapSession(settings.connection, settings.account, password) as session, \
                open_archive(settings.dest, settings.account, format=settings.format) as archive:
            job.grace = grace_after(session.login_seconds)
            again = self._stages(job, outcome, session, archive)
            if again is None and not self.options.stop.is_set():
                outcome.summary = _read_ahead(settings.dest, archive)
            return again

    def _stages(self, job: Job, outcome: AccountOutcome, session: ImapSession, archive: Archive) -> Again | None:
        # What this backup writes, under this lock, need not be read back by this verification (written.py).
        mark: WriteMark | None = None
        if job.stage == "backup":
            mark = WriteMark.take(archive.state)
            again = self._backup(job, outcome, session, archive)
            if again is not None or self.options.stop.is_set():
                return again
            if outcome.backup == "out of time":  # its verification would run past the limit too
                outcome.verify = "skipped"
                return None
            job.stage = "verify"
        if not self.options.verify:
            outcome.verify = "skipped"
            return None
        return self._verify(job, outcome, session, archive, mark)

    def _backup(self, job: Job, outcome: AccountOutcome, session: ImapSession, archive: Archive) -> Again | None:
        settings, options = job.settings, self.options
        batch_bytes = BATCH_BYTES
        if options.max_bytes_per_second:  # about a second of transfer per FETCH, so pacing stays smooth
            batch_bytes = min(max(options.max_bytes_per_second, MEGABYTE // 4), batch_bytes)
        engine_options = BackupOptions(
            include=settings.include, exclude=settings.exclude, batch_messages=options.batch_size,
            batch_bytes=batch_bytes, max_retries=options.max_retries, retry_delay=options.retry_delay,
            stop=options.stop, busy_wait=job.budget, stop_at=self._stop_at(job),
            connections=settings.connections or 1,  # the accounts already run side by side
            extra_slots=ConnectionSlots(claim=partial(self.limits.try_acquire, settings.host),
                                        release=partial(self.limits.release, settings.host)),
        )
        progress = _EngineProgress(settings.account, self.progress, self.limits.bucket(settings.host), options.stop)
        stats = BackupEngine(session, archive, engine_options, progress).run()
        outcome.record_backup(stats)
        deferred, job.budget.deferred = job.budget.deferred, None
        if deferred is not None and not stats.interrupted:
            # The server wanted a long pause: give the connection to another account and come back.
            return requeue(job, job.budget.last, deferred, options)
        return None

    def _stop_at(self, job: Job) -> float | None:
        """max_time counts per account, from its first backup attempt (a requeued account keeps its clock)."""
        limit = self.options.max_time or job.settings.max_time
        if limit is None:
            return None
        if job.backup_started is None:
            job.backup_started = time.monotonic()
        return job.backup_started + limit.total_seconds()

    def _verify(self, job: Job, outcome: AccountOutcome, session: ImapSession, archive: Archive,
                mark: WriteMark | None) -> Again | None:
        settings = job.settings
        verify_options = VerifyOptions.for_account(settings, self.options.verify_max_age)
        written = mark.written(archive.state) if mark is not None else frozenset()

        def online() -> VerifyResult:
            try:
                return verify_online(session, archive, verify_options, _VerifyProgress(settings.account),
                                     written=written)
            finally:  # the server is done with: its slot's grace runs while the reports are written
                session.close()
                job.closed_at = time.monotonic()

        recorded = verify_recorded(archive, verify_options, online, report_dir=self.options.report_dir,
                                   retry_pushback=True)
        result = recorded.result
        outcome.record_verify(result, recorded.exit_code)
        for folder in result.folders:
            pushback = recognise(folder.error) if folder.error else None
            if folder.error and pushback is not None:  # verify again later, on a rested server
                return requeue(job, ServerBusy(folder.error, wait_seconds=pushback.wait_seconds), None, self.options)
        return None


def guarded(job: Job, outcome: AccountOutcome, options: SweepOptions,
            body: Callable[[], Again | None]) -> Again | None:
    """`body()`, its errors made the account's: pushback and an unreachable
    server requeue it (within its budget), anything else fails it."""
    try:
        return body()
    except MailbackupError as exc:
        again = _pushback(job, exc, options)
        if again is None:
            outcome.fail(job.stage, _gave_up(exc, job.budget))
        return again
    except (OSError, sqlite3.Error) as exc:  # worded as `backup` words it (its path, its error, a way out)
        outcome.fail(job.stage, local_error(exc) or StorageError(_("local storage: {error}").format(error=exc)))
    except Exception as exc:  # a bug: report it on this account, keep the sweep going
        log.exception("%s: unexpected error", job.settings.account)
        outcome.fail(job.stage, MailbackupError(_("unexpected error (please report): {kind}: {error}").format(
            kind=type(exc).__name__, error=exc)))
    return None


def _pushback(job: Job, exc: MailbackupError, options: SweepOptions) -> Again | None:
    busy = pushback_of(exc)
    if busy is not None:
        return requeue(job, busy, None, options)
    if isinstance(exc, ConnectError):
        return requeue_unreachable(job, exc, options)
    return None


def _read_ahead(dest: Path, archive: Archive) -> AccountSummary | None:
    """The account's summary while its archive is open (the sweep's reports would
    open its state twice more at the end, one account after another).  A failure
    here is the reports' to find and say: they read the archive again then."""
    try:
        return archive_summary(dest, archive)
    except (MailbackupError, OSError, sqlite3.Error):
        log.debug("%s: summary left to the end of the sweep", archive.root, exc_info=True)
        return None


def _gave_up(exc: MailbackupError, budget: WaitBudget) -> MailbackupError:
    if isinstance(exc, ServerBusy) and budget.spent:
        return ServerBusy(_("{error}; gave up after waiting {spent:.0f} s in all (max_busy_wait {limit:g} s)").format(
            error=exc.message, spent=budget.spent, limit=budget.limit))
    return exc
