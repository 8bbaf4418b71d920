"""`mailbackup restore ACCOUNT --to TARGET`: put an archive back on a server,
then check that it is all there (``reports/restore-verify.json``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import click

from mailbackup import secrets
from mailbackup.archive import Archive, open_archive, private_umask
from mailbackup.cli.common import (
    Context,
    build_context,
    folder_filter_options,
    handle_errors,
    prompt_password,
    stop_on_ctrl_c,
    verbosity_options,
)
from mailbackup.cli.format import duration, human_bytes
from mailbackup.cli.progress import TqdmProgress
from mailbackup.errors import ExitCode
from mailbackup.i18n import _
from mailbackup.imap.append import TargetMailbox
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, FolderResult, ServerAddress, TLSMode
from mailbackup.restore.migrate import check_and_report, restore_and_check
from mailbackup.restore.targetcheck import FolderCheck, TargetCheck
from mailbackup.restore.upload import FolderRestoreResult, RestoreOptions, RestoreStats
from mailbackup.state.uploads import UploadTarget

F = TypeVar("F", bound=Callable[..., Any])
FAILURES_SHOWN = 20  # per folder; restore-verify.json lists them all


def target_options(func: F) -> F:
    """--to and the target server's connection options (restore and migrate)."""
    options = [
        click.option("--to", "to_account", required=True, metavar="TARGET_ACCOUNT",
                     help=_("Account to restore into (its password: MAILBACKUP_TARGET_PASSWORD, the keyring, "
                            "or a prompt).")),
        click.option("--to-server", metavar="HOST[:PORT]", default=None,
                     help=_("Target IMAP server (default: the account's own server).")),
        click.option("--to-cafile", type=click.Path(dir_okay=False), default=None,
                     help=_("Trust the certificate authority in this PEM file for the target.")),
        click.option("--to-starttls", is_flag=True, default=False, help=_("Target: plain connect, then STARTTLS.")),
        click.option("--to-insecure", is_flag=True, default=False,
                     help=_("Do not verify the target's certificate (still encrypted).")),
        click.option("--batch-size", type=click.IntRange(1, 1000), default=100, show_default=True,
                     help=_("Messages per MULTIAPPEND (batches are also bounded to 8 MB).")),
        click.option("--skip-deleted", is_flag=True,
                     help=_("Leave out messages the archive marks as gone from the server.")),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def check_options(func: F) -> F:
    """How the target is checked after uploading (restore and migrate)."""
    func = click.option("--no-check", is_flag=True, help=_("Do not check the target after uploading."))(func)
    return click.option(
        "--check", "check_mode", type=click.Choice(["full", "quick"]), default="full", show_default=True,
        help=_("After uploading, check every message on the target: full fetches each one and compares its "
               "SHA-256 with the archive's (a server may keep the size and change the bytes); quick compares "
               "size, flags and date only."))(func)


def target_connection(ctx: Context, to_server: str | None, to_cafile: str | None, to_starttls: bool,
                      to_insecure: bool) -> ConnectionSettings:
    """The target's settings: --to-server and its options, or else the
    account's own server (a new account on the same service)."""
    base = ctx.connection
    if to_server is None:
        return replace(base, cafile=to_cafile or base.cafile, insecure=to_insecure or base.insecure,
                       tls_mode=TLSMode.STARTTLS if to_starttls else base.tls_mode, target=True)
    return ConnectionSettings(
        server=ServerAddress.parse(to_server, starttls=to_starttls),
        tls_mode=TLSMode.STARTTLS if to_starttls else TLSMode.IMPLICIT,
        cafile=to_cafile, insecure=to_insecure, timeout=base.timeout, compress=base.compress, target=True,
    )


def target_session(settings: ConnectionSettings, account: str) -> ImapSession:
    if settings.insecure:
        click.echo(_("warning: --to-insecure: the target's certificate is NOT checked"), err=True)
    password = secrets.lookup_target(account, settings.server.host, prompt=prompt_password)
    return ImapSession(settings, account, password)


class TqdmRestoreProgress:
    """The backup's progress bars, fed by the restore engine."""

    def __init__(self, *, enabled: bool, quiet: bool) -> None:
        self.bars = TqdmProgress(enabled=enabled, quiet=quiet)

    def folder_start(self, name: str, messages: int, size: int) -> None:
        self.bars.folder_start(name, messages, size)

    def uploaded(self, messages: int, size: int) -> None:
        self.bars.saved(messages, size)

    def folder_done(self, result: FolderRestoreResult) -> None:
        self.bars.folder_done(FolderResult(name=result.source))

    def warn(self, text: str) -> None:
        self.bars.warn(text)

    def close(self) -> None:
        self.bars.close()


@click.command(help=_(
    "Upload ACCOUNT's archive to TARGET_ACCOUNT, into the same folders, with read/flagged marks and original "
    "dates; then check it is all there.\n\n"
    "Safe to run again: messages already uploaded are skipped, and after an interruption the ones in flight are "
    "looked for on the target first.  Exit code: 0 all there, 1 some messages or folders could not be restored, "
    "or the check found messages missing, changed by the target or impossible to check (listed, and in "
    "reports/restore-verify.json), 3/4/5 login or connection."))
@click.argument("account")
@target_options
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help=_("Archive root holding ACCOUNT's backup (default ./mail-backup)."))
@folder_filter_options
@click.option("--dry-run", is_flag=True, help=_("Show which folders and how many messages would go where."))
@click.option("--verify-only", is_flag=True, help=_("Upload nothing; only check the target against the archive."))
@check_options
@click.option("--timeout", type=float, default=None, help=_("Seconds to wait for the server (default 60)."))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help=_("YAML config with defaults and accounts."))
@verbosity_options
@handle_errors
def restore(account: str, to_account: str, to_server: str | None, to_cafile: str | None, to_starttls: bool,
            to_insecure: bool, batch_size: int, skip_deleted: bool, dest: str | None, include: tuple[str, ...],
            exclude: tuple[str, ...], dry_run: bool, verify_only: bool, check_mode: str, no_check: bool,
            **options: Any) -> None:
    ctx = build_context(account, dest=dest, include=include, exclude=exclude, **options)
    private_umask()
    settings = target_connection(ctx, to_server, to_cafile, to_starttls, to_insecure)
    restore_options = RestoreOptions(
        target=UploadTarget(settings.server.host.lower(), to_account), include=ctx.account.include,
        exclude=ctx.account.exclude, skip_deleted=skip_deleted, dry_run=dry_run, batch_messages=batch_size,
        check_content=check_mode == "full",
    )
    with open_archive(ctx.account.dest, account, lock=True, create=False) as archive:
        code = run_restore(ctx, archive, settings, restore_options, check=not no_check, verify_only=verify_only)
    raise SystemExit(int(code))


