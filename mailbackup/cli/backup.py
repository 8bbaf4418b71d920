"""`mailbackup backup ACCOUNT`: download every folder into the archive."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailbackup.archive import FORMATS, account_dir, archive_exists, open_archive, private_umask
from mailbackup.cli.common import (
    Context,
    build_context,
    folder_filter_options,
    handle_errors,
    max_time_option,
    server_options,
    stop_on_ctrl_c,
    verbosity_options,
)
from mailbackup.cli.format import duration, folders_text, human_bytes, messages_text
from mailbackup.cli.progress import TqdmProgress
from mailbackup.config import DEFAULT_CONNECTIONS
from mailbackup.config.keys import MAX_CONNECTIONS
from mailbackup.errors import ExitCode, run_exit_code, worst_exit_code
from mailbackup.i18n import _, ngettext
from mailbackup.model import RunStats
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import BackupOptions

if TYPE_CHECKING:
    from mailbackup.verify.results import VerifyResult


@click.command(help=_(
    "Back up every folder of ACCOUNT, incrementally, into Maildir or mbox.\n\n"
    "Run it again at any time: it fetches only what is new.  At a terminal it then checks the backup against "
    "the server, message by message, and ends with a summary and the path of the report (verify.html)."))
@click.argument("account")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help=_("Archive root; the account gets its own directory inside (default ./mail-backup)."))
@click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
              help=_("Maildir (default) or mbox; fixed by the archive's first run."))
@folder_filter_options
@click.option("--dry-run", is_flag=True, help=_("Show what would be fetched; write nothing."))
@click.option("--repair", is_flag=True,
              help=_("Re-check every stored copy and fetch damaged or missing ones again (after verify found damage)."))
@click.option("--refresh-flags", is_flag=True, help=_("Re-read flags of every folder (servers without CONDSTORE)."))
@click.option("--verify/--no-verify", "verify", default=None,
              help=_("Afterwards, check the backup against the server and write the report "
                     "(default: when run at a terminal)."))
@click.option("--batch-size", type=click.IntRange(1, 10000), default=500, show_default=True,
              help=_("Messages per FETCH (batches are also bounded to 16 MB)."))
@click.option("--pipeline", type=click.IntRange(1, 16), default=3, show_default=True,
              help=_("FETCH commands kept in flight; 1 waits for each answer before asking again "
                     "(more hides the round trips of a slow link)."))
@click.option("--connections", type=click.IntRange(1, MAX_CONNECTIONS), default=None,
              help=_("Folders synced at once, each on its own connection (default {default}; config key "
                     "connections); more hides a slow link's round trips.").format(default=DEFAULT_CONNECTIONS))
@click.option("--retries", type=click.IntRange(0, 50), default=5, show_default=True,
              help=_("Reconnect attempts after a dropped connection."))
@click.option("--retry-delay", type=click.FloatRange(0, 600), default=1.0, show_default=True,
              help=_("Seconds before the first reconnect; doubles each time."))
@max_time_option
@server_options
@verbosity_options
@handle_errors
def backup(account: str, dest: str | None, format_: str | None, include: tuple[str, ...],
           exclude: tuple[str, ...], dry_run: bool, repair: bool, refresh_flags: bool, verify: bool | None,
           batch_size: int, pipeline: int, connections: int | None, retries: int, retry_delay: float,
           max_time: str | None, **options: object) -> None:
    ctx = build_context(account, dest=dest, format=format_, include=include, exclude=exclude, max_time=max_time,
                        connections=connections, **options)  # type: ignore[arg-type]
    private_umask()
    settings = ctx.account
    engine_options = BackupOptions(include=settings.include, exclude=settings.exclude, dry_run=dry_run,
                                   repair=repair, refresh_flags=refresh_flags, batch_messages=batch_size,
                                   pipeline_depth=pipeline, max_retries=retries, retry_delay=retry_delay,
                                   connections=settings.connections or DEFAULT_CONNECTIONS,
                                   stop_at=time.monotonic() + settings.max_time.total_seconds() if settings.max_time
                                   else None)
    progress = TqdmProgress(enabled=not dry_run, quiet=ctx.quiet)
    # Logged in first: a wrong password or an unreachable server leaves no empty archive behind.
    with ctx.session(spares=_spares(settings.dest, account, engine_options.connections)) as session, \
            _archive_for(ctx, dry_run) as archive, stop_on_ctrl_c(engine_options.stop):
        if dry_run:  # the scratch copy is an implementation detail: say where a real run would write
            ctx.echo(_("Dry run: would back up {account} from {server} into {archive}; nothing is written").format(
                account=account, server=settings.connection.server,
                archive=account_dir(settings.dest, account).resolve()), err=True)
        else:
            ctx.echo(_("Backing up {account} from {server} into {archive}").format(
                account=account, server=settings.connection.server, archive=archive.root), err=True)
        try:
            stats = BackupEngine(session, archive, engine_options, progress).run()
        finally:
            progress.close()
        root = archive.root
    summarize_backup(ctx, stats, dry_run)
    code = run_exit_code(stats)
    # Out of time: the verification would only run past the limit (and find what is not fetched yet).
    if code is not ExitCode.INTERRUPTED and not stats.out_of_time and not dry_run and _wants_verification(verify, ctx):
        from mailbackup.cli.verify import run_verification  # only when it runs: start-up time
        from mailbackup.verify.results import VerifyOptions

        recorded = run_verification(ctx, VerifyOptions.for_account(settings))
        explain(ctx, recorded.result, root, recorded.html_report)
        code = worst_exit_code([code, recorded.exit_code])
    raise SystemExit(int(code))


def _spares(dest: Path, account: str, connections: int) -> int:
    """A first backup has work for every connection: the others' channels are
    opened while the first logs in (the engine hires them before the folder list)."""
    return 0 if archive_exists(dest, account) else connections - 1


def _wants_verification(verify: bool | None, ctx: Context) -> bool:
    """--verify/--no-verify, else: when a person is at the terminal to read the summary."""
    if verify is not None:
        return verify
    return not ctx.quiet and sys.stdin.isatty() and sys.stderr.isatty()


def explain(ctx: Context, result: VerifyResult, root: Path, html_report: Path) -> None:
    """The end of a backup for the person who started it: is the mail safe,
    what to do if not, where the backup and its report are."""
    from mailbackup.verify.results import Status

    totals, account = result.totals, result.account
    if result.status is Status.COMPLETE:
        ctx.echo(_("Done: all {count} messages of {account} are in the backup, and every copy has been checked.")
                 .format(count=totals.server_messages, account=account))
        if totals.only_local:
            ctx.echo(ngettext("The backup also keeps {count} message that is no longer on the server.",
                              "The backup also keeps {count} messages that are no longer on the server.",
                              totals.only_local).format(count=totals.only_local))
    elif result.status is Status.INCOMPLETE:
        ctx.echo(_("Not finished: {missing} of {count} messages are not in the backup yet. Run the same command "
                   "again; if they are still missing, show the report to your unit's computer officer.").format(
                     missing=totals.missing + totals.size_mismatch, count=totals.server_messages))
    elif result.status is Status.INCONCLUSIVE:
        ctx.echo(_("Not proven: the server's answers on what some folders hold contradict each other, so the backup "
                   "keeps every message and cannot say it is complete. Show the report to your unit's computer "
                   "officer."))
    elif result.status is Status.CORRUPT:
        ctx.echo(ngettext("Warning: {count} copy in the backup is damaged. Run `mailbackup backup --repair "
                          "{account}`, and show the report to your unit's computer officer.",
                          "Warning: {count} copies in the backup are damaged. Run `mailbackup backup --repair "
                          "{account}`, and show the report to your unit's computer officer.",
                          totals.corrupt).format(count=totals.corrupt, account=account))
    else:
        ctx.echo(_("The backup is saved, but it could not be checked against the server: {error}").format(
            error=result.error))
        ctx.echo(_("Check it later with `mailbackup verify {account}`.").format(account=account))
    ctx.echo(_("Your backup: {path}").format(path=root.resolve()))
    ctx.echo(_("Report (open it in a web browser): {path}").format(path=html_report.resolve()))


@contextmanager
def _archive_for(ctx: Context, dry_run: bool) -> Iterator:  # type: ignore[type-arg]
    settings = ctx.account
    if not dry_run:
        with open_archive(settings.dest, settings.account, format=settings.format) as archive:
            yield archive
        return
    # A dry run must not create or change anything: work on a throw-away copy of the state.
    with tempfile.TemporaryDirectory(prefix="mailbackup-dry-") as scratch:
        source = open_archive(settings.dest, settings.account, lock=False, create=False) \
            if (settings.dest).exists() and _has_state(ctx) else None
        if source is not None:
            target = Path(scratch) / source.root.name
            target.mkdir()
            source.state.db.execute("VACUUM INTO ?", (str(target / "state.sqlite3"),))
            source.close()
        with open_archive(Path(scratch), settings.account, format=settings.format) as archive:
            yield archive


def _has_state(ctx: Context) -> bool:

    return (account_dir(ctx.account.dest, ctx.account.account) / "state.sqlite3").exists()


def summarize_backup(ctx: Context, stats: RunStats, dry_run: bool) -> None:
    for folder in stats.folders:
        if folder.error:
            ctx.echo(_("  FAILED  {folder}: {error}").format(folder=folder.name, error=folder.error), err=True)
        elif folder.failed_uids:
            ctx.echo(_("  PARTIAL {folder}: UIDs not saved: {uids}").format(
                folder=folder.name, uids=", ".join(map(str, folder.failed_uids))), err=True)
        elif dry_run and folder.fetched:
            ctx.echo(_("  {folder}: {messages}, {size}").format(
                folder=folder.name, messages=messages_text(folder.fetched), size=human_bytes(folder.fetched_bytes)))
    changed = sum(1 for folder in stats.folders if not folder.skipped_unchanged)
    matched = sum(folder.matched for folder in stats.folders)
    gone = sum(folder.gone for folder in stats.folders)
    flags = sum(folder.flags_updated for folder in stats.folders)
    line = (_("Dry run: {folders} ({changed} changed), would fetch {messages}, {size} in {duration}")
            if dry_run else
            _("{folders} ({changed} changed), saved {messages}, {size} in {duration}")).format(
        folders=folders_text(len(stats.folders)), changed=changed, messages=messages_text(stats.messages),
        size=human_bytes(stats.bytes), duration=duration(stats.seconds))
    extras = [text for count, text in (
        (matched, _("{count} matched after UIDVALIDITY change").format(count=matched)),
        (flags, ngettext("{count} flag change", "{count} flag changes", flags).format(count=flags)),
        (gone, _("{count} gone from server").format(count=gone))) if count]
    ctx.echo(_("{summary}.").format(summary=line + (f"; {', '.join(extras)}" if extras else "")))
    _say_repaired(ctx, stats)
    if stats.interrupted:
        ctx.echo(_("Interrupted: everything listed above is saved; run the same command to continue."), err=True)
    if stats.out_of_time:
        ctx.echo(_("warning: stopped at the time limit (--max-time / max_time): everything listed above is saved; "
                   "run the same command to continue."), err=True)


def _say_repaired(ctx: Context, stats: RunStats) -> None:
    """--repair: the damaged copies fetched again whole (one that failed to download is listed above)."""
    copies = [_("{folder} UID {uid}").format(folder=folder.name, uid=uid) for folder in stats.folders
              for uid in folder.repaired if uid not in folder.failed_uids and not folder.error]
    if copies:
        ctx.echo(_("Repaired damaged copies ({count}): {copies}").format(count=len(copies), copies=", ".join(copies)))
