"""`mailbackup report`: regenerate every account's reports from its last
verification, and write one summary across all accounts of an archive root."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from mailbackup.archive import private_umask
from mailbackup.cli.common import handle_errors, setup_logging, verbosity_options
from mailbackup.cli.format import pad
from mailbackup.config import load_account, read_config
from mailbackup.errors import UsageError
from mailbackup.i18n import _, local_datetime
from mailbackup.verify.render import status_label
from mailbackup.verify.results import Staff, Status
from mailbackup.verify.summary import (
    SUMMARY_DIR,
    AccountSummary,
    collect_accounts,
    regenerate_reports,
    status_reasons,
    summary_exit_code,
)


@click.command(help=_(
    "Regenerate the verification reports and write summary.json, summary.csv and summary.html for all accounts "
    "under DEST.\n\n"
    "Exit code: 0 when every account is verified complete, 1 when any is incomplete, failed or never verified, "
    "10 when any is inconclusive (the server contradicted itself), 8 when any is corrupt."))
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help=_("Archive root holding the accounts (default ./mail-backup)."))
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help=_("Write the summary (and a copy of each account's reports) here, not in DEST/{directory}.").format(
                  directory=SUMMARY_DIR))
@click.option("--deadline", metavar="YYYY-MM-DD", default=None,
              help=_("Cutover date for every account (default: the config's, else each account's last report)."))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help=_("YAML config: its accounts without an archive are listed as never verified."))
@verbosity_options
@handle_errors
def report(dest: str | None, report_dir: str | None, deadline: str | None, config_path: str | None,
           verbose: int, quiet: bool) -> None:
    setup_logging(verbose, quiet)
    private_umask()
    config = Path(config_path) if config_path else None
    root = load_account(config, "", {"dest": dest}).dest
    if not root.is_dir():
        raise UsageError(_("no archive root {root}").format(root=root), hint=_("give the --dest used for the backups"))

    def deadline_for(account: str) -> date | None:
        return load_account(config, account, {"deadline": deadline}).deadline

    def staff_for(account: str) -> Staff:
        return Staff.from_mapping(load_account(config, account, {}).metadata)

    accounts = collect_accounts(root, deadline_for=deadline_for, staff_for=staff_for,
                                expected=_config_accounts(config, root))
    today = date.today()
    summary = regenerate_reports(accounts, root, Path(report_dir) if report_dir else None, today,
                                 datetime.now().astimezone())
    _print(accounts, today, quiet)
    if not quiet:
        click.echo(_("Summary: {path}").format(path=summary))
    raise SystemExit(int(summary_exit_code(accounts)))


def _config_accounts(config: Path | None, root: Path) -> list[str]:
    """The config's accounts whose archive belongs under `root`."""
    if config is None:
        return []
    entries: list[dict[str, Any]] = read_config(config).get("accounts") or []
    names = [str(entry["account"]) for entry in entries if entry.get("account")]
    return [name for name in names if load_account(config, name, {}).dest == root]


def _print(accounts: list[AccountSummary], today: date, quiet: bool) -> None:
    if quiet:
        return
    width = max([len(account.account) for account in accounts] + [7])
    for account in accounts:
        when = _when(account.verification.generated_at if account.verification else None)
        click.echo(_("{account}  {status}  verified {when}  last good backup {backup}").format(
            account=account.account.ljust(width), status=pad(status_label(account.status), 14), when=when,
            backup=_when(datetime.fromisoformat(account.last_backup) if account.last_backup else None)))
        for reason in status_reasons(account, today):
            click.echo(_("  why: {reason}").format(reason=reason))
        for problem in account.problems:
            click.echo(_("  warning: {problem}").format(problem=problem), err=True)
    complete = sum(1 for account in accounts if account.status == Status.COMPLETE)
    click.echo(_("{complete} of {total} accounts verified complete.").format(complete=complete, total=len(accounts)))


def _when(stamp: datetime | None) -> str:
    """One format for every time on a line: local time, Buddhist era in Thai."""
    if stamp is None:
        return "-"
    local = stamp.astimezone() if stamp.tzinfo else stamp  # a naive stamp is already local
    return local_datetime(local)
