"""Verify and record: what `mailbackup verify`, a backup at a terminal and
a sweep all do.  The verification is kept in the state's `runs` table like a
backup, and its reports are written into the archive's ``reports/`` (and an
extra directory).

The staff details (whose mailbox, which unit) come from the config.  A run
that has them keeps them in the state's ``meta`` table, so a later
`verify` or `backup` without ``--config`` still puts them in its reports:
the archive belongs to one person, and its state is what travels with it.

Public API: `verify_recorded(archive, options, verify, ...)` →
`RecordedVerification`; `remembered_staff(archive, staff)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from mailbackup.archive import Archive
from mailbackup.errors import AuthError, ConnectError, ExitCode, ServerError, TLSError
from mailbackup.imap.pushback import pushback_of
from mailbackup.verify.report import extra_report_dir, write_verify_reports
from mailbackup.verify.results import Staff, VerifyOptions, VerifyResult, exit_code, failed_result

STAFF_META = "staff"


@dataclass(frozen=True)
class RecordedVerification:
    result: VerifyResult
    exit_code: ExitCode
    html_report: Path  # in the archive's reports directory


def verify_recorded(archive: Archive, options: VerifyOptions, verify: Callable[[], VerifyResult], *,
                    report_dir: Path | None = None, retry_pushback: bool = False) -> RecordedVerification:
    """Run `verify` (online or offline), record the run and write the reports.

    A server that cannot be reached, or refuses the login, still gets a
    `failed` result and report, with its error's exit code.  With
    `retry_pushback`, a server that asks for a pause raises its `ServerBusy`
    instead, for the caller to come back later (nothing is written then)."""
    # The run's row is history (nothing reads a verification's back: its reports, written durably, are the
    # record), so its commits need not wait for the disk; a power cut loses at most the row.
    with archive.state.bookkeeping():
        run_id = archive.state.start_run("verify")
    result: VerifyResult | None = None
    code: ExitCode | None = None
    try:
        try:
            result = verify()
        except (ConnectError, AuthError, TLSError, ServerError) as exc:
            if retry_pushback and pushback_of(exc) is not None:
                raise
            result, code = failed_result(options, str(exc)), exc.exit_code
    finally:
        with archive.state.bookkeeping():
            if result is None:
                archive.state.finish_run(run_id, "interrupted", 0, 0)
            else:
                archive.state.finish_run(run_id, result.status.value, result.totals.checked,
                                         result.totals.bytes_checked, result.mode.value)
    result.staff = remembered_staff(archive, options.staff)
    directories = [archive.reports_dir]
    if report_dir is not None:
        directories.append(extra_report_dir(report_dir, options.account))
    written = write_verify_reports(result, directories, date.today())
    return RecordedVerification(result, code or exit_code(result), written[2])


def remembered_staff(archive: Archive, staff: Staff) -> Staff:
    """`staff` when the run has some (and remember them), else the last ones this archive was given."""
    if not staff.is_empty:
        with archive.state.transaction():
            archive.state.set_meta(STAFF_META, json.dumps(staff.to_dict(), ensure_ascii=False))
        return staff
    try:
        return Staff.from_mapping(json.loads(archive.state.get_meta(STAFF_META) or "{}"))
    except (ValueError, TypeError, AttributeError):  # a damaged value: the reports go without
        return Staff()
