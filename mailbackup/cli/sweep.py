"""`mailbackup sweep CONFIG`: back up, then verify, every account of a
config, several at once; one combined report and the worst exit code."""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
from tqdm import tqdm

from mailbackup.archive import private_umask
from mailbackup.cli.common import handle_errors, max_time_option, verbosity_options
from mailbackup.cli.format import accounts_text, display_width, duration, human_bytes, messages_text, pad, wrap
from mailbackup.config import load_sweep
from mailbackup.config.keys import WORKER_MODES
from mailbackup.errors import SEVERITY, ExitCode, StorageError
from mailbackup.i18n import N_, _
from mailbackup.sweep.options import Shard, SweepOptions
from mailbackup.sweep.progress import LogProgress, SweepProgress, stage_word
from mailbackup.sweep.reports import report_directory, write_reports
from mailbackup.sweep.run import AccountOutcome, SweepResult, describe, run_sweep, take_sweep_lock
from mailbackup.text import parse_duration, system_error

log = logging.getLogger("mailbackup.sweep")
LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 5
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Protocol traces of these libraries can carry credentials: only their warnings pass.
NOISY_LOGGERS = ("imapclient", "imaplib")


@click.command(help=_(
    "Back up, then verify, every account in CONFIG, several at once.\n\n"
    "One failing account never stops the others.  Passwords come from each account's password_command, "
    "password_file or the keyring (`mailbackup auth set`, `mailbackup auth import`); nobody is asked.  "
    "Writes summary.json/.csv/.html and sweep.json/.csv into DEST/reports (per shard: DEST/reports/shard-I-of-N).\n\n"
    "Exit code: the worst account's, in this order (worst last): 0 ok, 1 warnings, 6 archive in use, 9 server "
    "error, 10 verification inconclusive, 4 connection, 5 TLS, 3 password, 2 config, 7 local storage, 8 corrupt, "
    "130 interrupted."))
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help=_("Accounts at once, one thread each (default: the config's jobs, else 4)."))
@click.option("--workers", type=click.Choice(WORKER_MODES), default=None,
              help=_("threads: the accounts in threads of this process; processes: each job in a worker "
                     "process of its own, to use every core (default: the config's workers, else threads)."))
@click.option("--shard", metavar="I/N", default=None,
              help=_("Only this machine's share: shard I (1 to N) of N, by a stable hash of the account name."))
@click.option("--no-verify", is_flag=True, help=_("Back up only; do not verify."))
@click.option("--verify-max-age", metavar="DURATION", default=None,
              help=_("Skip files verified within DURATION (e.g. 7d): a nightly sweep re-reads only what is due."))
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help=_("Write the combined report here (default DEST/reports), and a copy of each account's."))
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help=_("Also log to this file (time stamps; rotated at 5 MB, 5 kept)."))
@click.option("--max-connections-per-server", type=click.IntRange(1, 100), default=None,
              help=_("Connections at once toward one server (default: the config's, else 4)."))
@click.option("--max-bytes-per-second", type=click.IntRange(1), default=None,
              help=_("Bandwidth limit per server, shared by its accounts (default: the config's, else none)."))
@click.option("--max-busy-wait", type=click.FloatRange(0), default=None,
              help=_("Seconds an account may wait in all for a server that says it is busy (default 300)."))
@click.option("--batch-size", type=click.IntRange(1, 10000), default=None, help=_("Messages per FETCH (default 500)."))
@click.option("--retries", type=click.IntRange(0, 50), default=None, help=_("Reconnects after a drop (default 5)."))
@click.option("--retry-delay", type=click.FloatRange(0, 600), default=None,
              help=_("Seconds before the first reconnect; doubles each time (default 1)."))