def run_restore(ctx: Context, archive: Archive, settings: ConnectionSettings, options: RestoreOptions, *,
                check: bool = True, verify_only: bool = False) -> ExitCode:
    """Restore (or only check) into the target; print what happened; the exit code."""
    target_account = options.target.account
    with target_session(settings, target_account) as session, stop_on_ctrl_c(options.stop):
        target = TargetMailbox(session)
        if verify_only:
            checked = check_and_report(archive, target, options, ctx.account.account)
            summarize_check(ctx, checked.check, str(checked.report))
            return checked.exit_code
        text = (_("Dry run: restoring {account} from {archive} to {target} on {server}") if options.dry_run
                else _("Restoring {account} from {archive} to {target} on {server}"))
        ctx.echo(text.format(account=archive.state.get_meta("account") or ctx.account.account, archive=archive.root,
                             target=target_account, server=settings.server), err=True)
        progress = TqdmRestoreProgress(enabled=not options.dry_run, quiet=ctx.quiet)

        def restored(stats: RestoreStats) -> None:
            progress.close()
            summarize(ctx, stats)

        try:
            outcome = restore_and_check(archive, target, options, progress, check=check,
                                        account=ctx.account.account, on_restored=restored)
        finally:
            progress.close()
        if outcome.checked is not None:
            summarize_check(ctx, outcome.checked.check, str(outcome.checked.report))
        return outcome.exit_code


