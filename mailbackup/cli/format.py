"""Small text helpers for command output."""

from __future__ import annotations

import unicodedata

from mailbackup.i18n import _, ngettext
from mailbackup.text import human_bytes

__all__ = ["display_width", "duration", "human_bytes", "pad"]  # human_bytes lives in mailbackup.text


def messages_text(count: int) -> str:
    """"1 message", "2 messages" (Thai: "1 ฉบับ")."""
    return ngettext("{count} message", "{count} messages", count).format(count=count)


def folders_text(count: int) -> str:
    return ngettext("{count} folder", "{count} folders", count).format(count=count)


def accounts_text(count: int) -> str:
    return ngettext("{count} account", "{count} accounts", count).format(count=count)


def duration(seconds: float) -> str:
    if seconds < 60:
        return _("{seconds:.1f} s").format(seconds=seconds)
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return _("{hours} h {minutes} min").format(hours=hours, minutes=minutes)
    return _("{minutes} min {seconds} s").format(minutes=minutes, seconds=rest)


def display_width(text: str) -> int:
    """Terminal columns: Thai vowel and tone marks above or below take none."""
    width = 0
    for char in text:
        if unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def pad(text: str, width: int, *, right: bool = False) -> str:
    """`text` filled with spaces to `width` terminal columns (Thai marks take none)."""
    fill = " " * max(width - display_width(text), 0)
    return fill + text if right else text + fill


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` terminal columns, broken at spaces
    (a word wider than a line is cut only then), so no word is cut at the edge."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while display_width(word) > width:
            head, word = _cut(word, width)
            if line:
                lines.append(line)
                line = ""
            lines.append(head)
        candidate = f"{line} {word}" if line else word
        if display_width(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines or [""]


def _cut(word: str, width: int) -> tuple[str, str]:
    end = len(word)
    while end > 1 and display_width(word[:end]) > width:
        end -= 1
    while end > 1 and unicodedata.category(word[end - 1]) == "Lo" and end < len(word) and \
            unicodedata.category(word[end]) in ("Mn", "Me"):  # never part a Thai letter from its marks
        end -= 1
    return word[:end], word[end:]
