"""Migration, server to server through the local archive: a backup of the
source account, then a restore of that archive into the target, so every
migration leaves its copy on disk.  The restore half (upload, then check the
target) is also what `mailbackup restore` runs.

Public API:

* `back_up_source(session, archive, options, progress)` → `RunStats`: the
  backup, remembering the source's namespace prefix for the folder names on
  the target (foldermap.py);
* `restore_and_check(archive, target, options, progress, ...)` →
  `RestoreOutcome`: upload, then check every message on the target, and
  the exit code of both;
* `check_and_report(archive, target, options, account)` → `CheckedTarget`:
  the check alone, with ``restore-verify.json`` written.

Nothing here prints: progress goes through the engines' callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailbackup.archive import Archive
from mailbackup.errors import ExitCode, run_exit_code, worst_exit_code
from mailbackup.imap.append import TargetMailbox, read_namespace
from mailbackup.imap.session import ImapSession
from mailbackup.model import RunStats
from mailbackup.restore.foldermap import SOURCE_PREFIX_META
from mailbackup.restore.targetcheck import TargetCheck, check_target, write_check_report
from mailbackup.restore.upload import RestoreEngine, RestoreOptions, RestoreProgress, RestoreStats
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import BackupOptions, BackupProgress


def back_up_source(session: ImapSession, archive: Archive, options: BackupOptions,
                   progress: BackupProgress) -> RunStats:
    stats = BackupEngine(session, archive, options, progress).run()
    # Folder names on the target drop the source's own namespace prefix (INBOX. on Courier).
    archive.state.set_meta(SOURCE_PREFIX_META, read_namespace(session).prefix)
    return stats


@dataclass(frozen=True)
class CheckedTarget:
    check: TargetCheck
    report: Path  # restore-verify.json

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.check.complete else ExitCode.WARNINGS


def check_and_report(archive: Archive, target: TargetMailbox, options: RestoreOptions,
                     account: str) -> CheckedTarget:
    check = check_target(archive, target, options, account)
    return CheckedTarget(check, write_check_report(check, archive.reports_dir))


@dataclass(frozen=True)
class RestoreOutcome:
    stats: RestoreStats
    checked: CheckedTarget | None  # None: not asked for, a dry run, or interrupted

    @property
    def exit_code(self) -> ExitCode:
        codes = [run_exit_code(self.stats)]
        if self.checked is not None:
            codes.append(self.checked.exit_code)
        return worst_exit_code(codes)


def restore_and_check(archive: Archive, target: TargetMailbox, options: RestoreOptions, progress: RestoreProgress,
                      *, check: bool, account: str,
                      on_restored: Callable[[RestoreStats], None] | None = None) -> RestoreOutcome:
    """Upload, then (unless a dry run or interrupted) check the target;
    `on_restored` sees the upload's statistics before the check starts."""
    stats = RestoreEngine(archive, target, options, progress).run()
    if on_restored is not None:
        on_restored(stats)
    checked = None
    if check and not options.dry_run and not stats.interrupted:
        checked = check_and_report(archive, target, options, account)
    return RestoreOutcome(stats, checked)
