"""`mailbackup verify ACCOUNT`: prove, message by message, that the archive
holds everything on the server, and write the reports an officer hands in."""

from __future__ import annotations

import sys
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from mailbackup.archive import Archive, open_archive, private_umask
from mailbackup.cli.common import Context, build_context, handle_errors, server_options, verbosity_options
from mailbackup.cli.format import duration, human_bytes
from mailbackup.i18n import _, local_date
from mailbackup.text import parse_duration
from mailbackup.verify.check import verify_offline, verify_online
from mailbackup.verify.record import RecordedVerification, verify_recorded
from mailbackup.verify.render import mode_label, status_label
from mailbackup.verify.results import FolderReport, Mode, Status, VerifyOptions, VerifyResult

SHOWN_PER_FOLDER = 5


class TqdmVerifyProgress:
    """A bytes bar while files are hashed; off when not on a terminal or with --quiet."""

    def __init__(self, *, quiet: bool) -> None:
        self.enabled = sys.stderr.isatty() and not quiet
        self.bar: Any = None

    def stage(self, text: str) -> None:
        if self.bar is None and self.enabled:
            click.echo(f"\r\033[K{text[:70]}", nl=False, err=True)

    def start_hashing(self, messages: int, total_bytes: int) -> None:
        if not self.enabled:
            return
        click.echo("\r\033[K", nl=False, err=True)
        if total_bytes:
            self.bar = tqdm(desc=_("checking {count} files").format(count=messages), total=total_bytes, unit="B",
                            unit_scale=True,
                            unit_divisor=1024, file=sys.stderr, dynamic_ncols=True, leave=False)

    def hashed(self, byte_count: int) -> None:
        if self.bar is not None:
            self.bar.update(byte_count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@click.command(help=_(
    "Compare ACCOUNT's server with its archive, message by message, and check every archived file against the "
    "hash recorded when it was saved.\n\n"
    "Writes verify.json, verify.csv and verify.html into the archive's reports/ directory.  Exit code: "
    "0 complete, 1 incomplete or warnings, 10 inconclusive (the server's answers contradicted each other), "
    "8 corrupt, 3/4/5 when the server could not be reached (a `failed` report is written)."))
@click.argument("account")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help=_("Archive root holding ACCOUNT's backup (default ./mail-backup)."))
@click.option("--offline", is_flag=True, help=_("Check the archive against its own records only; no server needed."))
@click.option("--max-age", metavar="DURATION", default=None,
              help=_("Skip files verified within DURATION (e.g. 7d, 12h); the oldest-verified go first."))
@click.option("--deadline", metavar="YYYY-MM-DD", default=None,
              help=_("Cutover date shown in the reports with the days left."))
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help=_("Also write the reports here, in a subdirectory per account."))
@server_options
@verbosity_options
@handle_errors
def verify(account: str, dest: str | None, offline: bool, max_age: str | None, deadline: str | None,
           report_dir: str | None, **options: Any) -> None:
    ctx = build_context(account, dest=dest, deadline=deadline, **options)
    private_umask()
    verify_options = VerifyOptions.for_account(ctx.account, parse_duration(max_age) if max_age else None)
    recorded = run_verification(ctx, verify_options, offline=offline, report_dir=report_dir)
    _summarize(ctx, recorded.result, recorded.html_report)
    raise SystemExit(int(recorded.exit_code))


def run_verification(ctx: Context, options: VerifyOptions, *, offline: bool = False,
                     report_dir: str | None = None) -> RecordedVerification:
    """What `mailbackup verify` does (and `backup` after it, at a terminal):
    verify with a progress bar, keep the run in the state, write the reports."""
    settings = ctx.account
    progress = TqdmVerifyProgress(quiet=ctx.quiet)

    def with_server(archive: Archive) -> VerifyResult:
        with ctx.session() as session:
            ctx.echo(_("Verifying {account} on {server} against {archive}").format(
                account=options.account, server=options.server, archive=archive.root), err=True)
            return verify_online(session, archive, options, progress)

    with open_archive(settings.dest, settings.account, lock=True, create=False) as archive:
        try:
            return verify_recorded(
                archive, options, partial(verify_offline, archive, options, progress) if offline
                else partial(with_server, archive), report_dir=Path(report_dir) if report_dir else None)
        finally:
            progress.close()


def _summarize(ctx: Context, result: VerifyResult, html_report: Path) -> None:
    totals = result.totals
    ctx.echo(_("{status}: {account} ({mode}, {duration})").format(
        status=status_label(result.status.value), account=result.account, mode=mode_label(result.mode.value),
        duration=duration(result.seconds)))
    if result.error:
        ctx.echo(_("  could not verify: {error}").format(error=result.error), err=True)
    else:
        # Records and intact copies apart: a deleted file is still recorded, and
        # "33 in the archive" beside "1 missing" reads as a contradiction.
        found = _("{local} in the archive's records, {intact} found intact ({size})").format(
            local=totals.local_messages, intact=totals.intact, size=human_bytes(totals.bytes))
        if result.mode is Mode.ONLINE:
            found = _("{server} messages on the server; {found}").format(server=totals.server_messages, found=found)
        ctx.echo("  " + "; ".join([found, *_problem_counts(totals.missing, totals.corrupt, totals.size_mismatch)]))
        ctx.echo(_("  {checked} files checked ({size}), {skipped} skipped as recently verified").format(
            checked=totals.checked, size=human_bytes(totals.bytes_checked), skipped=totals.skipped_recent))
        for folder in result.folders:
            _summarize_folder(ctx, folder)
    if result.deadline:
        days = (result.deadline - date.today()).days
        late = " " + _("OVERDUE") if days < 0 and result.status is not Status.COMPLETE else ""
        ctx.echo(_("  deadline {deadline}: {days} days left{overdue}").format(
            deadline=local_date(result.deadline), days=days, overdue=late))
    ctx.echo(_("Report: {path}").format(path=html_report))


def _summarize_folder(ctx: Context, folder: FolderReport) -> None:
    if folder.status is not Status.COMPLETE:
        counts = _problem_counts(len(folder.missing), len(folder.corrupt), len(folder.size_mismatch))
        if folder.contradiction:
            counts.insert(0, _("the server's answers disagree: {numbers}").format(numbers=folder.contradiction))
        shown = ", ".join(counts) or folder.error or ""
        ctx.echo(f"  {status_label(folder.status.value)} {folder.name}: {shown}")
        for entry in (folder.missing + folder.corrupt + folder.size_mismatch)[:SHOWN_PER_FOLDER]:
            ctx.echo(_("    UID {uid}: {subject} - {reason}").format(
                uid=entry.uid, subject=entry.subject or f"({_('no subject')})", reason=entry.reason or ""))
    for line in folder.notes:
        ctx.echo(_("  note {folder}: {note}").format(folder=folder.name, note=line))
    for line in folder.problems:
        ctx.echo(_("  damage {folder}: {problem}").format(folder=folder.name, problem=line), err=True)
    for line in [_("stray file {name}").format(name=name) for name in folder.stray_files] + folder.warnings:
        ctx.echo(_("  warning {folder}: {problem}").format(folder=folder.name, problem=line), err=True)


def _problem_counts(missing: int, corrupt: int, size_mismatch: int) -> list[str]:
    """"1 missing", "2 corrupt", ...: the counts that are not zero."""
    return [text.format(count=count) for count, text in (
        (missing, _("{count} missing")), (corrupt, _("{count} corrupt")),
        (size_mismatch, _("{count} size mismatch"))) if count]
