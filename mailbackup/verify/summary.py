"""The summary across all accounts of an archive root: ``summary.json``,
``summary.csv`` and ``summary.html`` (schema: docs/summary.schema.json),
from each account's state and last verification report.

Public API: `collect_accounts(dest, ...)` → one `AccountSummary` per
account (`archive_summary(dest, archive)`: one read ahead, by a sweep);
`status_reasons` (why an account is not complete, in words);
`summary_to_dict`, `summary_csv`, `summary_html`; `write_summary`;
`regenerate_reports` and `summary_exit_code`, what `mailbackup report` does.

Staff details: the config's (`staff_for`) win; else those the account's last
verification recorded (verify/record.py remembers them in the archive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from mailbackup import __version__
from mailbackup.archive import Archive, account_dir, open_archive
from mailbackup.config.keys import STAFF_KEYS
from mailbackup.errors import ExitCode, StorageError
from mailbackup.i18n import N_, _, local_date
from mailbackup.state.db import STATE_FILE, StateDB
from mailbackup.store.files import atomic_write
from mailbackup.verify.render import (
    NEVER_VERIFIED,
    SCHEMA_VERSION,
    blank,
    csv_bytes,
    csv_header,
    csv_word,
    deadline_status,
    deadline_text,
    entry_date,
    escape,
    heading,
    json_bytes,
    label,
    num_cell,
    page,
    report_time,
    signature_block,
    size_text,
    staff_facts,
    status_cell,
    table,
)
from mailbackup.verify.report import VERIFY_NAMES, extra_report_dir, load_verify, write_verify_reports
from mailbackup.verify.results import Staff, Status, VerifyResult

SUMMARY_NAMES = ("summary.json", "summary.csv", "summary.html")
SUMMARY_DIR = "reports"  # under the archive root, beside the account directories
SUCCESSFUL_BACKUP = ("ok", "warnings")


@dataclass
class AccountSummary:
    account: str
    archive: Path | None  # None: in the config, never backed up here
    reports_dir: Path | None = None
    messages: int = 0
    bytes: int = 0
    last_backup: str | None = None  # finished_at of the last backup that ended ok or with warnings
    verification: VerifyResult | None = None
    deadline: date | None = None
    problems: list[str] = field(default_factory=list)
    staff: Staff = field(default_factory=Staff)

    @property
    def status(self) -> str:
        return self.verification.status.value if self.verification else NEVER_VERIFIED


def no_deadline(account: str) -> date | None:
    return None


def no_staff(account: str) -> Staff:
    return Staff()


def collect_accounts(dest: Path, *, deadline_for: Callable[[str], date | None] = no_deadline,
                     staff_for: Callable[[str], Staff] = no_staff,
                     expected: Iterable[str] = (),
                     known: Mapping[Path, AccountSummary] | None = None) -> list[AccountSummary]:
    """Every account archive under `dest`, and each `expected` account (from
    the config) that has none.  `deadline_for` overrides the deadline an
    account's last verification recorded, `staff_for` (when not empty) its staff details.
    `known`: archives already read (`archive_summary`), by directory; they are not opened again."""
    found: list[AccountSummary] = []
    read = known or {}
    if dest.is_dir():
        for directory in sorted(path for path in dest.iterdir() if (path / STATE_FILE).is_file()):
            summary = read.get(directory) or _read_account_summary(dest, directory)
            found.append(_with_deadline(summary, deadline_for))
    archived = {summary.account for summary in found}
    found += [AccountSummary(account=name, archive=None, deadline=deadline_for(name))
              for name in dict.fromkeys(expected) if name not in archived]
    for summary in found:
        configured = staff_for(summary.account)
        if not configured.is_empty:
            summary.staff = configured
        elif summary.verification is not None:
            summary.staff = summary.verification.staff
        if summary.verification is not None:  # its regenerated report shows the same
            summary.verification.staff = summary.staff
    return sorted(found, key=lambda summary: summary.account.casefold())


def _read_account_summary(dest: Path, directory: Path) -> AccountSummary:
    state = StateDB(directory / STATE_FILE)
    try:
        account = state.get_meta("account") or directory.name
    finally:
        state.close()
    if account_dir(dest, account) != directory:
        summary = AccountSummary(account=account, archive=directory)
        summary.problems.append(_("archive directory {directory} does not match account {account}").format(
            directory=directory.name, account=account))
        return summary
    with open_archive(dest, account, lock=False, create=False) as archive:
        return _summary_of(archive, account)


def archive_summary(dest: Path, archive: Archive) -> AccountSummary | None:
    """The summary of an archive open now, for `collect_accounts(known=...)`: a
    sweep reads it before letting go of the archive, instead of opening every
    state file again at its end.  None when the archive's directory is not its
    account's (the end's reading reports that)."""
    account = archive.state.get_meta("account") or archive.root.name
    if account_dir(dest, account) != archive.root:
        return None
    return _summary_of(archive, account)


def _summary_of(archive: Archive, account: str) -> AccountSummary:
    summary = AccountSummary(account=account, archive=archive.root)
    summary.messages, summary.bytes = archive.state.stored_totals()
    run = archive.state.last_run_in("backup", SUCCESSFUL_BACKUP)
    summary.last_backup = run["finished_at"] if run else None
    summary.reports_dir = archive.reports_dir
    report = archive.reports_dir / VERIFY_NAMES[0]
    if report.is_file():
        try:
            summary.verification = load_verify(report)
        except StorageError as exc:
            summary.problems.append(exc.message)
    return summary


def _with_deadline(summary: AccountSummary, deadline_for: Callable[[str], date | None]) -> AccountSummary:
    summary.deadline = deadline_for(summary.account)
    if summary.verification is not None:
        if summary.deadline is not None:
            summary.verification.deadline = summary.deadline
        summary.deadline = summary.verification.deadline
    return summary


Words = Callable[..., str]


def _translated(msgid: str, **values: object) -> str:
    return _(msgid).format(**values)


def status_reasons(account: AccountSummary, as_of: date, words: Words = _translated) -> list[str]:
    """Why an account is not verified complete, in words (empty when it is).
    `words(msgid, **values)` picks the language: the console's, or a report's label()."""
    verification, reasons = account.verification, []
    if verification is None:
        reasons.append(words(N_("never verified")) if account.archive else
                       words(N_("never backed up here, so never verified")))
    elif verification.error:
        # The error was recorded by that run, in its language: quoted, as text from elsewhere.
        reasons.append(words(N_("the last verification failed: “{error}”"), error=verification.error))
    else:
        reasons += _result_reasons(verification, words)
    days_left, overdue = deadline_status(account.deadline, account.status, as_of)
    if overdue and account.deadline is not None and days_left is not None:
        reasons.append(words(N_("overdue by {days} days (deadline {deadline})"), days=-days_left,
                             deadline=local_date(account.deadline)))
    return reasons


def _result_reasons(verification: VerifyResult, words: Words) -> list[str]:
    totals = verification.totals
    reasons = [words(msgid, count=count) for count, msgid in (
        (totals.missing, N_("{count} messages missing from the archive")),
        (totals.corrupt, N_("{count} archived copies damaged")),
        (totals.size_mismatch, N_("{count} messages differ in size from the server"))) if count]
    reasons += [words(N_("folder {folder} could not be read: {error}"), folder=folder.name, error=folder.error)
                for folder in verification.folders if folder.error]
    reasons += [words(N_("folder {folder}: the server's answers disagree ({numbers})"), folder=folder.name,
                      numbers=folder.contradiction) for folder in verification.folders if folder.contradiction]
    return reasons


def summary_to_dict(accounts: list[AccountSummary], as_of: date, generated_at: datetime) -> dict[str, Any]:
    rows = [_summary_row(account, as_of) for account in accounts]
    counts = {status: sum(1 for row in rows if row["status"] == status)
              for status in ("complete", "incomplete", "inconclusive", "corrupt", "failed", NEVER_VERIFIED)}
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "tool_version": __version__,
        "as_of": as_of.isoformat(),
        "units": sorted({account.staff.unit for account in accounts if account.staff.unit}),
        "totals": {"accounts": len(rows), **counts, "overdue": sum(1 for row in rows if row["overdue"]),
                   "messages": sum(row["messages"] for row in rows), "bytes": sum(row["bytes"] for row in rows)},
        "accounts": rows,
    }


def _summary_row(account: AccountSummary, as_of: date) -> dict[str, Any]:
    verification = account.verification
    days_left, overdue = deadline_status(account.deadline, account.status, as_of)
    totals = verification.totals if verification else None
    return {
        "account": account.account,
        "staff": account.staff.to_dict(),
        "status": account.status,
        "reason": "; ".join(status_reasons(account, as_of) + account.problems) or None,
        "archive": str(account.archive) if account.archive else None,
        "server": verification.server if verification else None,
        "messages": account.messages,
        "bytes": account.bytes,
        "last_backup": account.last_backup,
        "verified_at": verification.generated_at.isoformat(timespec="seconds") if verification else None,
        "mode": verification.mode.value if verification else None,
        "missing": totals.missing if totals else None,
        "corrupt": totals.corrupt if totals else None,
        "size_mismatch": totals.size_mismatch if totals else None,
        "deadline": account.deadline.isoformat() if account.deadline else None,
        "days_left": days_left,
        "overdue": overdue,
        "problems": account.problems,
    }


SUMMARY_CSV_COLUMNS = ("account", "status", "overdue", "deadline", "days_left", "messages", "bytes", "last_backup",
                       "verified_at", "mode", "missing", "corrupt", "size_mismatch", "server", "archive", "reason",
                       *STAFF_KEYS)


def summary_csv(data: dict[str, Any]) -> bytes:
    def cell(row: dict[str, Any], column: str) -> object:
        if column == "overdue":
            return _("yes") if row["overdue"] else _("no")
        if column in ("status", "mode") and row[column]:
            return csv_word(row[column])
        if column in STAFF_KEYS:
            return row["staff"][column] or ""
        return blank(row[column])

    rows = [[cell(row, column) for column in SUMMARY_CSV_COLUMNS] for row in data["accounts"]]
    return csv_bytes(csv_header(SUMMARY_CSV_COLUMNS), rows)


def summary_html(data: dict[str, Any]) -> bytes:
    totals, units = data["totals"], data["units"]
    all_good = totals["accounts"] > 0 and totals["complete"] == totals["accounts"]
    headline = label(N_("{complete} of {accounts} accounts complete"), complete=totals["complete"],
                      accounts=totals["accounts"])
    counts = "".join(num_cell(totals.get(key, 0)) for key in ("accounts", "complete", "incomplete", "inconclusive",
                                                          "corrupt", "failed", NEVER_VERIFIED, "overdue"))
    rows = [_summary_html_row(row, show_unit=len(units) > 1) for row in data["accounts"]]
    body = "\n".join([
        "<header>" + heading(N_("Mail backup summary, all accounts"), ", ".join(units)),
        f'<div class="status {"good" if all_good else "bad"}" id="status">{escape(headline)}</div>',
        f'<dl class="facts"><dt>{escape(label(N_("Generated")))}</dt>'
        f'<dd>{escape(report_time(datetime.fromisoformat(data["generated_at"])))}</dd>'
        f"<dt>{escape(label(N_('Tool version')))}</dt><dd>mailbackup {escape(data['tool_version'])}</dd></dl></header>",
        f"<h2>{escape(label(N_('Totals')))}</h2>" + table(
            [label(N_("Accounts")), label(N_("Complete")), label(N_("Incomplete")), label(N_("Inconclusive")),
             label(N_("Corrupt")),
             label(N_("Failed")), label(N_("Never verified")), label(N_("Overdue"))],
            [f"<tr>{counts}</tr>"]) + f"<p>{escape(label(N_('Total size')))}: {escape(size_text(totals['bytes']))}</p>",
        f"<h2>{escape(label(N_('Accounts')))}</h2>" + table(
            [label(N_("Account")), label(N_("Status")), label(N_("Deadline")), label(N_("Messages")),
             label(N_("Size")), label(N_("Last good backup")), label(N_("Last verified")), label(N_("Missing")),
             label(N_("Corrupt"))], rows),
        signature_block(),
    ])
    title = _("Mail backup summary") + (f": {', '.join(units)}" if units else "")
    return page(title, body)


def _summary_html_row(row: dict[str, Any], *, show_unit: bool) -> str:
    deadline = date.fromisoformat(row["deadline"]) if row["deadline"] else None
    when = {key: entry_date(row[key], local=True) for key in ("last_backup", "verified_at")}
    staff = Staff.from_mapping(row["staff"])
    if not show_unit:
        staff = Staff(title=staff.title, name=staff.name, surname=staff.surname, position=staff.position)
    who = "".join(f'<div class="mid">{value}</div>' for _label, value in staff_facts(staff))
    # The reason holds the account's problems too (an unchecked certificate, a mismatched archive):
    # the page is what people read.
    why = f'<div class="why">{escape(row["reason"])}</div>' if row["reason"] else ""
    return (f"<tr><td class='name'>{escape(row['account'])}{who}</td>{status_cell(row['status'], why)}"
            f"<td class='deadline'>{deadline_text(deadline, row['days_left'], row['overdue'])}</td>"
            f"{num_cell(row['messages'])}"
            f"{num_cell(size_text(row['bytes']))}<td>{escape(when['last_backup'])}</td><td>{escape(when['verified_at'])}</td>"
            f"{num_cell(row['missing'])}{num_cell(row['corrupt'])}</tr>\n")


def write_summary(accounts: list[AccountSummary], directory: Path, as_of: date,
                  generated_at: datetime) -> list[Path]:
    data = summary_to_dict(accounts, as_of, generated_at)
    contents = (json_bytes(data), summary_csv(data), summary_html(data))
    for name, payload in zip(SUMMARY_NAMES, contents, strict=True):
        atomic_write(directory / name, payload)
    return [directory / name for name in SUMMARY_NAMES]


def regenerate_reports(accounts: list[AccountSummary], root: Path, extra: Path | None, as_of: date,
                       generated_at: datetime) -> Path:
    """`mailbackup report`: each account's verify reports written again from
    its last verify.json (also into `extra`), then the summary (into `extra`,
    else the root's reports directory).  The summary's HTML page."""
    for account in accounts:
        if account.verification is None or account.reports_dir is None:
            continue
        directories = [account.reports_dir]
        if extra is not None:
            directories.append(extra_report_dir(extra, account.account))
        write_verify_reports(account.verification, directories, as_of)
    return write_summary(accounts, extra or root / SUMMARY_DIR, as_of, generated_at)[2]


def summary_exit_code(accounts: list[AccountSummary]) -> ExitCode:
    """8 when any account is corrupt, 10 when any is inconclusive, 1 when any
    is not verified complete (or there are none), else 0."""
    statuses = {account.status for account in accounts}
    if Status.CORRUPT.value in statuses:
        return ExitCode.CORRUPT
    if Status.INCONCLUSIVE.value in statuses:
        return ExitCode.INCONCLUSIVE
    if not accounts or statuses != {Status.COMPLETE.value}:
        return ExitCode.WARNINGS
    return ExitCode.OK
