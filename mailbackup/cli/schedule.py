"""`mailbackup schedule CONFIG --cron|--systemd|--windows`: print a ready
schedule for a nightly sweep, with this installation's absolute paths."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailbackup.cli.common import handle_errors, setup_logging, verbosity_options
from mailbackup.config import load_sweep
from mailbackup.errors import StorageError, UsageError
from mailbackup.i18n import N_, _
from mailbackup.sweep.options import Shard
from mailbackup.sweep.schedule import (
    DEFAULT_AT,
    WINDOWS_SPECIAL,
    ScheduleSpec,
    check_printable,
    crontab_line,
    parse_at,
    schtasks_command,
    schtasks_too_long,
    systemd_units,
    unit_name,
)
from mailbackup.text import system_error

PASSWORD_NOTE = N_("A scheduled run has no desktop session: the OS keyring may be locked or absent. "
                   "Give each account a password_file (readable by you alone) or a password_command.")


@click.command(help=_(
    "Print a schedule that runs `mailbackup sweep CONFIG` every night.\n\n"
    "Two runs never overlap: a sweep that starts while the previous one is still running finds the sweep lock "
    "taken and exits with code 6."))
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--cron", "kind", flag_value="cron", help=_("A crontab line (add it with `crontab -e`)."))
@click.option("--systemd", "kind", flag_value="systemd", help=_("A systemd service and timer."))
@click.option("--windows", "kind", flag_value="windows", help=_("A Windows Task Scheduler command."))
@click.option("--at", "at", default=DEFAULT_AT, show_default=True, metavar="HH:MM",
              help=_("Time of day, 24-hour clock."))
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help=_("Passed on to the sweep."))
@click.option("--shard", metavar="I/N", default=None, help=_("Passed on to the sweep: this machine's share."))
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help=_("The sweep's log (default DEST/reports/sweep.log)."))
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help=_("--systemd: write the two unit files into this directory instead of printing them."))
@verbosity_options
@handle_errors
def schedule(config: str, kind: str | None, at: str, jobs: int | None, shard: str | None, log_file: str | None,
             output_dir: str | None, verbose: int, quiet: bool) -> None:
    setup_logging(verbose, quiet)
    if kind is None:
        raise UsageError(_("say which scheduler"), hint=_("add --cron, --systemd or --windows"))
    hour, minute = parse_at(at)
    config_path = Path(config).resolve()
    settings = load_sweep(config_path)  # a broken config fails now, not at 01:30
    parsed_shard = Shard.parse(shard) if shard else None
    suffix = f"-shard-{parsed_shard.index}-of-{parsed_shard.count}" if parsed_shard else ""
    log_path = Path(log_file).resolve() if log_file else settings.dest.resolve() / "reports" / f"sweep{suffix}.log"
    args = ["--log-file", str(log_path)]
    args += ["--jobs", str(jobs)] if jobs else []
    args += ["--shard", str(parsed_shard)] if parsed_shard else []
    args += ["--quiet"] if kind != "systemd" else []  # cron mails any output; the journal keeps systemd's
    name = unit_name(config_path, str(parsed_shard) if parsed_shard else None)
    spec = ScheduleSpec(python=str(Path(sys.executable).absolute()), config=config_path, hour=hour, minute=minute,
                        sweep_args=tuple(args), name=name)
    check_printable(spec, forbidden=WINDOWS_SPECIAL if kind == "windows" else "")  # before anything is printed
    if not settings.dest.is_absolute():
        click.echo(_("warning: {config} sets no absolute dest; a scheduled run writes into its working "
                     "directory. Add `dest:` under `defaults:`.").format(config=config_path), err=True)
    if kind == "cron":
        _print_cron(spec)
    elif kind == "systemd":
        _systemd(spec, Path(output_dir) if output_dir else None)
    else:
        _print_windows(spec)


def _print_cron(spec: ScheduleSpec) -> None:
    click.echo("# " + _("mailbackup: nightly sweep at {time}. Add with `crontab -e`.").format(
        time=f"{spec.hour:02d}:{spec.minute:02d}"))
    click.echo(f"# {_(PASSWORD_NOTE)}")
    click.echo(crontab_line(spec))


def _systemd(spec: ScheduleSpec, output_dir: Path | None) -> None:
    units = systemd_units(spec)
    if output_dir is not None:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            for name, text in units.items():
                (output_dir / name).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise StorageError(_("cannot write the units into {directory}: {error}").format(
                directory=output_dir, error=system_error(exc))) from None
        click.echo(_("Wrote {files}.").format(files=", ".join(str(output_dir / name) for name in units)))
    else:
        for name, text in units.items():
            click.echo(f"# ---- {name} ----")
            click.echo(text)
    click.echo("# " + _("Install as your user: copy both files to ~/.config/systemd/user/, then") + "\n"
               f"#   systemctl --user daemon-reload && systemctl --user enable --now {spec.name}.timer\n"
               "#   loginctl enable-linger $USER    # " + _("so it runs while nobody is logged in") + "\n"
               f"# {_(PASSWORD_NOTE)}")


def _print_windows(spec: ScheduleSpec) -> None:
    click.echo("REM " + _("mailbackup: nightly sweep at {time}. Run in a Command Prompt.").format(
        time=f"{spec.hour:02d}:{spec.minute:02d}"))
    click.echo("REM " + _("Add /RU %USERNAME% /RP to run while you are logged off (asks for your Windows password)."))
    click.echo(schtasks_command(spec))
    if schtasks_too_long(spec):
        click.echo(_("warning: the command is longer than Task Scheduler accepts (261 characters); put it in a "
                     ".cmd file and schedule that file instead."), err=True)
