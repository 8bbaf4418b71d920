"""What a sweep did for one account (`AccountOutcome`), as the reports and
the final table read it; filled by the account's attempts (attempt.py),
in a thread or a worker process (workers.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailbackup.config import AccountSettings
from mailbackup.errors import ExitCode, MailbackupError, run_exit_code, worst_exit_code
from mailbackup.i18n import _
from mailbackup.model import FolderResult, RunStats
from mailbackup.sweep.progress import STAGE_WORDS
from mailbackup.verify.results import VerifyResult
from mailbackup.verify.summary import AccountSummary


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
