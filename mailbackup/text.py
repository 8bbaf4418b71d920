"""Text for people: server text made safe to print, byte counts made
readable, durations (``7d``, ``90m``) read."""

from __future__ import annotations

import errno
import re
import socket
from datetime import timedelta

from mailbackup.errors import UsageError
from mailbackup.i18n import N_, _, language

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


# What an operating system error means, in the user's language; the system's own
# words (always English on Linux) follow in brackets in Thai, so nothing is lost.
SYSTEM_ERRORS = {
    errno.ENOSPC: N_("the disk is full"), errno.EDQUOT: N_("the disk quota is used up"),
    errno.EACCES: N_("permission denied"), errno.EPERM: N_("operation not permitted"),
    errno.EROFS: N_("the file system is read-only"), errno.ENOENT: N_("no such file or directory"),
    errno.ENOTDIR: N_("a part of the path is not a directory"), errno.EISDIR: N_("it is a directory"),
    errno.EEXIST: N_("it already exists"), errno.EIO: N_("the disk could not be read or written"),
    errno.ENAMETOOLONG: N_("the name is too long"), errno.ECONNREFUSED: N_("the connection was refused"),
    errno.ETIMEDOUT: N_("the connection timed out"), errno.EHOSTUNREACH: N_("the server cannot be reached"),
    errno.ENETUNREACH: N_("the network cannot be reached"), errno.ECONNRESET: N_("the connection was reset"),
}
UNKNOWN_HOST = N_("the server's name is not known")


def system_error(exc: BaseException) -> str:
    """An OSError (or a socket name error) for people: the system's words in
    English, a sentence of ours with them in brackets in Thai."""
    words = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if language() != "th":
        return words
    if isinstance(exc, socket.gaierror):
        return f"{_(UNKNOWN_HOST)} [{words}]"
    meaning = SYSTEM_ERRORS.get(getattr(exc, "errno", None) or 0)
    return f"{_(meaning)} [{words}]" if meaning else f"[{words}]"
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
