"""The `mailbackup` command line: one module per command, all registered here."""

from __future__ import annotations

import sys
from typing import IO, Any

import click

from mailbackup import __version__
from mailbackup.cli import auth, backup, folders
from mailbackup.cli import export as export_command
from mailbackup.cli import migrate as migrate_command
from mailbackup.cli import report as report_command
from mailbackup.cli import restore as restore_command
from mailbackup.cli import verify as verify_command
from mailbackup.cli.check import check
from mailbackup.cli.common import verbosity_options
from mailbackup.cli.schedule import schedule
from mailbackup.cli.sweep import sweep
from mailbackup.i18n import _


def utf8_console(streams: tuple[IO[Any], ...] | None = None, platform: str = sys.platform) -> None:
    """On Windows, a redirected stdout/stderr is in the ANSI code page (874 on
    Thai Windows), which cannot hold every character we print: make them
    UTF-8, replacing what cannot be written rather than failing; stdin too, so
    a Thai password piped into `auth set` or `auth import` arrives intact."""
    if platform != "win32":
        return
    stdin, stdout, stderr = streams or (sys.stdin, sys.stdout, sys.stderr)
    for stream, settings in ((stdout, {"errors": "replace"}), (stderr, {"errors": "replace"}), (stdin, {})):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8", **settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help=_("Back up, verify and migrate IMAP mailboxes (imap.mail.go.th by default).\n\n"
                    "Quick start:  mailbackup backup you@coj.go.th"))
@click.version_option(__version__, prog_name="mailbackup")
@verbosity_options
def cli(verbose: int, quiet: bool) -> None:
    pass


cli.add_command(auth.auth)
cli.add_command(folders.folders)
cli.add_command(backup.backup)
cli.add_command(verify_command.verify)
cli.add_command(report_command.report)
cli.add_command(sweep)
cli.add_command(check)
cli.add_command(schedule)
cli.add_command(restore_command.restore)
cli.add_command(migrate_command.migrate)
cli.add_command(export_command.export)


def main() -> None:
    utf8_console()
    cli(prog_name="mailbackup")
