"""`mailbackup export ACCOUNT`: the archive as a Thunderbird "Local Folders"
tree (`--help-thunderbird` prints where to copy it), or in the other archive layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mailbackup.archive import open_archive, private_umask
from mailbackup.cli.common import build_context, folder_filter_options, handle_errors, verbosity_options
from mailbackup.cli.format import duration, folders_text, human_bytes, messages_text
from mailbackup.cli.guides import guide_text
from mailbackup.errors import ExitCode, UsageError
from mailbackup.i18n import _
from mailbackup.restore.export import ExportOptions, export_archive


class EchoExportProgress:
    """Warnings on stderr; a folder is quick enough to need no bar."""

    def folder_start(self, name: str, messages: int, size: int) -> None:
        pass

    def exported(self, messages: int, size: int) -> None:
        pass

    def warn(self, text: str) -> None:
        click.echo(_("warning: {text}").format(text=text), err=True)


def _print_thunderbird_guide(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(guide_text("thunderbird.md"))
        ctx.exit(0)


@click.command(help=_(
    "Export ACCOUNT's archive for Thunderbird, or convert it to mbox or Maildir.\n\n"
    "OUT_DIR must be new or empty.  Messages are written as archived, with the header lines Thunderbird "
    "(X-Mozilla-Status) or mbox readers (Status, X-Status) show read, replied and flagged from; --exact leaves "
    "them out.  For Thunderbird, --help-thunderbird prints where to copy the tree."))
@click.argument("account")
@click.option("--help-thunderbird", is_flag=True, is_eager=True, expose_value=False, callback=_print_thunderbird_guide,
              help=_("Print how to open an export in Thunderbird, step by step, and exit."))
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help=_("Archive root holding ACCOUNT's backup (default ./mail-backup)."))
@click.option("--thunderbird", "thunderbird_dir", type=click.Path(file_okay=False), default=None, metavar="OUT_DIR",
              help=_("Write a Thunderbird Local Folders tree (mbox files, .sbd subfolders) into OUT_DIR."))
@click.option("--mbox", "mbox_dir", type=click.Path(file_okay=False), default=None, metavar="OUT_DIR",
              help=_("Write the archive as mbox files (the layout of an mbox archive's mail/ directory)."))
@click.option("--maildir", "maildir_dir", type=click.Path(file_okay=False), default=None, metavar="OUT_DIR",
              help=_("Write the archive as Maildir folders (the layout of a Maildir archive's mail/ directory)."))
@folder_filter_options
@click.option("--skip-deleted", is_flag=True, help=_("Leave out messages the archive marks as gone from the server."))
@click.option("--exact", is_flag=True,
              help=_("Write every message byte for byte, without the read/flagged header lines readers use."))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help=_("YAML config with defaults and accounts."))
@verbosity_options
@handle_errors
def export(account: str, dest: str | None, thunderbird_dir: str | None, mbox_dir: str | None,
           maildir_dir: str | None, include: tuple[str, ...], exclude: tuple[str, ...], skip_deleted: bool,
           exact: bool, **options: Any) -> None:
    chosen = [(kind, path) for kind, path in (("thunderbird", thunderbird_dir), ("mbox", mbox_dir),
                                              ("maildir", maildir_dir)) if path]
    if len(chosen) != 1:
        raise UsageError(_("choose exactly one of --thunderbird, --mbox or --maildir"))
    kind, out_dir = chosen[0]
    ctx = build_context(account, dest=dest, include=include, exclude=exclude, **options)
    private_umask()
    export_options = ExportOptions(kind=kind, out_dir=Path(out_dir), include=ctx.account.include,
                                   exclude=ctx.account.exclude, skip_deleted=skip_deleted, exact=exact)
    with open_archive(ctx.account.dest, account, lock=True, create=False) as archive:
        stats = export_archive(archive, export_options, EchoExportProgress())
    ctx.echo(_("Exported {folders}, {messages}, {size} into {path} ({kind}) in {duration}.").format(
        folders=folders_text(len(stats.folders)), messages=messages_text(stats.messages), size=human_bytes(stats.bytes),
        path=out_dir, kind=kind,
        duration=duration(stats.seconds)))
    if kind == "thunderbird":
        ctx.echo(_("Copy it into Thunderbird as `mailbackup export --help-thunderbird` describes "
                   "(Thunderbird closed)."))
    raise SystemExit(int(ExitCode.WARNINGS if stats.has_warnings else ExitCode.OK))