@max_time_option
@verbosity_options
@handle_errors
def sweep(config: str, jobs: int | None, workers: str | None, shard: str | None, no_verify: bool,
          verify_max_age: str | None, report_dir: str | None, log_file: str | None,
          max_connections_per_server: int | None,
          max_bytes_per_second: int | None, max_busy_wait: float | None, batch_size: int | None,
          retries: int | None, retry_delay: float | None, max_time: str | None, verbose: int, quiet: bool) -> None:
    private_umask()
    interactive = sys.stderr.isatty() and not quiet
    setup_sweep_logging(verbose, quiet, interactive, Path(log_file) if log_file else None)
    settings = load_sweep(Path(config))
    parsed_shard = Shard.parse(shard) if shard else None
    options = SweepOptions.from_settings(
        settings, jobs=jobs, workers=workers, max_connections_per_server=max_connections_per_server,
        max_bytes_per_second=max_bytes_per_second, verify=not no_verify,
        verify_max_age=parse_duration(verify_max_age) if verify_max_age else None,
        report_dir=Path(report_dir) if report_dir else None, batch_size=batch_size, max_retries=retries,
        retry_delay=retry_delay, max_busy_wait=max_busy_wait, max_time=parse_duration(max_time) if max_time else None,
    )
    lock = take_sweep_lock(settings, parsed_shard)
    try:
        progress = TqdmSweepProgress(options.jobs) if interactive else None
        with _stop_on_signals(options.stop):
            try:
                result = run_sweep(settings, options, progress or LogProgress(), shard=parsed_shard)
            finally:
                if progress is not None:
                    progress.close()
        written = write_reports(result, report_directory(settings, options.report_dir, parsed_shard))
    finally:
        lock.release()
    log.info("sweep finished in %s: exit code %d", duration(result.seconds), result.exit_code)
    if not quiet:
        _print_table(result)
        click.echo(_("Report: {path}").format(path=written[2]))
    else:  # only what went wrong: cron mails any output, so a good night stays silent
        for outcome in result.outcomes:
            if outcome.exit_code is not ExitCode.OK:
                click.echo(f"{outcome.account}: {describe(outcome)}", err=True)
    raise SystemExit(int(result.exit_code))


# -- logging --------------------------------------------------------------------


class _NoProtocolTraces(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(NOISY_LOGGERS)


class _TqdmHandler(logging.Handler):
    """Log lines above the progress bars instead of through them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_sweep_logging(verbose: int, quiet: bool, interactive: bool, log_file: Path | None) -> None:
    """Terminal: warnings above the bars.  No terminal (cron, systemd): every
    event as a time-stamped line.  --log-file: everything, with time stamps."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    console: logging.Handler
    if interactive:
        console = _TqdmHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console.setLevel(logging.INFO if verbose else logging.WARNING)
    else:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s %(message)s", TIME_FORMAT))
        console.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose > 1 else logging.INFO)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        handlers.append(_file_handler(log_file, verbose))
    for handler in handlers:
        handler.addFilter(_NoProtocolTraces())
    root.handlers[:] = handlers
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _file_handler(path: Path, verbose: int) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS,
                                                       encoding="utf-8")
    except OSError as exc:
        raise StorageError(_("cannot open log file {path}: {error}").format(path=path, error=system_error(exc))) \
            from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s",
                                           TIME_FORMAT))
    handler.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    return handler


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM (systemd stopping the service): every account
    finishes its current batch and the sweep ends, reporting what it did.
    A second Ctrl-C stops at once (still safe: the next run recovers)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        log.warning(_("stopping: each account finishes its current batch (Ctrl-C again to stop at once)"))

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


# -- progress on a terminal -----------------------------------------------------------


