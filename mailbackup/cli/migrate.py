"""`mailbackup migrate SOURCE --to TARGET`: server to server through the local
archive: a backup of SOURCE, then a restore of that archive into TARGET, so
every migration leaves its copy on disk."""

from __future__ import annotations

from typing import Any

import click

from mailbackup.archive import FORMATS, open_archive, private_umask
from mailbackup.cli.backup import summarize_backup
from mailbackup.cli.common import (
    build_context,
    folder_filter_options,
    handle_errors,
    server_options,
    stop_on_ctrl_c,
    verbosity_options,
)
from mailbackup.cli.progress import TqdmProgress
from mailbackup.cli.restore import check_options, run_restore, target_connection, target_options
from mailbackup.errors import ExitCode, run_exit_code, worst_exit_code
from mailbackup.i18n import _
from mailbackup.restore.migrate import back_up_source
from mailbackup.restore.upload import RestoreOptions
from mailbackup.state.uploads import UploadTarget
from mailbackup.sync.folder import BackupOptions


@click.command(help=_(
    "Copy ACCOUNT (--server ...) to TARGET_ACCOUNT (--to-server ...): back up every folder into the archive, "
    "then restore the archive into the target.\n\n"
    "Run it again at any time (e.g. once more at the cutover): both steps continue where they stopped and copy "
    "only what is new.  Exit code: the worse of the backup's and the restore's."))
@click.argument("account")
@target_options
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help=_("Archive root; the account gets its own directory inside (default ./mail-backup)."))
@click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
              help=_("Archive format, Maildir (default) or mbox; fixed by the archive's first run."))
@folder_filter_options
@check_options
@server_options
@verbosity_options
@handle_errors
def migrate(account: str, to_account: str, to_server: str | None, to_cafile: str | None, to_starttls: bool,
            to_insecure: bool, batch_size: int, skip_deleted: bool, dest: str | None, format_: str | None,
            include: tuple[str, ...], exclude: tuple[str, ...], check_mode: str, no_check: bool,
            **options: Any) -> None:
    ctx = build_context(account, dest=dest, format=format_, include=include, exclude=exclude, **options)
    private_umask()
    settings = ctx.account
    target_settings = target_connection(ctx, to_server, to_cafile, to_starttls, to_insecure)
    backup_options = BackupOptions(include=settings.include, exclude=settings.exclude)
    restore_options = RestoreOptions(
        target=UploadTarget(target_settings.server.host.lower(), to_account), include=settings.include,
        exclude=settings.exclude, skip_deleted=skip_deleted, batch_messages=batch_size, stop=backup_options.stop,
        check_content=check_mode == "full",
    )
    with open_archive(settings.dest, settings.account, format=settings.format) as archive:
        with ctx.session() as source, stop_on_ctrl_c(backup_options.stop):
            ctx.echo(_("Backing up {account} from {server} into {archive}").format(
                account=account, server=settings.connection.server, archive=archive.root), err=True)
            progress = TqdmProgress(enabled=True, quiet=ctx.quiet)
            try:
                stats = back_up_source(source, archive, backup_options, progress)
            finally:
                progress.close()
        summarize_backup(ctx, stats, False)
        backup_code = run_exit_code(stats)
        if backup_code == ExitCode.INTERRUPTED:
            raise SystemExit(int(backup_code))
        restore_code = run_restore(ctx, archive, target_settings, restore_options, check=not no_check)
    raise SystemExit(int(worst_exit_code([backup_code, restore_code])))
