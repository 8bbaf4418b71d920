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
per-server connection and bandwidth limits: limits.py; one attempt at an
account: attempt.py; what it did: outcome.py (`AccountOutcome`, also
importable from here); worker processes: workers.py.

How it runs: the calling thread dispatches; each account runs in a thread of
its own (with ``workers: processes``, a thread relaying to a worker
process of its own) with its own archive lock, IMAP session and
state, so one failing account never stops the others.  At most `jobs` accounts run at once, and at
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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from mailbackup.config import AccountSettings, SweepSettings
from mailbackup.errors import ArchiveLocked, ExitCode, StorageError, worst_exit_code
from mailbackup.i18n import N_, _
from mailbackup.state.lock import ArchiveLock
from mailbackup.sweep.attempt import AccountAttempt, guarded
from mailbackup.sweep.dispatch import Again, Dispatcher, Job, Passwords, server_limits, wait_budget
from mailbackup.sweep.limits import ServerLimits
from mailbackup.sweep.options import Shard, SweepOptions, select_accounts
from mailbackup.sweep.outcome import AccountOutcome, folder_problems
from mailbackup.sweep.progress import LogProgress, SweepProgress, stage_word
from mailbackup.sweep.workers import WorkerPool
from mailbackup.sync.folder import MEGABYTE
from mailbackup.text import system_error

__all__ = ["AccountOutcome", "SweepResult", "describe", "folder_problems", "run_sweep", "sweep_lock",
           "take_sweep_lock"]

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
    pool = WorkerPool(options, limits, sink) if options.workers == "processes" else None
    worker = _SweepWorker(options, limits, sink, outcomes, pool)
    started = time.monotonic()
    sink.sweep_start(len(accounts))
    warn_insecure(accounts, sink)
    jobs = [Job(account, wait_budget(options), "backup") for account in accounts]
    try:
        Dispatcher(options.jobs, limits, options.stop, sink).run(jobs, worker, worker.skipped)
    finally:
        if pool is not None:
            pool.close()
    result.seconds = time.monotonic() - started
    result.interrupted = options.stop.is_set()
    result.peak_connections = dict(limits.peak)
    return result


class _SweepWorker:
    """The parent's side of each attempt: counts it, says when it starts and
    ends; the attempt itself runs in this thread or in a worker process."""

    def __init__(self, options: SweepOptions, limits: ServerLimits, progress: SweepProgress,
                 outcomes: dict[int, AccountOutcome], pool: WorkerPool | None) -> None:
        self.options = options
        self.progress = progress
        self.outcomes = outcomes
        self.passwords = Passwords(options.password)
        self.attempt = AccountAttempt(options, limits, progress, self.passwords)
        self.pool = pool

    def __call__(self, job: Job) -> Again | None:
        outcome = self.outcomes[id(job.settings)]
        outcome.attempts += 1
        self.progress.account_start(job.settings.account, job.stage, outcome.attempts)
        started = time.monotonic()
        try:
            if self.pool is None:
                again = self.attempt.run(job, outcome)
            else:
                again = guarded(job, outcome, self.options, partial(self.pool.run, job, outcome, self.passwords))
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
