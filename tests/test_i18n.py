"""The catalogue is complete and well formed, the language is chosen as
documented, and the catalogue loads both ways: the .mo the build compiles,
and the .po compiled in memory when there is none (an editable install).

Missing translations and stale entries both fail: scripts/update_catalogue.py
rewrites the .pot and the .po from the source, so keeping them in step costs
one command, and a stale entry is a message some code no longer shows."""

from __future__ import annotations

import gettext
import io
import os
import re
import shutil
import string
import subprocess
import unicodedata
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import update_catalogue  # scripts/ is put on sys.path by conftest

from mailbackup import i18n
from mailbackup.i18n import compile_po, parse_po, thai_date

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "mailbackup" / "locale" / "th" / "LC_MESSAGES" / "mailbackup.po"
POT = ROOT / "mailbackup" / "locale" / "mailbackup.pot"
THAI = re.compile("[\u0e00-\u0e7f]")


@pytest.fixture
def language() -> Iterator[None]:
    """Tests that switch the language in this process put it back."""
    before = i18n.language()
    yield
    i18n.set_language(before)


def catalogue() -> dict[str, str]:
    return {msgid: text for msgid, text in parse_po(PO.read_text(encoding="utf-8")).items() if msgid}


def placeholders(text: str) -> list[tuple[str, str | None, str | None]]:
    return sorted((name, conversion, spec) for _, name, spec, conversion in string.Formatter().parse(text)
                  if name is not None)


def width(text: str) -> int:
    return sum(0 if unicodedata.category(char) in ("Mn", "Me", "Cf") else 1 for char in text)


# ------------------------------------------------------------------ completeness
def test_every_message_in_the_source_has_a_thai_translation() -> None:
    messages, problems = update_catalogue.extract()
    assert not problems, "\n".join(problems)
    translated = catalogue()
    untranslated = [msgid for msgid in messages if not translated.get(msgid)]
    assert not untranslated, ("no Thai for these (run scripts/update_catalogue.py, then translate):\n"
                              + "\n".join(repr(msgid)[:100] for msgid in untranslated))


def test_the_catalogue_holds_no_message_the_source_dropped() -> None:
    messages, _problems = update_catalogue.extract()
    stale = sorted(set(catalogue()) - set(messages))
    assert not stale, "stale entries (run scripts/update_catalogue.py):\n" + "\n".join(map(repr, stale))


def test_the_template_is_up_to_date() -> None:
    """Same entries as the source (the order of entries may lag behind)."""
    messages, _problems = update_catalogue.extract()
    expected = update_catalogue.render(list(messages.values()), {}, {})
    assert set(POT.read_text(encoding="utf-8").split("\n\n")) == set(expected.split("\n\n")), \
        "run scripts/update_catalogue.py"


def test_translations_keep_every_placeholder() -> None:
    # A message with a plural (ngettext) is "singular\0plural": Thai's one form says what the plural says.
    wrong = [(msgid, text) for msgid, text in catalogue().items()
             if "%(" not in msgid and placeholders(msgid.split("\x00")[-1]) != placeholders(text)]
    assert not wrong, wrong
    for msgid, text in catalogue().items():
        if "%(" in msgid:  # click's own %-formatted message
            assert re.findall(r"%\(\w+\)s", msgid) == re.findall(r"%\(\w+\)s", text)


def test_thai_text_wraps_in_a_help_column() -> None:
    """click wraps help at spaces: a Thai phrase without one longer than a
    column would be cut mid-word, so translations put spaces between phrases."""
    long_runs = [run for text in catalogue().values() for run in text.split()
                 if THAI.search(run) and width(run) > 36]
    assert not long_runs, long_runs


