"""What a sweep (or `check`) tells its caller while it runs.

Public API: `SweepProgress`, the callbacks a caller may implement (called
from the accounts' threads); `LogProgress`, which logs every event; and
`stage_word`, the words of the stages and results for people.
"""

from __future__ import annotations

import logging
from typing import Protocol

from mailbackup.errors import ExitCode
from mailbackup.i18n import N_, _

log = logging.getLogger(__name__)

# The words of sweep.json's backup/verify fields and of the stages, for people.
STAGE_WORDS = {
    "backup": N_("backup"), "verify": N_("verify"), "login": N_("login"), "ok": N_("ok"),
    "warnings": N_("warnings"), "failed": N_("failed"), "interrupted": N_("interrupted"), "not run": N_("not run"),
    "complete": N_("complete"), "incomplete": N_("incomplete"), "corrupt": N_("corrupt"), "skipped": N_("skipped"),
    "inconclusive": N_("inconclusive"),
}


def stage_word(value: str) -> str:
    word = STAGE_WORDS.get(value)
    return _(word) if word else value


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
