"""The language of everything a person reads: Thai or English, through the
standard `gettext` machinery.

Public API: `_` (translate a message; placeholders stay named, ``{account}``,
so a translation may put them in another order), `N_` (mark a message that is
translated later, where it is shown), `ngettext`, `language`/`set_language`,
`thai_date`, `to_thai_digits`, `local_date`, `local_datetime`, and `parse_po`/`compile_po`
(the catalogue compiler setup.py uses at build time).

The language is chosen once, at the first translation: ``--lang th|en``
anywhere on the command line, else ``MAILBACKUP_LANG``, else the locale
(``LC_ALL``, ``LC_MESSAGES``, ``LANG``; on Windows the user's display
language), else English.  It must be known before the CLI's modules are
imported, because click evaluates help texts at import; so the command line
is read here, not through click.

The catalogue's source is ``locale/th/LC_MESSAGES/mailbackup.po``; the
package build compiles it to ``mailbackup.mo`` beside it.  An editable
install (``pip install -e .``) never builds, so a missing or stale ``.mo`` is
compiled from the ``.po`` in memory here, which takes a few milliseconds.

Innermost module: it imports nothing from mailbackup, so every layer may use it.
"""

from __future__ import annotations

import ast
import gettext
import io
import os
import struct
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path

DOMAIN = "mailbackup"
LANGUAGES = ("en", "th")
DEFAULT_LANGUAGE = "en"
ENV_VARIABLE = "MAILBACKUP_LANG"
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")  # POSIX precedence
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

THAI_MONTHS = ("มกราคม", "กุมภาพันธ์", "มีนาคม", "เมษายน", "พฤษภาคม", "มิถุนายน", "กรกฎาคม", "สิงหาคม", "กันยายน",
               "ตุลาคม", "พฤศจิกายน", "ธันวาคม")
BUDDHIST_ERA_OFFSET = 543
_THAI_DIGITS = str.maketrans("0123456789", "๐๑๒๓๔๕๖๗๘๙")

_lock = threading.Lock()
_chosen: str | None = None
_translations: dict[str, gettext.NullTranslations] = {}


# ---------------------------------------------------------------------------
# Choosing the language
# ---------------------------------------------------------------------------


def normalize(text: str | None) -> str | None:
    """``th``, ``th_TH.UTF-8``, ``Thai_Thailand.874`` → ``th``; ``en_US`` → ``en``;
    ``C``, ``POSIX`` and anything else → None (not a language we have)."""
    if not text:
        return None
    lowered = text.strip().lower()
    if lowered.startswith("th"):
        return "th"
    if lowered.startswith("en"):
        return "en"
    return None


def language_from_argv(argv: Sequence[str]) -> str | None:
    """The value of ``--lang X`` or ``--lang=X`` (the last one wins, as in click),
    up to a ``--`` that ends the options."""
    found: str | None = None
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--lang" and index + 1 < len(argv):
            found = argv[index + 1]
        elif arg.startswith("--lang="):
            found = arg.partition("=")[2]
    return found


def language_from_environment(environ: Mapping[str, str]) -> str | None:
    explicit = normalize(environ.get(ENV_VARIABLE))
    if explicit:
        return explicit
    for variable in LOCALE_VARIABLES:
        value = environ.get(variable)
        if value:  # the first one set decides, even when it is C or English
            return normalize(value)
    return None


def _windows_display_language() -> str | None:
    if sys.platform == "win32":
        import ctypes
        import locale

        language_id = ctypes.windll.kernel32.GetUserDefaultUILanguage()
        return normalize(locale.windows_locale.get(language_id))
    return None


