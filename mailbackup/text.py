"""Text for people: server text made safe to print, byte counts made
readable, durations (``7d``, ``90m``) read."""

from __future__ import annotations

import re
from datetime import timedelta

from mailbackup.errors import UsageError
from mailbackup.i18n import _

DURATION_PART = re.compile(r"(\d+)\s*([smhdw])")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and line feed


def printable(text: str) -> str:
    """Server text made safe to print: control characters but tab and line
    feed (a terminal escape sequence from a hostile server, a carriage return
    that would overwrite the line, a NUL) are shown as ``\\xNN``."""
    return CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def human_bytes(count: int | None) -> str:
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``1d12h``, ``30m``, ``2w``, ``90s`` → timedelta."""
    compact = text.strip().lower()
    parts = DURATION_PART.findall(compact)
    if not parts or "".join(f"{number}{unit}" for number, unit in parts) != compact.replace(" ", ""):
        raise UsageError(_("cannot read duration {text!r}").format(text=text),
                         hint=_("use a number and a unit, e.g. 7d, 12h, 30m"))
    total = timedelta()
    for number, unit in parts:
        total += timedelta(**{DURATION_UNITS[unit]: int(number)})
    return total
