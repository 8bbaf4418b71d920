"""A sweep's accounts in worker processes: one interpreter each, so parsing
and hashing of several accounts use several cores (in threads, one
interpreter's lock held a 500-account sweep to one core: docs/benchmark.md).

Public API:

* `WorkerPool(options, limits, progress)`: persistent worker processes, one
  per account running at once (the dispatcher runs at most `jobs`), started
  when first needed; `run(job, outcome, password)`
  hands one attempt of an account to an idle worker and relays its messages
  until it is done; `close()` ends the workers;
* `worker_main`: the child's entry point.

The parent's dispatcher (dispatch.py) still decides what runs and when;
each of its threads, instead of running the attempt itself, waits on a
worker.  The worker runs the same attempt (attempt.py) and sends back, on
its pipe: progress events, log records (the parent's handlers write them),
requests for extra connection slots and bandwidth (answered from the
parent's `ServerLimits`), and at the end the account's outcome and its job's
state.  The password travels through the pipe, never the command line or the
environment.  Workers ignore Ctrl-C and SIGTERM: the parent decides, and
tells them through one shared stop event; a worker that dies fails its
account with a one-line error, and the next attempt starts a new one (the
archive's lock is an OS lock, released by the kernel when the holder dies).
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from mailbackup.config import AccountSettings
from mailbackup.errors import WorkerDied
from mailbackup.i18n import _, language, set_language
from mailbackup.sweep.attempt import AccountAttempt
from mailbackup.sweep.dispatch import Again, Job
from mailbackup.sweep.limits import ServerLimits
from mailbackup.sweep.options import SweepOptions
from mailbackup.sweep.outcome import AccountOutcome
from mailbackup.sweep.progress import SweepProgress

POLL = 0.2  # a waiting parent thread looks at the sweep's stop flag this often
CLOSE_WAIT = 5.0  # seconds a worker is given to end after the sweep, before it is killed
PROGRESS_EVENTS = frozenset({"folder_start", "saved", "warning"})
# Not sent to a worker: live objects of the parent (the stop flag, the password lookup).
PARENT_ONLY = frozenset({"stop", "password"})


@dataclass
class _Request:
    job: Job
    outcome: AccountOutcome
    password: str
    options: dict[str, Any]  # SweepOptions' fields but PARENT_ONLY
    levels: dict[str, int]  # the parent's logger levels ("" the root's)
    language: str  # the parent's, whatever chose it


def _context() -> BaseContext:
    # Never fork the threaded parent; forkserver (POSIX) forks each worker from a clean
    # process that has imported the sweep once, spawn (Windows, macOS) starts afresh.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__])  # each worker a fork of a server that imported the sweep
    return context


class _Worker:
    def __init__(self, context: BaseContext, stop: ProcessEvent) -> None:
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(child, stop), name="mailbackup sweep worker", daemon=True)
        self.process.start()
        child.close()

    def ask_to_end(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass

    def end(self, deadline: float) -> None:
        """Wait for it to end until `deadline` (monotonic), then kill it."""
        self.process.join(max(deadline - time.monotonic(), 0.0))
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def cause(self) -> str:
        self.process.join(1.0)
        code = self.process.exitcode
        if code is not None and code < 0:
            return _("signal {number}").format(number=-code)
        return _("exit code {code}").format(code=code)


class WorkerPool:
    """Worker processes, started as accounts need them: an idle one, else a new one."""

    def __init__(self, options: SweepOptions, limits: ServerLimits, progress: SweepProgress) -> None:
        self.options = options
        self.limits = limits
        self.progress = progress
        self._context: BaseContext | None = None
        self._stop: ProcessEvent | None = None
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()

    def run(self, job: Job, outcome: AccountOutcome, password: Callable[[AccountSettings], str]) -> Again | None:
        """One attempt in a worker; `password(settings)` is looked up here, in the parent."""
        request = _Request(job, outcome, password(job.settings),
                           {item.name: getattr(self.options, item.name) for item in fields(self.options)
                            if item.name not in PARENT_ONLY}, _logger_levels(), language())
        worker = self._take()
        try:
            returned_job, returned_outcome, again = _Relay(self, worker, job.settings.host).run(request)
        except BaseException:  # died, or left in a state nobody knows: never reused
            self._discard(worker)
            raise
        self._give_back(worker)
        _copy_into(job, returned_job)
        _copy_into(outcome, returned_outcome)
        return again

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], []
        for worker in workers:
            worker.ask_to_end()
        deadline = time.monotonic() + CLOSE_WAIT
        for worker in workers:
            worker.end(deadline)

    def stop_flag(self) -> ProcessEvent:
        assert self._stop is not None
        return self._stop

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._context is None:
                self._context = _context()
                self._stop = self._context.Event()
            assert self._stop is not None
            if self.options.stop.is_set():
                self._stop.set()
            worker = _Worker(self._context, self._stop)
            self._all.append(worker)
            return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        worker.ask_to_end()
        worker.end(time.monotonic() + CLOSE_WAIT)


class _Relay:
    """The parent's side of one attempt: answers and forwards a worker's messages."""

    def __init__(self, pool: WorkerPool, worker: _Worker, host: str) -> None:
        self.pool = pool
        self.worker = worker
        self.host = host
        self.claimed = 0  # extra connection slots the worker holds now

    def run(self, request: _Request) -> tuple[Job, AccountOutcome, Again | None]:
        try:
            self.worker.conn.send(request)
            while True:
                message = self._next()
                if message[0] == "done":
                    return message[1], message[2], message[3]
                self._handle(message)
        finally:
            for _slot in range(self.claimed):  # a worker that died holding them, or forgot
                self.pool.limits.release(self.host)

    def _next(self) -> tuple[Any, ...]:
        conn, process = self.worker.conn, self.worker.process
        while True:
            ready = wait([conn, process.sentinel], timeout=POLL)
            if self.pool.options.stop.is_set():
                self.pool.stop_flag().set()
            if conn in ready or (ready and conn.poll()):
                try:
                    return conn.recv()  # type: ignore[no-any-return]
                except (EOFError, OSError):
                    break
            elif ready:  # only the process's sentinel: it has ended
                break
        raise WorkerDied(_("worker process ended unexpectedly ({cause})").format(cause=self.worker.cause()))

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "log":
            record: logging.LogRecord = message[1]
            logging.getLogger(record.name).handle(record)
        elif kind == "progress" and message[1] in PROGRESS_EVENTS:
            getattr(self.pool.progress, message[1])(*message[2])
        elif kind == "claim":
            granted = self.pool.limits.try_acquire(self.host)
            self.claimed += granted
            self.worker.conn.send(granted)
        elif kind == "release":
            self.claimed -= 1
            self.pool.limits.release(self.host)
        elif kind == "take":
            bucket = self.pool.limits.bucket(self.host)
            self.worker.conn.send(bucket.take(message[1], self.pool.options.stop) if bucket else 0.0)


def _copy_into(target: object, source: object) -> None:
    """The worker's copy's fields into the parent's object (whose settings the sweep keys on)."""
    for item in fields(target):  # type: ignore[arg-type]
        if item.name != "settings":
            setattr(target, item.name, getattr(source, item.name))