def choose_language(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """The command line, then the environment, then (on Windows) the display language, then English."""
    from_argv = language_from_argv(argv)
    if from_argv is not None:
        return normalize(from_argv) or DEFAULT_LANGUAGE
    from_environment = language_from_environment(environ)
    if from_environment:
        return from_environment
    if not any(environ.get(variable) for variable in LOCALE_VARIABLES):
        return _windows_display_language() or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def language() -> str:
    """The language in use, chosen on first use from sys.argv and the environment."""
    global _chosen
    if _chosen is None:
        with _lock:
            if _chosen is None:
                _chosen = choose_language(sys.argv[1:], os.environ)
    return _chosen


def set_language(code: str) -> None:
    """Use `code` from now on (``th`` or ``en``).  Texts already evaluated,
    such as click's help, keep the language they were made in."""
    global _chosen
    chosen = normalize(code)
    if chosen is None:
        raise ValueError(f"no such language: {code!r} (expected one of {', '.join(LANGUAGES)})")
    _chosen = chosen


# ---------------------------------------------------------------------------
# Translating
# ---------------------------------------------------------------------------


def _(message: str) -> str:
    """`message` in the chosen language (itself when English or untranslated)."""
    return translations().gettext(message)


def N_(message: str) -> str:
    """Mark `message` for the catalogue without translating it now: it is
    translated with `_` where it is shown (module constants, recorded data)."""
    return message


def ngettext(singular: str, plural: str, count: int) -> str:
    return translations().ngettext(singular, plural, count)


def translations(code: str | None = None) -> gettext.NullTranslations:
    """The catalogue of `code` (default: the chosen language), loaded once."""
    code = code or language()
    with _lock:
        if code not in _translations:
            _translations[code] = _load(code)
        return _translations[code]


def catalogue_path(code: str, suffix: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}{suffix}"


def _load(code: str) -> gettext.NullTranslations:
    if code == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()  # English is the source language
    mo, po = catalogue_path(code, ".mo"), catalogue_path(code, ".po")
    if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
        return gettext.translation(DOMAIN, str(LOCALE_DIR), languages=[code])
    if po.is_file():
        return gettext.GNUTranslations(io.BytesIO(compile_po(po.read_text(encoding="utf-8"))))
    return gettext.NullTranslations()  # a broken installation still speaks English


# ---------------------------------------------------------------------------
# The catalogue compiler (.po → .mo), as GNU msgfmt does it
# ---------------------------------------------------------------------------

Catalogue = dict[str, str]  # msgid (plural forms joined by NUL) → msgstr (likewise)


class PoError(ValueError):
    """A .po file that cannot be read; the message names the line."""


def parse_po(text: str) -> Catalogue:
    """Every translated entry of a .po file.  Fuzzy and untranslated entries
    are left out, as msgfmt does; the header (msgid "") is kept."""
    catalogue: Catalogue = {}
    entry: dict[str, list[str]] = {}
    key: str | None = None
    fuzzy = False

    def finish() -> None:
        nonlocal entry, key, fuzzy
        if "msgid" in entry:
            _add_entry(catalogue, entry, fuzzy)
        entry, key, fuzzy = {}, None, False

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#~"):
            continue  # obsolete entry
        if line.startswith("#"):
            if key is not None and key != "msgid":
                finish()
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        if not line:
            continue
        keyword, _space, rest = line.partition(" ")
        if keyword.startswith('"'):
            if key is None:
                raise PoError(f"line {number}: a string outside any msgid/msgstr")
            entry[key].append(_unquote(line, number))
            continue
        if keyword not in ("msgctxt", "msgid", "msgid_plural") and not keyword.startswith("msgstr"):
            raise PoError(f"line {number}: unknown keyword {keyword!r}")
        if keyword in ("msgid", "msgctxt") and key is not None and key.startswith("msgstr"):
            finish()
        key = keyword
        entry[key] = [_unquote(rest.strip(), number)]
    finish()
    return catalogue


def _add_entry(catalogue: Catalogue, entry: dict[str, list[str]], fuzzy: bool) -> None:
    msgid = "".join(entry["msgid"])
    if "msgctxt" in entry:
        msgid = "".join(entry["msgctxt"]) + "\x04" + msgid
    if "msgid_plural" in entry:
        msgid += "\x00" + "".join(entry["msgid_plural"])
        forms = sorted((key for key in entry if key.startswith("msgstr[")), key=lambda k: int(k[7:-1]))
        msgstr = "\x00".join("".join(entry[form]) for form in forms)
        translated = all("".join(entry[form]) for form in forms) and bool(forms)
    else:
        msgstr = "".join(entry.get("msgstr", []))
        translated = bool(msgstr)
    if translated and (not fuzzy or msgid == ""):
        catalogue[msgid] = msgstr


def _unquote(text: str, number: int) -> str:
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        raise PoError(f"line {number}: expected a string in double quotes")
    try:
        value = ast.literal_eval(text)  # C escapes: \n \t \" \\ are Python's too
    except (ValueError, SyntaxError):
        raise PoError(f"line {number}: cannot read the string {text[:40]}") from None
    if not isinstance(value, str):
        raise PoError(f"line {number}: expected a string")
    return value


def mo_bytes(catalogue: Catalogue) -> bytes:
    """The GNU .mo format: header, two tables of (length, offset), then the strings."""
    keys = sorted(catalogue)  # binary search in gettext readers needs them sorted
    ids = [key.encode("utf-8") for key in keys]
    strs = [catalogue[key].encode("utf-8") for key in keys]
    count = len(keys)
    key_table = 7 * 4
    value_table = key_table + count * 8
    strings_start = value_table + count * 8
    offsets: list[int] = []
    data = io.BytesIO()
    for item in ids + strs:
        offsets += [len(item), strings_start + data.tell()]
        data.write(item + b"\0")
    header = struct.pack("<7I", 0x950412DE, 0, count, key_table, value_table, 0, 0)
    return header + struct.pack(f"<{len(offsets)}I", *offsets) + data.getvalue()


def compile_po(text: str) -> bytes:
    return mo_bytes(parse_po(text))


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------


def to_thai_digits(text: str) -> str:
    return text.translate(_THAI_DIGITS)


def thai_date(day: date, thai_digits: bool = False) -> str:
    """``30 พฤษภาคม 2559``: day, month name, year of the Buddhist era, as in
    government letters; with `thai_digits`, ``๓๐ พฤษภาคม ๒๕๕๙``."""
    text = f"{day.day} {THAI_MONTHS[day.month - 1]} {day.year + BUDDHIST_ERA_OFFSET}"
    return to_thai_digits(text) if thai_digits else text


def local_date(day: date) -> str:
    """A date for people: ISO 8601 in English, the Thai civil date in Thai."""
    return thai_date(day) if language() == "th" else day.isoformat()


def local_datetime(stamp: datetime) -> str:
    """Date and time for people, e.g. ``2026-01-31 14:05`` or ``31 มกราคม 2569 เวลา 14:05 น.``"""
    if language() == "th":
        return f"{thai_date(stamp.date())} เวลา {stamp.strftime('%H:%M')} น."
    return stamp.strftime("%Y-%m-%d %H:%M")
