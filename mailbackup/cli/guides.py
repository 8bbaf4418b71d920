"""Guides the commands point to, printed in the user's language.

An installed copy carries them as mailbackup/help/NAME (setup.py copies
docs/NAME into the build); an editable install reads docs/NAME beside the
package.  Each guide holds a Thai part and an English part, under the
headings ``## ภาษาไทย`` and ``## English``.
"""

from __future__ import annotations

from pathlib import Path

from mailbackup.errors import UsageError
from mailbackup.i18n import _, language

PACKAGE = Path(__file__).resolve().parent.parent
ENGLISH_HEADING = "## English"
THAI_HEADING = "## ภาษาไทย"


def guide_path(name: str) -> Path:
    for path in (PACKAGE / "help" / name, PACKAGE.parent / "docs" / name):
        if path.is_file():
            return path
    raise UsageError(_("the guide {name} is missing from this installation").format(name=name),
                     hint=_("reinstall mailbackup"))


def guide_text(name: str) -> str:
    """The guide's part in the current language, with its title."""
    text = guide_path(name).read_text(encoding="utf-8")
    title, _sep, rest = text.partition("\n")
    before_english, _sep, english = rest.partition(ENGLISH_HEADING)
    thai = THAI_HEADING + before_english.partition(THAI_HEADING)[2]
    part = thai if language() == "th" else ENGLISH_HEADING + english
    return title + "\n" + part.strip("\n") + "\n"
