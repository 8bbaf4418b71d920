"""Sweeps: back up, then verify, every account of a config, several at
once, unattended (`check`, which only logs in to each, is logins.py; the
reports are reports.py).

Public API:

* `run_sweep(settings, options, progress)` → `SweepResult`: one
  `AccountOutcome` per account, and the worst exit code;
* `sweep_lock`/`take_sweep_lock`: one sweep of a config and shard at a time;
* `describe(outcome)`: one line per account for logs and the final table.

Which accounts and with which options: options.py; the progress callbacks:
progress.py; the threads, the queue and the requeueing: dispatch.py; the
per-server connection and bandwidth limits: limits.py.

How it runs: the calling thread dispatches; each account runs in a thread of
its own with its own archive lock, IMAP session and state, so one failing
account never stops the others.  At most `jobs` accounts run at once, and at
most `max_connections_per_server` toward one server host (a semaphore per
host; each account holds one connection at a time: the backup's session is
reused for its verification).  A server that pushes back at login, or asks
for a pause longer than `in_place_wait`, costs no worker: the account goes
back to the queue with a not-before time and others run meanwhile; every
wait of an account counts against its `max_busy_wait`.  `max_bytes_per_second`
is shared by all accounts of a server (a token bucket, paced through the
engine's `Progress.saved`).

Nothing here prints.  Passwords are looked up one at a time (keyring backends
and password commands are not made for threads) and never logged.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from mailbackup.archive import Archive, open_archive
from mailbackup.config import AccountSettings, SweepSettings
from mailbackup.errors import (
    ArchiveLocked,
    ConnectError,
    ExitCode,
    MailbackupError,
    ServerBusy,
    StorageError,
    run_exit_code,
    worst_exit_code,
)
from mailbackup.i18n import N_, _
from mailbackup.imap.pushback import WaitBudget, pushback_of, recognise
from mailbackup.imap.session import ImapSession
from mailbackup.model import FolderResult, RunStats
from mailbackup.state.lock import ArchiveLock
from mailbackup.state.written import WriteMark
from mailbackup.sweep.dispatch import (
    Again,
    Dispatcher,
    Job,
    Passwords,
    grace_after,
    requeue,
    requeue_unreachable,
    server_limits,
    wait_budget,
)
from mailbackup.sweep.limits import ServerLimits, TokenBucket
from mailbackup.sweep.options import Shard, SweepOptions, select_accounts
from mailbackup.sweep.progress import STAGE_WORDS, LogProgress, SweepProgress, stage_word
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import BATCH_BYTES, MEGABYTE, BackupOptions, ConnectionSlots
from mailbackup.text import system_error
from mailbackup.verify.check import verify_online
from mailbackup.verify.record import verify_recorded
from mailbackup.verify.results import VerifyOptions, VerifyResult
from mailbackup.verify.summary import AccountSummary, archive_summary

log = logging.getLogger(__name__)

LOCK_DIR = ".sweeps"  # under the defaults' dest; has no state file, so `report` ignores it


def sweep_lock(settings: SweepSettings, shard: Shard | None) -> ArchiveLock:
    """A lock (not yet taken) that keeps two sweeps of one config and shard
    from running at once, e.g. a scheduled run that overlaps the last one."""
    key = hashlib.sha256(f"{settings.path}|{shard or ''}".encode()).hexdigest()[:16]
    directory = settings.dest / LOCK_DIR / key
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(_("cannot create {path}: {error}").format(path=directory, error=system_error(exc))) \
            from None
    return ArchiveLock(directory)


def take_sweep_lock(settings: SweepSettings, shard: Shard | None) -> ArchiveLock:
    lock = sweep_lock(settings, shard)
    try:
        return lock.acquire()
    except ArchiveLocked:
        holder = lock.path.read_text(encoding="utf-8", errors="replace").strip() or _("another process")
        which = _(" (shard {shard})").format(shard=shard) if shard else ""
        raise ArchiveLocked(_("another sweep of {config}{shard} is running ({holder})").format(
            config=settings.path, shard=which, holder=holder),
            hint=_("it will finish on its own; try again later")) from None


@dataclass
class AccountOutcome:
    """What a sweep did for one account."""

    settings: AccountSettings
    backup: str = "not run"  # ok | warnings | failed | interrupted | out of time | not run
    verify: str = "not run"  # complete | incomplete | corrupt | failed | skipped | not run
    messages: int = 0  # fetched in this sweep
    bytes: int = 0
    attempts: int = 0
    waited: float = 0.0  # seconds spent waiting for a busy server
    seconds: float = 0.0
    error: str | None = None
    backup_problems: list[str] = field(default_factory=list)
    verify_problems: list[str] = field(default_factory=list)
    codes: dict[str, ExitCode] = field(default_factory=dict)  # per stage: backup, verify, error, stopped
    summary: AccountSummary | None = None  # its archive as the reports show it, read before it was let go

    @property
    def account(self) -> str:
        return self.settings.account

    @property
    def problems(self) -> list[str]:
        return self.backup_problems + self.verify_problems

    @property
    def exit_code(self) -> ExitCode:
        return worst_exit_code(self.codes.values())

    def record_backup(self, stats: RunStats) -> None:
        self.messages += stats.messages
        self.bytes += stats.bytes
        self.backup = "interrupted" if stats.interrupted else "out of time" if stats.out_of_time \
            else "warnings" if stats.has_warnings else "ok"
        self.codes["backup"] = run_exit_code(stats)
        self.backup_problems = [text for folder in stats.folders for text in folder_problems(folder)]
        if stats.out_of_time:
            self.backup_problems.append(_("stopped at the time limit (max_time): what was saved is kept; "
                                          "the next sweep continues"))

    def record_verify(self, result: VerifyResult, code: ExitCode) -> None:
        self.verify = result.status.value
        self.codes["verify"] = code
        self.verify_problems = []
        if result.error:
            self.verify_problems.append(_("verification failed: {error}").format(error=result.error))
            return
        totals = result.totals
        found = [text.format(count=count) for count, text in (
            (totals.missing, _("{count} missing")), (totals.corrupt, _("{count} corrupt")),
            (totals.size_mismatch, _("{count} size mismatch"))) if count]
        if found:
            self.verify_problems.append(_("verification {status}: {found}").format(
                status=_(STAGE_WORDS.get(result.status.value, result.status.value)), found=", ".join(found)))
        self.verify_problems += [_("verification: folder {folder!r}: {error}").format(
            folder=folder.name, error=folder.error) for folder in result.folders if folder.error]

    def fail(self, stage: str, error: MailbackupError) -> None:
        if stage == "backup":
            self.backup = "failed"
        elif stage == "verify":
            self.verify = "failed"
        self.error = str(error)
        self.codes["error"] = error.exit_code


def folder_problems(folder: FolderResult) -> list[str]:
    problems = [_("folder {folder!r}: {error}").format(folder=folder.name, error=folder.error)] if folder.error else []
    if folder.failed_uids:
        problems.append(_("folder {folder!r}: {count} messages not saved (UIDs {uids})").format(
            folder=folder.name, count=len(folder.failed_uids), uids=", ".join(map(str, folder.failed_uids[:20]))))
    return problems + [_("folder {folder!r}: {error}").format(folder=folder.name, error=text)
                       for text in folder.warnings]


@dataclass
class SweepResult:
    outcomes: list[AccountOutcome]
    started_at: datetime
    seconds: float = 0.0
    interrupted: bool = False
    shard: Shard | None = None
    config: Path | None = None
    peak_connections: dict[str, int] = field(default_factory=dict)  # per server host

    @property
    def exit_code(self) -> ExitCode:
        codes = [outcome.exit_code for outcome in self.outcomes]
        return worst_exit_code([*codes, ExitCode.INTERRUPTED] if self.interrupted else codes)


def describe(outcome: AccountOutcome) -> str:
    """One line for logs and the final table."""
    parts = [_("backup {status}").format(status=stage_word(outcome.backup))]
    if outcome.messages or outcome.backup in ("ok", "warnings"):
        parts.append(_("{count} new messages ({megabytes:.1f} MB)").format(
            count=outcome.messages, megabytes=outcome.bytes / MEGABYTE))
    parts.append(_("verify {status}").format(status=stage_word(outcome.verify)))
    line = ", ".join(parts) + _(" [exit {code}]").format(code=int(outcome.exit_code))
    if outcome.error:
        line += f": {outcome.error}"
    return line


class _EngineProgress:
    """The engine's Progress for one account: forwards to the sweep's, and
    paces the account against its server's bandwidth limit."""

    def __init__(self, account: str, sink: SweepProgress, bucket: TokenBucket | None, stop: threading.Event) -> None:
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


