"""`mailbackup check CONFIG`: log in to every account (no download) and list
who cannot, shaped for the request form a unit sends to the mail administrator."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from mailbackup.archive import private_umask
from mailbackup.cli.common import handle_errors, setup_logging, verbosity_options
from mailbackup.cli.format import display_width
from mailbackup.config import load_sweep
from mailbackup.errors import worst_exit_code
from mailbackup.i18n import _
from mailbackup.store.files import atomic_write
from mailbackup.sweep.logins import CHECK_COLUMNS, check_csv, check_logins, check_rows
from mailbackup.sweep.options import Shard, SweepOptions

SHOWN_COLUMNS = 6  # title, name, surname, position, account, problem: the form's columns


@click.command(help=_(
    "Log in to every account in CONFIG and list those that cannot: wrong password or account gone, locked, "
    "expired, no password stored, server down.  Nothing is downloaded.\n\n"
    "Columns as in the survey the mail administrator asks for (คำนำหน้า, ชื่อ, นามสกุล, ตำแหน่ง, บัญชี, ปัญหา), "
    "filled from each account's title/name/surname/position in the config.  The form also asks for the national "
    "ID number, which mailbackup never holds: add it by hand.\n\n"
    "Exit code: 0 when every account can log in, otherwise the worst account's (3 password, 4 server down, "
    "5 TLS, ...; the order is the sweep's)."))
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help=_("Also write the list as CSV (UTF-8 with BOM, opens in Excel) for the request form."))
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help=_("Logins at once (default: the config's)."))
@click.option("--shard", metavar="I/N", default=None, help=_("Only this machine's share of the accounts."))
@click.option("--max-busy-wait", type=click.FloatRange(0), default=None,
              help=_("Seconds to keep trying an account whose server says it is busy (default 300)."))
@verbosity_options
@handle_errors
def check(config: str, csv_path: str | None, jobs: int | None, shard: str | None, max_busy_wait: float | None,
          verbose: int, quiet: bool) -> None:
    setup_logging(verbose, quiet)
    if not verbose:
        logging.getLogger("mailbackup.sweep").setLevel(logging.ERROR)  # the table says it all
    private_umask()
    settings = load_sweep(Path(config))
    options = SweepOptions.from_settings(settings, jobs=jobs, max_busy_wait=max_busy_wait)
    checks = check_logins(settings, options, shard=Shard.parse(shard) if shard else None)
    rows = check_rows(checks)
    if csv_path:
        atomic_write(Path(csv_path), check_csv(checks))
    if not quiet:
        if rows:
            _print_table([list(CHECK_COLUMNS[:SHOWN_COLUMNS])] + [row[:SHOWN_COLUMNS] for row in rows])
        able = sum(1 for check_ in checks if check_.ok)
        click.echo(_("{able} of {total} accounts can log in.").format(able=able, total=len(checks)))
        if csv_path and rows:
            click.echo(_("List: {path}").format(path=csv_path))
    raise SystemExit(int(worst_exit_code(check_.exit_code for check_ in checks)))


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(display_width(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())