def _logger_levels() -> dict[str, int]:
    levels = {"": logging.getLogger().level}
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


# ---------------------------------------------------------------------------
# The worker's side
# ---------------------------------------------------------------------------


class _Channel:
    """The worker's pipe, shared by the attempt's threads (an account may use several connections)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._sending = threading.Lock()
        self._calling = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._sending:
            self.conn.send(message)

    def call(self, *message: Any) -> Any:
        with self._calling:
            self.send(*message)
            return self.conn.recv()


class _RemoteProgress:
    """The sweep's progress, in the parent."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    def sweep_start(self, accounts: int) -> None:
        pass  # the parent's alone, like account_start, account_waiting and account_done

    def account_start(self, account: str, stage: str, attempt: int) -> None:
        pass

    def account_waiting(self, account: str, seconds: float, reason: str) -> None:
        pass

    def account_done(self, account: str, exit_code: Any, summary: str) -> None:
        pass

    def folder_start(self, account: str, folder: str, messages: int, size: int) -> None:
        self.channel.send("progress", "folder_start", (account, folder, messages, size))

    def saved(self, account: str, messages: int, size: int) -> None:
        self.channel.send("progress", "saved", (account, messages, size))

    def warning(self, account: str, text: str) -> None:
        self.channel.send("progress", "warning", (account, text))


class _RemoteBucket:
    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    def take(self, amount: int, stop: threading.Event | None = None) -> float:
        return float(self.channel.call("take", amount))  # the parent sleeps it off, stopping when told


class _RemoteLimits:
    """The parent's `ServerLimits`, for the one server of this worker's account."""

    def __init__(self, channel: _Channel, paced: bool) -> None:
        self.channel = channel
        self.paced = paced

    def try_acquire(self, host: str) -> bool:
        return bool(self.channel.call("claim"))

    def release(self, host: str) -> None:
        self.channel.send("release")

    def bucket(self, host: str) -> _RemoteBucket | None:
        return _RemoteBucket(self.channel) if self.paced else None


class _PipeQueue:
    """What `QueueHandler` puts records into: the pipe to the parent."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    def put_nowait(self, record: logging.LogRecord) -> None:
        self.channel.send("log", record)


def worker_main(conn: Connection, stop: ProcessEvent) -> None:
    """A worker process: attempts of accounts, one at a time, until told to end."""
    for number in (signal.SIGINT, signal.SIGTERM):  # the parent decides when to stop, and says so
        signal.signal(number, signal.SIG_IGN)
    channel = _Channel(conn)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(_PipeQueue(channel))]  # type: ignore[arg-type]
    stopping = threading.Event()
    threading.Thread(target=_relay_stop, args=(stop, stopping), name="stop watcher", daemon=True).start()
    while True:
        try:
            request: _Request | None = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        set_language(request.language)
        for name, level in request.levels.items():
            logging.getLogger(name or None).setLevel(level)
        options = SweepOptions(**request.options, stop=stopping)
        attempt = AccountAttempt(options, _RemoteLimits(channel, bool(options.max_bytes_per_second)),
                                 _RemoteProgress(channel), _given(request.password))
        again = attempt.run(request.job, request.outcome)
        channel.send("done", request.job, request.outcome, again)


def _relay_stop(stop: ProcessEvent, stopping: threading.Event) -> None:
    stop.wait()
    stopping.set()


def _given(password: str) -> Callable[[AccountSettings], str]:
    def lookup(settings: AccountSettings) -> str:
        return password
    return lookup