class TqdmSweepProgress:
    """An overall bar (accounts, with messages and bytes) and one line per
    running account; every event also goes to the log (the file, with --log-file)."""

    def __init__(self, jobs: int) -> None:
        self.log: SweepProgress = LogProgress()
        self.lock = threading.Lock()
        self.overall: Any = None
        self.lines: dict[str, Any] = {}
        self.positions: dict[str, int] = {}
        self.state: dict[str, list[Any]] = {}  # account -> [stage, folder, saved, total, bytes]
        self.free = list(range(1, jobs + 1))
        self.messages = 0
        self.bytes = 0

    def sweep_start(self, accounts: int) -> None:
        self.log.sweep_start(accounts)
        self.overall = tqdm(total=accounts, desc=_("accounts"), unit=_("acct"), position=0, file=sys.stderr,
                            dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {postfix} [{elapsed}]")
        self._overall_postfix()

    def account_start(self, account: str, stage: str, attempt: int) -> None:
        self.log.account_start(account, stage, attempt)
        with self.lock:
            position = self.free.pop(0) if self.free else len(self.lines) + 1
            self.positions[account] = position
            self.lines[account] = tqdm(total=0, position=position, leave=False, file=sys.stderr,
                                       dynamic_ncols=True, bar_format="  {desc}")
            self.state[account] = [stage, "", 0, 0, 0]
            self._line(account)

    def folder_start(self, account: str, folder: str, messages: int, size: int) -> None:
        self.log.folder_start(account, folder, messages, size)
        with self.lock:
            if account in self.state:
                self.state[account][1:4] = [folder, 0, messages]
                self._line(account)

    def saved(self, account: str, messages: int, size: int) -> None:
        with self.lock:
            self.messages += messages
            self.bytes += size
            if account in self.state:
                self.state[account][2] += messages
                self.state[account][4] += size
                self._line(account)
            self._overall_postfix()

    def warning(self, account: str, text: str) -> None:
        self.log.warning(account, text)

    def account_waiting(self, account: str, seconds: float, reason: str) -> None:
        self.log.account_waiting(account, seconds, reason)
        self._close_line(account)

    def account_done(self, account: str, exit_code: ExitCode, summary: str) -> None:
        self.log.account_done(account, exit_code, summary)
        self._close_line(account)
        with self.lock:
            if self.overall is not None:
                self.overall.update(1)

    def close(self) -> None:
        for account in list(self.lines):
            self._close_line(account)
        if self.overall is not None:
            self.overall.close()

    def _line(self, account: str) -> None:
        stage, folder, saved, total, size = self.state[account]
        where = f"  {folder[-30:]} {saved}/{total}" if folder else ""
        self.lines[account].set_description_str(f"{account[:40]}: {stage}{where}  {human_bytes(size)}")

    def _overall_postfix(self) -> None:
        if self.overall is not None:
            self.overall.set_postfix_str(_("{messages}, {size}").format(messages=messages_text(self.messages),
                                                                       size=human_bytes(self.bytes)))

    def _close_line(self, account: str) -> None:
        with self.lock:
            line = self.lines.pop(account, None)
            self.state.pop(account, None)
            if line is not None:
                self.free.append(self.positions.pop(account))
                self.free.sort()
                line.close()


# -- the final table -------------------------------------------------------------------


MIN_PROBLEM_COLUMNS = 30  # narrower than this, the problem goes on lines of its own below the row


def _print_table(result: SweepResult) -> None:
    width = max([len(outcome.account) for outcome in result.outcomes] + [display_width(_("Account")), 7])
    click.echo(f"{pad(_('Account'), width)}  {pad(_('Backup'), 11)}  {pad(_('Verify'), 10)}  "
               f"{pad(_('Exit'), 4, right=True)}  {pad(_('New'), 6, right=True)}  {pad(_('Size'), 9, right=True)}  "
               f"{_('Problem')}")
    indent = width + 2 + 11 + 2 + 10 + 2 + 4 + 2 + 6 + 2 + 9 + 2
    columns = shutil.get_terminal_size((100, 24)).columns - 1
    if columns - indent < MIN_PROBLEM_COLUMNS:
        indent = 4
    for outcome in result.outcomes:
        row = (f"{outcome.account.ljust(width)}  {pad(stage_word(outcome.backup), 11)}  "
               f"{pad(stage_word(outcome.verify), 10)}  "
               f"{int(outcome.exit_code):>4}  {outcome.messages:>6}  {human_bytes(outcome.bytes):>9}  ")
        problem = wrap(_first_problem(outcome), max(columns - indent, MIN_PROBLEM_COLUMNS))
        if indent == 4:  # narrow terminal
            click.echo(row.rstrip())
            problem = [line for line in problem if line]
        else:
            click.echo(row + problem.pop(0))
        for line in problem:
            click.echo(" " * indent + line)
    counts: dict[ExitCode, int] = {}
    for outcome in result.outcomes:
        counts[outcome.exit_code] = counts.get(outcome.exit_code, 0) + 1
    parts = [f"{counts[code]} {_(EXIT_WORDS[code])}" for code in SEVERITY if code in counts]
    shard = _(" (shard {shard})").format(shard=result.shard) if result.shard else ""
    click.echo(_("{accounts}{shard} in {duration}: {codes}. Exit code {code} ({name}).").format(
        accounts=accounts_text(len(result.outcomes)), shard=shard, duration=duration(result.seconds),
        codes=", ".join(parts) or _("none"), code=int(result.exit_code), name=_(EXIT_WORDS[result.exit_code])))
    if result.interrupted:
        click.echo(_("Interrupted: what is listed as saved is safe; run the same command to continue."), err=True)


# How the final table names the exit codes (English: the ExitCode names).
EXIT_WORDS = {
    ExitCode.OK: N_("ok"), ExitCode.WARNINGS: N_("warnings"), ExitCode.USAGE: N_("usage"), ExitCode.AUTH: N_("auth"),
    ExitCode.CONNECTION: N_("connection"), ExitCode.TLS: N_("tls"), ExitCode.LOCKED: N_("locked"),
    ExitCode.STORAGE: N_("storage"), ExitCode.CORRUPT: N_("corrupt"), ExitCode.PROTOCOL: N_("protocol"),
    ExitCode.INCONCLUSIVE: N_("inconclusive"), ExitCode.INTERRUPTED: N_("interrupted"),
}
def _first_problem(outcome: AccountOutcome) -> str:
    problems = ([outcome.error] if outcome.error else []) + outcome.problems
    if not problems:
        return ""
    more = _(" (+{count} more in sweep.csv)").format(count=len(problems) - 1) if len(problems) > 1 else ""
    return problems[0] + more