# ---------------------------------------------------------------------------
# The dispatcher
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


INSECURE_WARNING = N_("insecure: true in the config: the server's certificate is NOT checked, so anyone on the "
                      "way can pose as the server and read the password and the mail")


def warn_insecure(accounts: Iterable[AccountSettings], sink: SweepProgress) -> None:
    """A config's `insecure: true` is never silent: one warning per account (stderr and the log)."""
    for settings in accounts:
        if settings.connection.insecure:
            sink.warning(settings.account, _(INSECURE_WARNING))


def run_sweep(settings: SweepSettings, options: SweepOptions, progress: SweepProgress | None = None, *,
              shard: Shard | None = None) -> SweepResult:
    """Back up and verify every account of `settings` (of `shard`), in parallel."""
    sink: SweepProgress = progress or LogProgress()
    accounts = select_accounts(settings, shard)
    result = SweepResult(outcomes=[AccountOutcome(account) for account in accounts],
                         started_at=datetime.now().astimezone(), shard=shard, config=settings.path)
    outcomes = {id(outcome.settings): outcome for outcome in result.outcomes}
    limits = server_limits(options)
    worker = _SweepWorker(options, limits, sink, outcomes)
    started = time.monotonic()
    sink.sweep_start(len(accounts))
    warn_insecure(accounts, sink)
    jobs = [Job(account, wait_budget(options), "backup") for account in accounts]
    Dispatcher(options.jobs, limits, options.stop, sink).run(jobs, worker, worker.skipped)
    result.seconds = time.monotonic() - started
    result.interrupted = options.stop.is_set()
    result.peak_connections = dict(limits.peak)
    return result