def test_gnu_msgfmt_accepts_the_catalogue_and_agrees_with_ours(tmp_path: Path) -> None:
    if shutil.which("msgfmt") is None:
        pytest.skip("GNU gettext's msgfmt is not installed (apt-get install gettext)")
    gnu = tmp_path / "gnu.mo"
    done = subprocess.run(["msgfmt", "--check", "-o", str(gnu), str(PO)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr  # also checks python-brace-format placeholders
    theirs = gettext.GNUTranslations(io.BytesIO(gnu.read_bytes()))
    ours = gettext.GNUTranslations(io.BytesIO(compile_po(PO.read_text(encoding="utf-8"))))
    assert ours._catalog == theirs._catalog  # type: ignore[attr-defined]


def test_compiler_reads_the_po_format() -> None:
    text = '\n'.join([
        'msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"',
        '"Plural-Forms: nplurals=1; plural=0;\\n"', "",
        "#: a.py:1", 'msgid "one\\n"', '"two \\"quoted\\""', 'msgstr "หนึ่ง\\n"', '"สอง"', "",
        "#, fuzzy", 'msgid "fuzzy"', 'msgstr "ไม่แน่ใจ"', "",
        'msgid "empty"', 'msgstr ""', "",
        'msgctxt "menu"', 'msgid "File"', 'msgstr "แฟ้ม"', "",
        'msgid "{count} file"', 'msgid_plural "{count} files"', 'msgstr[0] "{count} ไฟล์"', "",
        '#~ msgid "gone"', '#~ msgstr "หายไป"',
    ])
    translations = gettext.GNUTranslations(io.BytesIO(compile_po(text)))
    assert translations.gettext('one\ntwo "quoted"') == "หนึ่ง\nสอง"
    assert translations.gettext("fuzzy") == "fuzzy" and translations.gettext("empty") == "empty"
    assert translations.pgettext("menu", "File") == "แฟ้ม"
    assert translations.ngettext("{count} file", "{count} files", 5) == "{count} ไฟล์"
    assert translations.gettext("gone") == "gone"
    with pytest.raises(i18n.PoError, match="line 1"):
        parse_po('bogus "x"')


# ------------------------------------------------------------------ loading
def test_without_a_built_catalogue_the_po_is_compiled_in_memory(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install (scripts/setup.sh) has only the .po."""
    locale = tmp_path / "locale" / "th" / "LC_MESSAGES"
    locale.mkdir(parents=True)
    shutil.copy(PO, locale / "mailbackup.po")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    loaded = i18n._load("th")
    assert type(loaded) is gettext.GNUTranslations
    assert loaded.gettext("Remember the password on this computer?") == "จดจำรหัสผ่านไว้ในเครื่องนี้หรือไม่?"

    marked = "X" * len("จดจำ".encode())  # as many bytes: a .mo we can tell apart, offsets unchanged
    (locale / "mailbackup.mo").write_bytes(compile_po(PO.read_text(encoding="utf-8")).replace(
        "จดจำ".encode(), marked.encode()))
    assert i18n._load("th").gettext("Remember the password on this computer?").startswith(marked)
    stale = (locale / "mailbackup.po").stat().st_mtime - 60
    os.utime(locale / "mailbackup.mo", (stale, stale))  # a .mo older than its .po is not trusted
    assert i18n._load("th").gettext("Remember the password on this computer?").startswith("จดจำรหัสผ่าน")
    (locale / "mailbackup.po").unlink()
    (locale / "mailbackup.mo").unlink()
    assert i18n._load("th").gettext("Remember the password on this computer?") == \
        "Remember the password on this computer?"  # broken install: English, not a crash


# ------------------------------------------------------------------ choosing the language
@pytest.mark.parametrize(("argv", "environ", "expected"), [
    (["backup", "x", "--lang", "th"], {}, "th"),
    (["--lang=th", "backup"], {"LANG": "en_US.UTF-8"}, "th"),
    (["--lang", "en", "backup"], {"LANG": "th_TH.UTF-8"}, "en"),
    (["--lang", "th", "--lang", "en"], {}, "en"),  # the last one wins, as in click
    (["backup", "--", "--lang", "th"], {}, "en"),
    ([], {"LANG": "th_TH.UTF-8"}, "th"),
    ([], {"LC_ALL": "C.UTF-8", "LANG": "th_TH.UTF-8"}, "en"),  # LC_ALL wins over LANG
    ([], {"LC_MESSAGES": "th_TH.UTF-8", "LANG": "en_US.UTF-8"}, "th"),
    ([], {"MAILBACKUP_LANG": "th", "LC_ALL": "C"}, "th"),
    ([], {"LANG": "C"}, "en"),
    ([], {"LANG": "de_DE.UTF-8"}, "en"),
])
def test_language_choice(argv: list[str], environ: dict[str, str], expected: str) -> None:
    assert i18n.choose_language(argv, environ) == expected


def test_set_language_refuses_what_there_is_no_catalogue_for(language: None) -> None:
    with pytest.raises(ValueError, match="no such language"):
        i18n.set_language("fr")
    i18n.set_language("th_TH.UTF-8")
    assert i18n.language() == "th" and i18n._("Folder") == "โฟลเดอร์"


# ------------------------------------------------------------------ dates
def test_thai_dates_are_in_the_buddhist_era_as_in_the_circulars() -> None:
    assert thai_date(date(2016, 5, 30)) == "30 พฤษภาคม 2559"
    assert thai_date(date(2016, 5, 30), thai_digits=True) == "๓๐ พฤษภาคม ๒๕๕๙"
    assert thai_date(date(2012, 1, 31)) == "31 มกราคม 2555"


def test_local_dates_follow_the_language(language: None) -> None:
    stamp = datetime(2026, 1, 31, 14, 5, tzinfo=timezone(timedelta(hours=7)))
    i18n.set_language("en")
    assert (i18n.local_date(stamp.date()), i18n.local_datetime(stamp)) == ("2026-01-31", "2026-01-31 14:05")
    i18n.set_language("th")
    assert i18n.local_date(stamp.date()) == "31 มกราคม 2569"
    assert i18n.local_datetime(stamp) == "31 มกราคม 2569 เวลา 14:05 น."


# ------------------------------------------------------------------ reports
def test_thai_reports_are_thai_and_the_json_stays_neutral(language: None) -> None:
    from test_report import incomplete_result

    from mailbackup.verify.report import verify_csv, verify_html, verify_to_dict

    result = incomplete_result()
    i18n.set_language("en")
    english_page = verify_html(result, as_of=date(2026, 1, 5)).decode("utf-8")
    english_json = verify_to_dict(result, date(2026, 1, 5))
    i18n.set_language("th")
    page = verify_html(result, as_of=date(2026, 1, 5)).decode("utf-8")
    assert "รายงานผลการตรวจสอบการสำรองข้อมูลอีเมล" in page and "ข้อมูลเสียหาย" in page
    assert "CORRUPT" not in page and "Mail backup verification report" not in page
    assert "31 ธันวาคม 2568" in page and "เลยกำหนดแล้ว" in page  # the deadline, in the Buddhist era
    assert "ข้อมูลเสียหาย / CORRUPT" in english_page and "2025-12-31 (31 ธ.ค. 2568)" in english_page
    rows = verify_csv(result).decode("utf-8-sig").splitlines()
    assert rows[0].startswith("โฟลเดอร์,สถานะ,บนเซิร์ฟเวอร์") and ",ข้อมูลเสียหาย," in rows[2]
    thai_json = verify_to_dict(result, date(2026, 1, 5))
    assert {key: thai_json[key] for key in ("status", "deadline", "generated_at", "mode")} == \
        {key: english_json[key] for key in ("status", "deadline", "generated_at", "mode")}
    assert thai_json["deadline"] == "2025-12-31"


def _streams() -> tuple[Any, Any, Any]:
    return tuple(io.TextIOWrapper(io.BytesIO(), encoding="cp874", errors="strict") for _ in range(3))  # type: ignore


def test_windows_console_becomes_utf8() -> None:
    from mailbackup.cli import utf8_console

    stdin, stdout, stderr = _streams()
    utf8_console((stdin, stdout, stderr), platform="linux")
    assert stdout.encoding == "cp874"  # elsewhere the locale decides
    utf8_console((stdin, stdout, stderr), platform="win32")
    assert (stdin.encoding, stdout.encoding, stderr.encoding) == ("utf-8", "utf-8", "utf-8")
    stdout.write("สำรองข้อมูลแล้ว → ✓\n")  # cp874 has no arrow or tick: would have raised
    stdout.flush()
    assert stdout.buffer.getvalue().decode("utf-8") == "สำรองข้อมูลแล้ว → ✓\n"