def summarize(ctx: Context, stats: RestoreStats) -> None:
    for folder in stats.folders:
        arrow = f"{folder.source} → {folder.target}"
        if folder.error:
            ctx.echo(_("  FAILED  {folders}: {error}").format(folders=arrow, error=folder.error), err=True)
        elif stats.dry_run:
            new = _(" (new folder)") if folder.created else ""
            ctx.echo(_("  {folders}{new}: would upload {count} messages, {size}; {already} already uploaded").format(
                folders=arrow, new=new, count=folder.uploaded, size=human_bytes(folder.uploaded_bytes),
                already=folder.already))
        if folder.failed:
            ctx.echo(_("  PARTIAL {folders}: {count} messages not uploaded:").format(
                folders=arrow, count=len(folder.failed)), err=True)
            for failure in folder.failed[:FAILURES_SHOWN]:
                subject = f" {failure.subject!r}" if failure.subject else ""
                ctx.echo(f"      UID {failure.uid} ({human_bytes(failure.size)}){subject}: {failure.error}", err=True)
            if len(folder.failed) > FAILURES_SHOWN:
                ctx.echo(_("      … and {count} more").format(count=len(folder.failed) - FAILURES_SHOWN), err=True)
    found = sum(folder.found for folder in stats.folders)
    already = sum(folder.already for folder in stats.folders)
    created = sum(1 for folder in stats.folders if folder.created)
    rate = stats.uploaded / stats.seconds if stats.seconds > 0 else 0.0
    line = (_("Dry run: {folders} folders ({created} to create), would upload {count} messages, {size} in "
              "{duration} ({rate:.0f} messages/s)") if stats.dry_run else
            _("{folders} folders ({created} created), uploaded {count} messages, {size} in {duration} "
              "({rate:.0f} messages/s)")).format(
        folders=len(stats.folders), created=created, count=stats.uploaded, size=human_bytes(stats.bytes),
        duration=duration(stats.seconds), rate=rate)
    extras = [text for count, text in ((already, _("{count} uploaded before").format(count=already)),
                                       (found, _("{count} found already on the target").format(count=found)),
                                       (stats.failures, _("{count} refused").format(count=stats.failures))) if count]
    ctx.echo(_("{summary}.").format(summary=line + (f"; {', '.join(extras)}" if extras else "")))
    if stats.interrupted:
        ctx.echo(_("Interrupted: run the same command again to continue; nothing will be uploaded twice."), err=True)


def summarize_check(ctx: Context, check: TargetCheck, report: str) -> None:
    totals = check.totals()
    if check.complete:
        text = (_("Check: all {count} messages are on the target with the same content, size, flags and date "
                  "({report}).") if check.content else
                _("Check: all {count} messages are on the target with the same size, flags and date ({report})."))
        ctx.echo(text.format(count=totals["messages"], report=report))
        return
    for folder in check.folders:
        if folder.status != "ok":
            _summarize_folder_check(ctx, folder)
    ctx.echo(_("Check: {present} of {count} messages are on the target as archived; {missing} missing, "
               "{size_mismatch} with another size, {flags_mismatch} with other flags, {date_mismatch} with another "
               "date (details: {report}).").format(
        present=totals["present"], count=totals["messages"], missing=totals["missing"],
        size_mismatch=totals["size_mismatch"], flags_mismatch=totals["flags_mismatch"],
        date_mismatch=totals["date_mismatch"], report=report))
    if totals["content_mismatch"] or totals["unchecked"]:
        ctx.echo(_("Check: {changed} with other content (the target changed their bytes), {unchecked} could not be "
                   "checked.").format(changed=totals["content_mismatch"], unchecked=totals["unchecked"]))


def _summarize_folder_check(ctx: Context, folder: FolderCheck) -> None:
    problems = ", ".join(text.format(count=len(getattr(folder, kind))) for kind, text in (
        ("missing", _("{count} missing")), ("size_mismatch", _("{count} size mismatch")),
        ("flags_mismatch", _("{count} flags mismatch")), ("date_mismatch", _("{count} date mismatch")),
        ("content_mismatch", _("{count} content changed")), ("unchecked", _("{count} could not be checked")))
        if getattr(folder, kind))
    ctx.echo(_("  CHECK   {source} → {target}: {detail}").format(
        source=folder.source, target=folder.target, detail=folder.error or problems), err=True)
    # A changed message is named: its reason says which and how (it cannot be told from the counts).
    for entry in folder.content_mismatch[:FAILURES_SHOWN]:
        ctx.echo(f"      {entry.reason}", err=True)
    if folder.unchecked:
        ctx.echo(f"      {folder.unchecked[0].reason}", err=True)