class _SweepWorker:
    def __init__(self, options: SweepOptions, limits: ServerLimits, progress: SweepProgress,
                 outcomes: dict[int, AccountOutcome]) -> None:
        self.options = options
        self.limits = limits
        self.progress = progress
        self.outcomes = outcomes
        self.passwords = Passwords(options.password)
        self._started: dict[int, float] = {}  # per account: when its first backup attempt began (max_time)

    def __call__(self, job: Job) -> Again | None:
        outcome = self.outcomes[id(job.settings)]
        outcome.attempts += 1
        self.progress.account_start(job.settings.account, job.stage, outcome.attempts)
        started = time.monotonic()
        again: Again | None = None
        try:
            again = self._attempt(job, outcome)
        except MailbackupError as exc:
            again = self._pushback(job, exc)
            if again is None:
                outcome.fail(job.stage, _gave_up(exc, job.budget))
        except (OSError, sqlite3.Error) as exc:
            outcome.fail(job.stage, StorageError(_("local storage: {error}").format(error=exc)))
        except Exception as exc:  # a bug: report it on this account, keep the sweep going
            log.exception("%s: unexpected error", job.settings.account)
            outcome.fail(job.stage, MailbackupError(_("unexpected error (please report): {kind}: {error}").format(
                kind=type(exc).__name__, error=exc)))
        finally:
            outcome.seconds += time.monotonic() - started
            outcome.waited = job.budget.spent
        if again is None:
            self.progress.account_done(outcome.account, outcome.exit_code, describe(outcome))
        return again

    def skipped(self, job: Job) -> None:
        """Never started (or not started again) because the sweep was stopped."""
        outcome = self.outcomes[id(job.settings)]
        outcome.codes["stopped"] = ExitCode.INTERRUPTED
        outcome.verify_problems.append(_("not done: the sweep was stopped"))
        self.progress.account_done(outcome.account, outcome.exit_code, describe(outcome))

    def _pushback(self, job: Job, exc: MailbackupError) -> Again | None:
        busy = pushback_of(exc)
        if busy is not None:
            return requeue(job, busy, None, self.options)
        if isinstance(exc, ConnectError):
            return requeue_unreachable(job, exc, self.options)
        return None

    def _attempt(self, job: Job, outcome: AccountOutcome) -> Again | None:
        try:
            return self._attempt_connected(job, outcome)
        finally:
            if job.closed_at is None:
                job.closed_at = time.monotonic()

    def _attempt_connected(self, job: Job, outcome: AccountOutcome) -> Again | None:
        settings = job.settings
        password = self.passwords(settings)
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
        return self._started.setdefault(id(job.settings), time.monotonic()) + limit.total_seconds()

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
