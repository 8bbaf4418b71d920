"""The `mailbackup` command line: one module per command, all registered here."""

from __future__ import annotations

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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mailbackup")
@verbosity_options
def cli(verbose: int, quiet: bool) -> None:
    """Back up, verify and migrate IMAP mailboxes (imap.mail.go.th by default).

    Quick start:  mailbackup backup you@coj.go.th
    """


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
    cli(prog_name="mailbackup")
