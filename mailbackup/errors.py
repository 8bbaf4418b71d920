"""The one error hierarchy of mailbackup.

Every failure a user can meet is a `MailbackupError` subclass.  Each class
knows its exit code; the message is one line a person can act on.  The CLI
turns any of them into that line on stderr and the exit code (see README,
"Exit codes").  Nothing here imports other mailbackup modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Protocol


class ExitCode(IntEnum):
    OK = 0
    WARNINGS = 1  # finished, but something needs a look (a folder failed, mail missing)
    USAGE = 2  # bad command line or configuration
    AUTH = 3  # wrong password, no password available
    CONNECTION = 4  # unknown host, refused, timed out, dropped for good
    TLS = 5  # certificate not trusted, wrong host, expired, no STARTTLS
    LOCKED = 6  # another mailbackup is using this archive
    STORAGE = 7  # local disk: full, read-only, permission, damaged state
    CORRUPT = 8  # verify found archived mail damaged
    PROTOCOL = 9  # the server answered something we cannot use
    INCONCLUSIVE = 10  # verify could not tell: the server's answers contradicted each other
    INTERRUPTED = 130  # Ctrl-C: stopped cleanly after the current batch


# "Worst" wherever codes meet (a sweep, `check`, backup then verify, migrate):
# the code later in this list wins, never the larger number.  Interrupted
# comes last because it describes the whole run; a damaged archive is the most
# serious finding about an account; local problems (storage, bad config) need
# the officer before anything else can work; then what needs the mail
# administrator (password, certificate); then what may pass by itself (server
# down or odd, archive in use by another run).  The README lists this order.
SEVERITY: tuple[ExitCode, ...] = (
    ExitCode.OK, ExitCode.WARNINGS, ExitCode.LOCKED, ExitCode.PROTOCOL, ExitCode.INCONCLUSIVE,
    ExitCode.CONNECTION, ExitCode.TLS,
    ExitCode.AUTH, ExitCode.USAGE, ExitCode.STORAGE, ExitCode.CORRUPT, ExitCode.INTERRUPTED,
)


def worst_exit_code(codes: Iterable[ExitCode]) -> ExitCode:
    """The most severe of `codes` in SEVERITY order; OK for none."""
    return max(codes, key=SEVERITY.index, default=ExitCode.OK)


class RunOutcome(Protocol):
    """What a backup's or a restore's statistics say about how the run ended."""

    @property
    def interrupted(self) -> bool: ...

    @property
    def has_warnings(self) -> bool: ...


def run_exit_code(stats: RunOutcome) -> ExitCode:
    """A finished backup's or restore's code: 130 interrupted, 1 warnings, else 0."""
    if stats.interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.WARNINGS if stats.has_warnings else ExitCode.OK


class MailbackupError(Exception):
    """Base of every error with a user-facing message and exit code."""

    exit_code: ExitCode = ExitCode.WARNINGS

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(MailbackupError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A config file problem; the message names file, line and expectation."""


class AuthError(MailbackupError):
    exit_code = ExitCode.AUTH


class PasswordUnavailable(AuthError):
    """No password from the environment, a command, the keyring or a terminal."""


class ConnectError(MailbackupError):
    exit_code = ExitCode.CONNECTION


class ConnectionLost(ConnectError):
    """The connection dropped or stalled mid-run; a reconnect may cure it."""


class TLSError(MailbackupError):
    exit_code = ExitCode.TLS


class ServerError(MailbackupError):
    """The server refused a command or answered something unusable."""

    exit_code = ExitCode.PROTOCOL


class ServerBusy(ServerError):
    """The server asked us to slow down (throttling, too many connections)."""

    def __init__(self, message: str, *, wait_seconds: float | None = None) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


class FolderError(ServerError):
    """One folder could not be selected or read; the others go on."""


class ArchiveLocked(MailbackupError):
    exit_code = ExitCode.LOCKED


class StorageError(MailbackupError):
    exit_code = ExitCode.STORAGE


class StateError(StorageError):
    """The state database is damaged or from a newer mailbackup."""


class WorkerDied(MailbackupError):
    """A sweep's worker process ended in the middle of an account's attempt
    (killed, crashed): that account fails, the others go on."""


class Interrupted(MailbackupError):
    exit_code = ExitCode.INTERRUPTED
