"""Text for people: server text made safe to print, byte counts made readable."""

from __future__ import annotations

import re

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
