"""`mailbackup backup ACCOUNT`: download every folder into the archive."""

from __future__ import annotations

import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from mailbackup.cli.common import Context, build_context, handle_errors, server_options, verbosity_options
from mailbackup.cli.format import duration, human_bytes
from mailbackup.cli.progress import TqdmProgress
from mailbackup.errors import ExitCode
from mailbackup.model import RunStats
from mailbackup.sync.archive import FORMATS, open_archive, private_umask
from mailbackup.sync.engine import BackupEngine, BackupOptions


@click.command()
@click.argument("account")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Archive root; the account gets its own directory inside (default ./mail-backup).")
@click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
              help="Maildir (default) or mbox; fixed by the archive's first run.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only folders matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip folders matching (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would be fetched; write nothing.")
@click.option("--repair", is_flag=True,
              help="Re-check every stored copy and fetch damaged or missing ones again (after verify found damage).")
@click.option("--refresh-flags", is_flag=True, help="Re-read flags of every folder (servers without CONDSTORE).")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=500, show_default=True,
              help="Messages per FETCH (batches are also bounded to 16 MB).")
@click.option("--retries", type=click.IntRange(0, 50), default=5, show_default=True,
              help="Reconnect attempts after a dropped connection.")
@click.option("--retry-delay", type=click.FloatRange(0, 600), default=1.0, show_default=True,
              help="Seconds before the first reconnect; doubles each time.")
@server_options
@verbosity_options
@handle_errors
def backup(account: str, dest: str | None, format_: str | None, include: tuple[str, ...],
           exclude: tuple[str, ...], dry_run: bool, repair: bool, refresh_flags: bool, batch_size: int, retries: int,
           retry_delay: float, **options: object) -> None:
    """Back up every folder of ACCOUNT, incrementally, into Maildir or mbox."""
    ctx = build_context(account, dest=dest, format=format_, include=include, exclude=exclude,
                        **options)  # type: ignore[arg-type]
    private_umask()
    settings = ctx.account
    engine_options = BackupOptions(include=settings.include, exclude=settings.exclude, dry_run=dry_run,
                                   repair=repair, refresh_flags=refresh_flags, batch_messages=batch_size,
                                   max_retries=retries, retry_delay=retry_delay)
    progress = TqdmProgress(enabled=not dry_run, quiet=ctx.quiet)
    with _archive_for(ctx, dry_run) as archive, ctx.session() as session, _stop_on_ctrl_c(engine_options.stop):
        ctx.echo(f"Backing up {account} from {settings.connection.server} into {archive.root}", err=True)
        try:
            stats = BackupEngine(session, archive, engine_options, progress).run()
        finally:
            progress.close()
    _summarize(ctx, stats, dry_run)
    raise SystemExit(int(_exit_code(stats)))


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
    from mailbackup.sync.archive import account_dir

    return (account_dir(ctx.account.dest, ctx.account.account) / "state.sqlite3").exists()


@contextmanager
def _stop_on_ctrl_c(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C: finish the current batch and stop.  Second: stop now
    (still safe: the next run recovers)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nStopping after the current batch (Ctrl-C again to stop at once)...", err=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _summarize(ctx: Context, stats: RunStats, dry_run: bool) -> None:
    verb = "would fetch" if dry_run else "saved"
    for folder in stats.folders:
        if folder.error:
            ctx.echo(f"  FAILED  {folder.name}: {folder.error}", err=True)
        elif folder.failed_uids:
            ctx.echo(f"  PARTIAL {folder.name}: UIDs not saved: {', '.join(map(str, folder.failed_uids))}", err=True)
        elif dry_run and folder.fetched:
            ctx.echo(f"  {folder.name}: {folder.fetched} messages, {human_bytes(folder.fetched_bytes)}")
    changed = sum(1 for folder in stats.folders if not folder.skipped_unchanged)
    matched = sum(folder.matched for folder in stats.folders)
    gone = sum(folder.gone for folder in stats.folders)
    flags = sum(folder.flags_updated for folder in stats.folders)
    line = (f"{'Dry run: ' if dry_run else ''}{len(stats.folders)} folders ({changed} changed), "
            f"{verb} {stats.messages} messages, {human_bytes(stats.bytes)} in {duration(stats.seconds)}")
    extras = [text for count, text in ((matched, f"{matched} matched after UIDVALIDITY change"),
                                       (flags, f"{flags} flag changes"), (gone, f"{gone} gone from server"))
              if count]
    ctx.echo(line + (f"; {', '.join(extras)}" if extras else "") + ".")
    if stats.interrupted:
        ctx.echo("Interrupted: everything listed above is saved; run the same command to continue.", err=True)


def _exit_code(stats: RunStats) -> ExitCode:
    if stats.interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.WARNINGS if stats.has_warnings else ExitCode.OK
