"""IMAP keywords ($Label1, Work) in Maildir file names, the way Dovecot keeps them.

Maildir's info part holds the five system flags as capital letters
(``:2,FS``).  Dovecot adds keywords as lower-case letters after them: each
folder directory has a ``dovecot-keywords`` file of ``N keyword`` lines, and
letter ``a`` + N in a file name means keyword N.  Writing the same file lets
Dovecot, and mail readers that follow it, show an archive's keywords; the
state keeps every keyword in any case, including those past the 26th, which
have no letter.

Keywords compare without regard to case (RFC 3501 §2.3.2); the first
spelling seen is the one written.
"""

from __future__ import annotations

import string
from pathlib import Path

from mailbackup.store.files import atomic_write, fsync_directory

KEYWORDS_FILE = "dovecot-keywords"
LETTERS = string.ascii_lowercase


def keywords_of(flags: tuple[str, ...]) -> list[str]:
    """The keywords among `flags` (the system flags start with a backslash)."""
    return [flag for flag in flags if flag and not flag.startswith("\\")]


class KeywordTable:
    """One folder's ``dovecot-keywords``: read once, extended as new keywords come."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: list[str] = _read(folder / KEYWORDS_FILE)

    def letters(self, flags: tuple[str, ...], *, add: bool = True) -> str:
        """The letters for the keywords in `flags`; with `add`, new keywords are added to the
        file first (durably: a file name must never name a letter the table lacks)."""
        wanted = keywords_of(flags)
        known = {name.casefold() for name in self.names}
        new = [word for word in dict.fromkeys(wanted) if word.casefold() not in known]
        room = len(LETTERS) - len(self.names)
        if add and new and room > 0:
            self.names += new[:room]
            atomic_write(self.folder / KEYWORDS_FILE,
                         "".join(f"{index} {name}\n" for index, name in enumerate(self.names)).encode("utf-8"))
            fsync_directory(self.folder)
        index = {name.casefold(): number for number, name in enumerate(self.names)}
        return "".join(sorted({LETTERS[index[word.casefold()]] for word in wanted if word.casefold() in index}))


def _read(path: Path) -> list[str]:
    """The keywords by index; a line that is not ``N keyword`` is skipped, as Dovecot does."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    names: dict[int, str] = {}
    for line in text.splitlines():
        number, _, name = line.partition(" ")
        if number.isdigit() and name and int(number) < len(LETTERS):
            names[int(number)] = name
    # Indexes with gaps keep their place: a letter already in a file name must keep its meaning.
    return [names.get(index, f"$mailbackup-unused-{index}") for index in range(max(names, default=-1) + 1)]
