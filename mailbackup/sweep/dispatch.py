"""The dispatcher that runs a sweep's (and `check`'s) accounts in threads.

Public API:

* `Dispatcher(jobs, limits, stop, progress).run(jobs, work, on_skipped)`:
  at most `jobs` accounts at once and `ServerLimits` per server host; a
  `Job` whose work returns `Again` goes back to the queue with a not-before
  time, so a server that pushes back costs no worker;
* `requeue` and `requeue_unreachable`: the `Again` for a pushback or an
  unreachable server, within the account's `WaitBudget`; None gives up;
* `Passwords`: one password lookup at a time;
* `server_limits` and `wait_budget`: the limits and budget of `SweepOptions`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailbackup.config import AccountSettings
from mailbackup.errors import ConnectError, ServerBusy
from mailbackup.i18n import _
from mailbackup.imap.pushback import MAX_BACKOFF, WaitBudget
from mailbackup.sweep.limits import ServerLimits
from mailbackup.sweep.options import SweepOptions
from mailbackup.sweep.progress import SweepProgress

log = logging.getLogger(__name__)

POLL = 0.5  # the dispatcher looks at the clock and the stop flag this often
# A server counts a connection until it has seen it close; a slot reused at once
# would let it count one more than the limit for a moment (measured on loopback:
# ~1 ms).  The close reaches the server half a round trip after it is sent, so an
# account's grace is half its login's round trip and a margin (`grace_after`), or
# CLOSE_GRACE when that is not known.  Counted from the close (`Job.closed_at`), so
# the account's last local work overlaps it.
CLOSE_GRACE = 0.05
GRACE_MARGIN = 0.005


@dataclass
class Job:
    settings: AccountSettings
    budget: WaitBudget
    stage: str
    not_before: float = 0.0
    busy_tries: int = 0
    attempts: int = 0
    unreachable: int = 0  # times the server could not be reached (or was lost for good) so far
    closed_at: float | None = None  # this attempt's last connection closed (monotonic); None: not known
    grace: float = CLOSE_GRACE  # how long the server may take to see that close (grace_after)
    backup_started: float | None = None  # its first backup attempt began (monotonic; max_time counts from it)


@dataclass(frozen=True)
class Again:
    """Run the job again in `delay` seconds: the server pushed back."""

    delay: float
    reason: str


Work = Callable[[Job], "Again | None"]


class Dispatcher:
    """Runs jobs in threads: at most `jobs` at once and `limits` per server;
    a job that returns `Again` goes back to the end of the queue."""

    def __init__(self, jobs: int, limits: ServerLimits, stop: threading.Event, progress: SweepProgress) -> None:
        self.jobs = max(jobs, 1)
        self.limits = limits
        self.stop = stop
        self.progress = progress
        self.finished: queue.Queue[tuple[Job, Again | None]] = queue.Queue()

    def run(self, jobs: list[Job], work: Work, on_skipped: Callable[[Job], None]) -> None:
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

    def _start_ready(self, pending: list[Job], work: Work, free: int) -> int:
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

    def _run_one(self, job: Job, work: Work) -> None:
        again: Again | None = None
        job.closed_at = None
        try:
            again = work(job)
        except BaseException:  # a bug must not hang the sweep; the work function reports errors itself
            log.exception("%s: unexpected failure", job.settings.account)
        finally:
            remaining = close_grace_left(job.closed_at, time.monotonic(), job.grace)
            if remaining > 0:
                time.sleep(remaining)
            self.finished.put((job, again))


def close_grace_left(closed_at: float | None, now: float, grace: float = CLOSE_GRACE) -> float:
    """What is left of the grace since the connection closed (all of it when that time is not known)."""
    return grace if closed_at is None else max(closed_at + grace - now, 0.0)


def grace_after(login_seconds: float | None) -> float:
    """The grace after a connection whose login took `login_seconds`: half of
    that round trip (an upper bound: the server's own time is in it) and a
    margin.  50 ms was spent after every account of a sweep on loopback, and
    was less than a 100 ms-each-way link needs."""
    return CLOSE_GRACE if login_seconds is None else login_seconds / 2 + GRACE_MARGIN


def requeue(job: Job, busy: ServerBusy | None, delay: float | None, options: SweepOptions,
           reason: str | None = None) -> Again | None:
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
    return Again(delay, reason or _("server asked for a pause"))


def requeue_unreachable(job: Job, exc: ConnectError, options: SweepOptions) -> Again | None:
    """The server could not be reached, or was lost and not regained: other
    accounts go first, this one is tried again later (a restart or a network
    blip at night must not cost an account its backup), `max_retries` times,
    backing off, within the account's waiting budget."""
    if job.unreachable >= options.max_retries:
        return None
    job.unreachable += 1
    delay = min(options.retry_delay * 2 ** (job.unreachable - 1), MAX_BACKOFF)
    return requeue(job, None, delay, options, _("cannot reach the server ({error})").format(error=exc.message))


class Passwords:
    """One lookup at a time: keyring backends and password commands (gpg
    agents asking for a passphrase) are not made for threads."""

    def __init__(self, lookup: Callable[[AccountSettings], str]) -> None:
        self.lookup = lookup
        self.lock = threading.Lock()

    def __call__(self, settings: AccountSettings) -> str:
        with self.lock:
            return self.lookup(settings)


def server_limits(options: SweepOptions) -> ServerLimits:
    return ServerLimits(options.max_connections_per_server, options.max_bytes_per_second)


def wait_budget(options: SweepOptions) -> WaitBudget:
    return WaitBudget(limit=options.max_busy_wait, in_place_limit=min(options.in_place_wait, options.max_busy_wait))
