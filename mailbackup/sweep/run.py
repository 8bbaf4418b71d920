"""Sweeps: back up, then verify, every account of a config, several at
once, unattended (`check`, which only logs in to each, is logincheck.py;
the reports are sweepreport.py).

Public API:

* `run_sweep(settings, options, progress)` → `SweepResult`: one
  `AccountOutcome` per account, and the worst exit code;
* `Shard` (``--shard I/N``), `select_accounts`, `sweep_lock`;
* `worst_exit_code` and `SEVERITY`, the order "worst" follows;
* `SweepProgress`, the callbacks a caller may implement (`LogProgress` logs).

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
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from mailbackup import secrets
from mailbackup.archive import Archive, open_archive
from mailbackup.config import AccountSettings, SweepSettings
from mailbackup.errors import (
    ArchiveLocked,
    AuthError,
    ConnectError,
    ExitCode,
    MailbackupError,
    ServerBusy,
    ServerError,
    StorageError,
    TLSError,
    UsageError,
)
from mailbackup.i18n import N_, _
from mailbackup.imap.pushback import (
    DEFAULT_MAX_BUSY_WAIT,
    MAX_BACKOFF,
    ServerLimits,
    TokenBucket,
    WaitBudget,
    pushback_of,
    recognise,
)
from mailbackup.imap.session import ImapSession
from mailbackup.model import FolderResult, RunStats
from mailbackup.state.lock import ArchiveLock
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import MEGABYTE, BackupOptions
from mailbackup.verify.check import VerifyOptions, VerifyProgress, VerifyResult, failed_result, verify_online
from mailbackup.verify.check import exit_code as verify_exit_code
from mailbackup.verify.report import (
    extra_report_dir,
    write_verify_reports,
)

log = logging.getLogger(__name__)

LOCK_DIR = ".sweeps"  # under the defaults' dest; has no state file, so `report` ignores it
IN_PLACE_WAIT = 30.0  # a server asking for a longer pause gets the account requeued instead
POLL = 0.5  # the dispatcher looks at the clock and the stop flag this often
# A server counts a connection until it has seen it close; a slot reused at once
# would let it count one more than the limit for a moment (measured: ~1 ms).
CLOSE_GRACE = 0.05

# "Worst" for a sweep and for `check`: the code later in this list wins.
# Interrupted comes last because it describes the whole run; a damaged
# archive is the most serious finding about an account; local problems
# (storage, bad config) need the officer before anything else can work; then
# what needs the mail administrator (password, certificate); then what may
# pass by itself (server down or odd, archive in use by another run).
SEVERITY: tuple[ExitCode, ...] = (
    ExitCode.OK, ExitCode.WARNINGS, ExitCode.LOCKED, ExitCode.PROTOCOL, ExitCode.CONNECTION, ExitCode.TLS,
    ExitCode.AUTH, ExitCode.USAGE, ExitCode.STORAGE, ExitCode.CORRUPT, ExitCode.INTERRUPTED,
)


def worst_exit_code(codes: Iterable[ExitCode]) -> ExitCode:
    """The most severe of `codes` in SEVERITY order; OK for none."""
    return max(codes, key=SEVERITY.index, default=ExitCode.OK)


# ---------------------------------------------------------------------------
# Choosing accounts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """``I/N``, 1-based: machine I of N takes the accounts whose SHA-256 of
    the lower-cased account name, read as a number, leaves remainder I-1 when
    divided by N.  The same on every machine and Python version, so N machines
    split a config without talking to each other."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        parts = text.strip().split("/")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise UsageError(_("cannot read shard {text!r}").format(text=text),
                             hint=_("use I/N, e.g. 1/3 for the first of three machines"))
        index, count = int(parts[0]), int(parts[1])
        if count < 1 or not 1 <= index <= count:
            raise UsageError(_("shard {text!r} does not exist").format(text=text),
                             hint=_("I runs from 1 to N, e.g. 1/{count}").format(count=max(count, 1)))
        return cls(index, count)

    def holds(self, account: str) -> bool:
        digest = hashlib.sha256(account.strip().lower().encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def select_accounts(settings: SweepSettings, shard: Shard | None) -> list[AccountSettings]:
    return [account for account in settings.accounts if shard is None or shard.holds(account.account)]


def sweep_lock(settings: SweepSettings, shard: Shard | None) -> ArchiveLock:
    """A lock (not yet taken) that keeps two sweeps of one config and shard
    from running at once, e.g. a scheduled run that overlaps the last one."""
    key = hashlib.sha256(f"{settings.path}|{shard or ''}".encode()).hexdigest()[:16]
    directory = settings.dest / LOCK_DIR / key
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(_("cannot create {path}: {error}").format(path=directory, error=exc.strerror or exc)) \
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


# ---------------------------------------------------------------------------
# Options, results, progress
# ---------------------------------------------------------------------------


def password_from_command_or_keyring(settings: AccountSettings) -> str:
    """An unattended lookup: the account's password_command, else the keyring.
    MAILBACKUP_PASSWORD is for one account and is not used; nobody is asked."""
    return secrets.lookup(settings.account, settings.host, password_command=settings.password_command,
                          prompt=None, use_env=False)


@dataclass
class SweepOptions:
    jobs: int = 4
    max_connections_per_server: int = 4
    max_bytes_per_second: int | None = None
    verify: bool = True
    verify_max_age: timedelta | None = None  # skip files verified more recently than this
    report_dir: Path | None = None  # also write each account's verify reports here
    batch_size: int = 500
    max_retries: int = 5
    retry_delay: float = 1.0
    max_busy_wait: float = DEFAULT_MAX_BUSY_WAIT  # per account, every wait a busy server causes
    in_place_wait: float = IN_PLACE_WAIT
    stop: threading.Event = field(default_factory=threading.Event)
    password: Callable[[AccountSettings], str] = password_from_command_or_keyring

    @classmethod
    def from_settings(cls, settings: SweepSettings, **overrides: Any) -> SweepOptions:
        """The config's sweep settings; `overrides` (the command line) win when not None."""
        options = cls(jobs=settings.jobs, max_connections_per_server=settings.max_connections_per_server,
                      max_bytes_per_second=settings.max_bytes_per_second)
        for key, value in overrides.items():
            if not hasattr(options, key):
                raise TypeError(f"SweepOptions has no {key!r}")
            if value is not None:
                setattr(options, key, value)
        return options


@dataclass
class AccountOutcome:
    """What a sweep did for one account."""

    settings: AccountSettings
    backup: str = "not run"  # ok | warnings | failed | interrupted | not run
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
        self.backup = "interrupted" if stats.interrupted else "warnings" if stats.has_warnings else "ok"
        self.codes["backup"] = backup_exit_code(stats)
        self.backup_problems = [text for folder in stats.folders for text in folder_problems(folder)]

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


def backup_exit_code(stats: RunStats) -> ExitCode:
    if stats.interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.WARNINGS if stats.has_warnings else ExitCode.OK


def folder_problems(folder: FolderResult) -> list[str]:
    problems = [_("folder {folder!r}: {error}").format(folder=folder.name, error=folder.error)] if folder.error else []
    if folder.failed_uids:
        problems.append(_("folder {folder!r}: {count} messages not saved (UIDs {uids})").format(
            folder=folder.name, count=len(folder.failed_uids), uids=", ".join(map(str, folder.failed_uids[:20]))))
    return problems + [_("folder {folder!r}: {error}").format(folder=folder.name, error=text)
                       for text in folder.warnings]


# The words of sweep.json's backup/verify fields and of the stages, for people.
STAGE_WORDS = {
    "backup": N_("backup"), "verify": N_("verify"), "login": N_("login"), "ok": N_("ok"),
    "warnings": N_("warnings"), "failed": N_("failed"), "interrupted": N_("interrupted"), "not run": N_("not run"),
    "complete": N_("complete"), "incomplete": N_("incomplete"), "corrupt": N_("corrupt"), "skipped": N_("skipped"),
}


def stage_word(value: str) -> str:
    word = STAGE_WORDS.get(value)
    return _(word) if word else value


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


class SweepProgress(Protocol):
    """Called from the accounts' threads; implementations must be thread-safe."""

    def sweep_start(self, accounts: int) -> None: ...
    def account_start(self, account: str, stage: str, attempt: int) -> None: ...
    def folder_start(self, account: str, folder: str, messages: int, size: int) -> None: ...
    def saved(self, account: str, messages: int, size: int) -> None: ...
    def warning(self, account: str, text: str) -> None: ...
    def account_waiting(self, account: str, seconds: float, reason: str) -> None: ...
    def account_done(self, account: str, exit_code: ExitCode, summary: str) -> None: ...


class LogProgress:
    """Every event as a log line (the CLI adds time stamps)."""

    def sweep_start(self, accounts: int) -> None:
        log.info("%s", _("sweep of {count} accounts started").format(count=accounts))

    def account_start(self, account: str, stage: str, attempt: int) -> None:
        again = _(" (try {attempt})").format(attempt=attempt) if attempt > 1 else ""
        log.info("%s", _("{account}: {stage} started{again}").format(account=account, stage=stage_word(stage),
                                                                    again=again))

    def folder_start(self, account: str, folder: str, messages: int, size: int) -> None:
        log.debug("%s: folder %r: %d new messages, %d bytes", account, folder, messages, size)

    def saved(self, account: str, messages: int, size: int) -> None:
        pass

    def warning(self, account: str, text: str) -> None:
        log.warning("%s: %s", account, text)

    def account_waiting(self, account: str, seconds: float, reason: str) -> None:
        log.warning("%s", _("{account}: {reason}; back in the queue for {seconds:.1f} s").format(
            account=account, reason=reason, seconds=seconds))

    def account_done(self, account: str, exit_code: ExitCode, summary: str) -> None:
        log.log(logging.INFO if exit_code is ExitCode.OK else logging.WARNING, "%s: %s", account, summary)


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


@dataclass
class _Job:
    settings: AccountSettings
    budget: WaitBudget
    stage: str
    not_before: float = 0.0
    busy_tries: int = 0
    attempts: int = 0
    unreachable: int = 0  # times the server could not be reached (or was lost for good) so far


@dataclass(frozen=True)
class _Again:
    """Run the job again in `delay` seconds: the server pushed back."""

    delay: float
    reason: str


Work = Callable[[_Job], "_Again | None"]


class _Dispatcher:
    """Runs jobs in threads: at most `jobs` at once and `limits` per server;
    a job that returns `_Again` goes back to the end of the queue."""

    def __init__(self, jobs: int, limits: ServerLimits, stop: threading.Event, progress: SweepProgress) -> None:
        self.jobs = max(jobs, 1)
        self.limits = limits
        self.stop = stop
        self.progress = progress
        self.finished: queue.Queue[tuple[_Job, _Again | None]] = queue.Queue()

    def run(self, jobs: list[_Job], work: Work, on_skipped: Callable[[_Job], None]) -> None:
        pending = list(jobs)
        running = 0
        while pending or running:
            if self.stop.is_set():
                for job in pending:
                    on_skipped(job)
                pending = []
            running += self._start_ready(pending, work, self.jobs - running)
            if not running and not pending:
                break
            # Sleep until an account finishes or a requeued one is due; a ready account that
            # waits for a connection slot is started when an account of its server finishes.
            now = time.monotonic()
            due = [job.not_before - now for job in pending if job.not_before > now]
            try:
                job, again = self.finished.get(timeout=max(min([*due, POLL]), 0.01))
            except queue.Empty:
                continue
            running -= 1
            self.limits.release(job.settings.host)
            if again is not None:
                job.not_before = time.monotonic() + again.delay
                pending.append(job)
                self.progress.account_waiting(job.settings.account, again.delay, again.reason)

    def _start_ready(self, pending: list[_Job], work: Work, free: int) -> int:
        started = 0
        now = time.monotonic()
        for job in list(pending):
            if started >= free:
                break
            if job.not_before > now or not self.limits.try_acquire(job.settings.host):
                continue
            pending.remove(job)
            started += 1
            threading.Thread(target=self._run_one, args=(job, work), name=f"sweep {job.settings.account}",
                             daemon=True).start()
        return started

    def _run_one(self, job: _Job, work: Work) -> None:
        again: _Again | None = None
        try:
            again = work(job)
        except BaseException:  # a bug must not hang the sweep; the work function reports errors itself
            log.exception("%s: unexpected failure", job.settings.account)
        finally:
            time.sleep(CLOSE_GRACE)
            self.finished.put((job, again))


def _again(job: _Job, busy: ServerBusy | None, delay: float | None, options: SweepOptions,
           reason: str | None = None) -> _Again | None:
    """Requeue after a pushback, when the account's budget allows; None: give up."""
    job.busy_tries += 1
    if delay is None:
        if busy is None:
            return None
        delay = job.budget.delay_for(busy, job.busy_tries, options.retry_delay)
    if options.stop.is_set() or not job.budget.reserve(delay):
        return None
    if reason is None and busy is not None:
        reason = _("server busy ({reply})").format(reply=busy.message)
    return _Again(delay, reason or _("server asked for a pause"))


def _unreachable_again(job: _Job, exc: ConnectError, options: SweepOptions) -> _Again | None:
    """The server could not be reached, or was lost and not regained: other
    accounts go first, this one is tried again later (a restart or a network
    blip at night must not cost an account its backup), `max_retries` times,
    backing off, within the account's waiting budget."""
    if job.unreachable >= options.max_retries:
        return None
    job.unreachable += 1
    delay = min(options.retry_delay * 2 ** (job.unreachable - 1), MAX_BACKOFF)
    return _again(job, None, delay, options, _("cannot reach the server ({error})").format(error=exc.message))


class _Passwords:
    """One lookup at a time: keyring backends and password commands (gpg
    agents asking for a passphrase) are not made for threads."""

    def __init__(self, lookup: Callable[[AccountSettings], str]) -> None:
        self.lookup = lookup
        self.lock = threading.Lock()

    def __call__(self, settings: AccountSettings) -> str:
        with self.lock:
            return self.lookup(settings)


def _limits(options: SweepOptions) -> ServerLimits:
    return ServerLimits(options.max_connections_per_server, options.max_bytes_per_second)


def _budget(options: SweepOptions) -> WaitBudget:
    return WaitBudget(limit=options.max_busy_wait, in_place_limit=min(options.in_place_wait, options.max_busy_wait))


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


def run_sweep(settings: SweepSettings, options: SweepOptions, progress: SweepProgress | None = None, *,
              shard: Shard | None = None) -> SweepResult:
    """Back up and verify every account of `settings` (of `shard`), in parallel."""
    sink: SweepProgress = progress or LogProgress()
    accounts = select_accounts(settings, shard)
    result = SweepResult(outcomes=[AccountOutcome(account) for account in accounts],
                         started_at=datetime.now().astimezone(), shard=shard, config=settings.path)
    outcomes = {id(outcome.settings): outcome for outcome in result.outcomes}
    limits = _limits(options)
    worker = _SweepWorker(options, limits, sink, outcomes)
    started = time.monotonic()
    sink.sweep_start(len(accounts))
    jobs = [_Job(account, _budget(options), "backup") for account in accounts]
    _Dispatcher(options.jobs, limits, options.stop, sink).run(jobs, worker, worker.skipped)
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
        self.passwords = _Passwords(options.password)

    def __call__(self, job: _Job) -> _Again | None:
        outcome = self.outcomes[id(job.settings)]
        outcome.attempts += 1
        self.progress.account_start(job.settings.account, job.stage, outcome.attempts)
        started = time.monotonic()
        again: _Again | None = None
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

    def skipped(self, job: _Job) -> None:
        """Never started (or not started again) because the sweep was stopped."""
        outcome = self.outcomes[id(job.settings)]
        outcome.codes["stopped"] = ExitCode.INTERRUPTED
        outcome.verify_problems.append(_("not done: the sweep was stopped"))
        self.progress.account_done(outcome.account, outcome.exit_code, describe(outcome))

    def _pushback(self, job: _Job, exc: MailbackupError) -> _Again | None:
        busy = pushback_of(exc)
        if busy is not None:
            return _again(job, busy, None, self.options)
        if isinstance(exc, ConnectError):
            return _unreachable_again(job, exc, self.options)
        return None

    def _attempt(self, job: _Job, outcome: AccountOutcome) -> _Again | None:
        settings = job.settings
        password = self.passwords(settings)
        # Log in before opening the archive: an account nobody can log in to gets no empty archive.
        with ImapSession(settings.connection, settings.account, password) as session, \
                open_archive(settings.dest, settings.account, format=settings.format) as archive:
            if job.stage == "backup":
                again = self._backup(job, outcome, session, archive)
                if again is not None or self.options.stop.is_set():
                    return again
                job.stage = "verify"
            if not self.options.verify:
                outcome.verify = "skipped"
                return None
            return self._verify(job, outcome, session, archive)

    def _backup(self, job: _Job, outcome: AccountOutcome, session: ImapSession, archive: Archive) -> _Again | None:
        settings, options = job.settings, self.options
        batch_bytes = 16 * MEGABYTE
        if options.max_bytes_per_second:  # about a second of transfer per FETCH, so pacing stays smooth
            batch_bytes = min(max(options.max_bytes_per_second, MEGABYTE // 4), batch_bytes)
        engine_options = BackupOptions(
            include=settings.include, exclude=settings.exclude, batch_messages=options.batch_size,
            batch_bytes=batch_bytes, max_retries=options.max_retries, retry_delay=options.retry_delay,
            stop=options.stop, busy_wait=job.budget,
        )
        progress = _EngineProgress(settings.account, self.progress, self.limits.bucket(settings.host), options.stop)
        stats = BackupEngine(session, archive, engine_options, progress).run()
        outcome.record_backup(stats)
        deferred, job.budget.deferred = job.budget.deferred, None
        if deferred is not None and not stats.interrupted:
            # The server wanted a long pause: give the connection to another account and come back.
            return _again(job, job.budget.last, deferred, options)
        return None

    def _verify(self, job: _Job, outcome: AccountOutcome, session: ImapSession, archive: Archive) -> _Again | None:
        settings = job.settings
        verify_options = VerifyOptions(
            account=settings.account, server=str(settings.connection.server), include=settings.include,
            exclude=settings.exclude, deadline=settings.deadline, max_age=self.options.verify_max_age,
        )
        result, code = verify_recorded(session, archive, verify_options, _VerifyProgress(settings.account))
        directories = [archive.reports_dir]
        if self.options.report_dir is not None:
            directories.append(extra_report_dir(self.options.report_dir, settings.account))
        write_verify_reports(result, directories, date.today())
        outcome.record_verify(result, code)
        for folder in result.folders:
            pushback = recognise(folder.error) if folder.error else None
            if folder.error and pushback is not None:  # verify again later, on a rested server
                return _again(job, ServerBusy(folder.error, wait_seconds=pushback.wait_seconds), None, self.options)
        return None


def verify_recorded(session: ImapSession, archive: Archive, options: VerifyOptions,
                    progress: VerifyProgress | None = None) -> tuple[VerifyResult, ExitCode]:
    """Online verification kept in the state's `runs` table, as `mailbackup
    verify` does; a server that cannot be reached gives a `failed` result with
    its error's exit code.  Pushback is raised, for the caller to retry."""
    run_id = archive.state.start_run("verify")
    result: VerifyResult | None = None
    code: ExitCode | None = None
    try:
        try:
            result = verify_online(session, archive, options, progress)
        except (ConnectError, AuthError, TLSError, ServerError) as exc:
            if pushback_of(exc) is not None:
                raise
            result, code = failed_result(options, str(exc)), exc.exit_code
    finally:
        if result is None:
            archive.state.finish_run(run_id, "interrupted", 0, 0)
        else:
            archive.state.finish_run(run_id, result.status.value, result.totals.checked,
                                     result.totals.bytes_checked, result.mode.value)
    return result, code or verify_exit_code(result)


def _gave_up(exc: MailbackupError, budget: WaitBudget) -> MailbackupError:
    if isinstance(exc, ServerBusy) and budget.spent:
        return ServerBusy(_("{error}; gave up after waiting {spent:.0f} s in all (max_busy_wait {limit:g} s)").format(
            error=exc.message, spent=budget.spent, limit=budget.limit))
    return exc
