"""Ready schedules for a nightly sweep: a crontab line, a systemd service
and timer, a Windows Task Scheduler (``schtasks``) command.

Public API: `ScheduleSpec`, `parse_at`, `unit_name`, `sweep_argv`,
`crontab_line`, `systemd_units` and `schtasks_command`.  Pure text with the
absolute paths of this installation (``sys.executable -m mailbackup``, the
config's absolute path); nothing is installed here.

What is printed is run later by someone else's machinery, so no path or name
in it may change its meaning: a control character (a newline ends a cron
entry or a systemd directive) is refused for every scheduler, and for
Windows so is every character the Command Prompt or Task Scheduler would
read as syntax (`WINDOWS_SPECIAL`); each refusal is a UsageError naming the
value.

Overlapping runs: a sweep takes a lock per config and shard (see
`sweep.sweep_lock`), so a run that starts while the last one is still busy
exits at once with code 6 and touches nothing; each account's archive has
its own lock as well.  systemd also never starts a oneshot service that is
still running, and Task Scheduler's default is not to start a second
instance.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from mailbackup.errors import UsageError
from mailbackup.i18n import _

DEFAULT_AT = "01:30"
SCHTASKS_TR_LIMIT = 261  # characters Task Scheduler accepts in /TR
# cmd.exe splits or redirects at & | < >, takes ^ as its escape and expands
# %NAME% even inside double quotes (Task Scheduler expands it again when the
# task runs); and `\"` is no escape to cmd.exe, so its quote state cannot be
# trusted to hide them.  A path holding one is refused, not quoted.
WINDOWS_SPECIAL = '&|<>^%"'


@dataclass(frozen=True)
class ScheduleSpec:
    python: str  # absolute path of the interpreter mailbackup is installed in
    config: Path  # absolute
    hour: int
    minute: int
    sweep_args: tuple[str, ...] = ()  # more options for `mailbackup sweep`
    name: str = "mailbackup-sweep"


def parse_at(text: str) -> tuple[int, int]:
    """``HH:MM`` (24-hour) → (hour, minute)."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise UsageError(_("cannot read time {text!r}").format(text=text),
                         hint=_("use HH:MM on a 24-hour clock, e.g. 01:30 or 22:00"))
    return int(match.group(1)), int(match.group(2))


def unit_name(config: Path, shard: str | None = None) -> str:
    """``mailbackup-sweep-<config name>[-shard-I-of-N]``: one schedule per config and shard."""
    stem = re.sub(r"[^a-z0-9]+", "-", config.stem.lower()).strip("-") or "config"
    suffix = f"-shard-{shard.replace('/', '-of-')}" if shard else ""
    return f"mailbackup-sweep-{stem}{suffix}"


def sweep_argv(spec: ScheduleSpec) -> list[str]:
    return [spec.python, "-m", "mailbackup", "sweep", str(spec.config), *spec.sweep_args]


def _is_control(char: str) -> bool:
    # Cc is C0, DEL and C1; Zl/Zp are the Unicode line and paragraph separators.
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def check_printable(spec: ScheduleSpec, *, forbidden: str = "") -> None:
    """Refuse a path or name that would change the meaning of the printed
    schedule: any control character, or one of `forbidden`."""
    for value in (*sweep_argv(spec), spec.name):
        bad = next((char for char in value if _is_control(char) or char in forbidden), None)
        if bad is None:
            continue
        if _is_control(bad):
            raise UsageError(_("cannot schedule {value}: it holds a control character ({char})").format(
                value=repr(value), char=ascii(bad)), hint=_("rename the file or directory"))
        raise UsageError(_("cannot schedule {value} on Windows: the Command Prompt reads {char} in it as a "
                           "command").format(value=repr(value), char=bad),
                         hint=_("move the file to a path without {chars}").format(chars=" ".join(WINDOWS_SPECIAL)))


# -- cron ---------------------------------------------------------------------


def crontab_line(spec: ScheduleSpec) -> str:
    """``M H * * * command``: cron runs the command with /bin/sh, and reads a
    bare ``%`` as a newline, so it is escaped."""
    check_printable(spec)
    command = " ".join(shlex.quote(arg) for arg in sweep_argv(spec)).replace("%", "\\%")
    return f"{spec.minute} {spec.hour} * * * {command}"


# -- systemd --------------------------------------------------------------------


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: ``%`` is a specifier and ``$`` a variable to systemd."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(spec: ScheduleSpec) -> dict[str, str]:
    """``NAME.service`` and ``NAME.timer`` file contents."""
    check_printable(spec)
    exec_start = " ".join(_systemd_quote(arg) for arg in sweep_argv(spec))
    when = f"{spec.hour:02d}:{spec.minute:02d}"
    config = str(spec.config).replace("%", "%%")  # specifiers are expanded in descriptions too
    service = f"""[Unit]
Description=mailbackup: back up and verify the accounts of {config}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={exec_start}
# A sweep of many mailboxes may run for hours: never stop it for that.
TimeoutStartSec=infinity
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
"""
    timer = f"""[Unit]
Description=mailbackup: nightly sweep of {config} at {when}

[Timer]
OnCalendar=*-*-* {when}:00
# Run at the next start when the machine was off at {when}.
Persistent=true
Unit={spec.name}.service

[Install]
WantedBy=timers.target
"""
    return {f"{spec.name}.service": service, f"{spec.name}.timer": timer}


# -- Windows ----------------------------------------------------------------------


def _task_run(spec: ScheduleSpec) -> str:
    """The /TR value: the sweep's command line as the started program reads
    it (the C runtime's rules, those of CommandLineToArgvW)."""
    check_printable(spec, forbidden=WINDOWS_SPECIAL)
    return subprocess.list2cmdline(sweep_argv(spec))


def schtasks_command(spec: ScheduleSpec) -> str:
    """``schtasks /Create``: daily at the time, as the current user.  The /TR
    value is quoted once more for schtasks' own command line; with every
    cmd.exe special character refused, cmd.exe passes the line on unchanged."""
    name = str(PureWindowsPath("mailbackup") / spec.name)
    task_run = subprocess.list2cmdline([_task_run(spec)])  # quoted: the command always holds spaces
    return (f'schtasks /Create /F /TN "{name}" /SC DAILY /ST {spec.hour:02d}:{spec.minute:02d} '
            f'/TR {task_run}')


def schtasks_too_long(spec: ScheduleSpec) -> bool:
    """Task Scheduler refuses a /TR longer than 261 characters."""
    return len(_task_run(spec)) > SCHTASKS_TR_LIMIT
