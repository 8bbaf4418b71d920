"""What the verification reports and the summary across accounts share:
their words in Thai and English, dates in the Thai style, the HTML page and
its pieces, and CSV that Excel on Thai Windows reads and cannot run.

Text from mail (subjects, folder names) is hostile input: `escape` it in
HTML; `csv_bytes` defuses spreadsheet formulas.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable
from datetime import date, datetime
from string import Template
from typing import Any

from mailbackup import __version__, i18n
from mailbackup.i18n import N_, _
from mailbackup.verify.results import Mode, Staff, Status

SCHEMA_VERSION = 1
NEVER_VERIFIED = "never_verified"


def deadline_status(deadline: date | None, status: str, as_of: date) -> tuple[int | None, bool]:
    """(days left, overdue): overdue once the deadline has passed and the
    account is not complete.  The deadline day itself still counts."""
    if deadline is None:
        return None, False
    days_left = (deadline - as_of).days
    return days_left, days_left < 0 and status != Status.COMPLETE


def json_bytes(data: dict[str, Any]) -> bytes:
    # A lone surrogate from a broken header must not stop the report.
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8", "replace")


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


# Thai CSV files get Thai column names and status words (Excel users read
# them); English ones keep the names above, which scripts may rely on.
CSV_HEADINGS = {
    "folder": N_("Folder"), "status": N_("Status"), "server_messages": N_("On server"),
    "local_messages": N_("In archive"), "ok": N_("Undamaged"), "missing": N_("Missing"), "corrupt": N_("Corrupt"),
    "size_mismatch": N_("Size mismatch"), "only_local": N_("Only in archive"), "bytes": N_("Size (bytes)"),
    "stray_files": N_("Stray files"), "error": N_("Error"), "account": N_("Account"), "server": N_("Server"),
    "generated_at": N_("Verified at"), "mode": N_("Mode"), "tool_version": N_("Tool version"),
    "deadline": N_("Deadline"), "overdue": N_("Overdue"), "days_left": N_("Days left"), "messages": N_("Messages"),
    "last_backup": N_("Last good backup"), "verified_at": N_("Last verified"), "archive": N_("Archive"),
    "intact": N_("Found intact"), "title": N_("Title"), "name": N_("Name"), "surname": N_("Surname"),
    "position": N_("Position"), "unit": N_("Unit"), "reason": N_("Why"),
}


def csv_header(columns: Iterable[str]) -> list[str]:
    return [_(CSV_HEADINGS.get(column, column)) if thai_report() else column for column in columns]


def csv_word(value: str) -> str:
    """A status or mode as a Thai CSV shows it; English CSVs keep the value."""
    if not thai_report():
        return value
    return status_label(value) if value in STATUS_WORDS else mode_label(value)


def csv_bytes(header: Iterable[str], rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode("utf-8-sig", "replace")


def _cell(value: object) -> object:
    """Spreadsheets run a cell starting with = + - @ as a formula; a folder
    name or error text from a server must stay text (OWASP CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def blank(value: int | None) -> object:
    return "" if value is None else value


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------


PAGE = Template("""<!DOCTYPE html>
<html lang="th">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="mailbackup $version">
<title>$title</title>
<style>
body { font-family: "Noto Sans Thai", "Noto Sans", "Tahoma", "Leelawadee UI", "Leelawadee", "Garuda",
       "Loma", "Sarabun", sans-serif; margin: 1.5em 2em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0 0 .4em; } h1 small { display: block; font-size: .6em; color: #555; }
h2 { font-size: 1.25em; margin: 1.4em 0 .4em; border-bottom: 2px solid #ccc; }
h3 { font-size: 1.05em; margin: 1em 0 .3em; }
.status { font-size: 2.2em; font-weight: bold; color: #fff; padding: .35em .8em; border-radius: 8px;
          margin: .4em 0; }
.status small { display: block; font-size: .45em; font-weight: normal; }
.good { background: #1e7b34; } .bad { background: #b3261e; }
.overdue { font-weight: bold; color: #b3261e; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .2em 1.2em; margin: .6em 0; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; font-size: .95em; }
th, td { border: 1px solid #b8b8b8; padding: .25em .5em; text-align: left; vertical-align: top; }
td { overflow-wrap: anywhere; } /* a long folder name or address wraps inside its column */
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.num, td.s-complete, td.s-bad { overflow-wrap: normal; } td.name { width: 28%; } td.deadline { min-width: 7em; }
dl.facts dd { overflow-wrap: anywhere; }
td.s-complete { color: #1e7b34; font-weight: bold; } td.s-bad { color: #b3261e; font-weight: bold; }
.why { font-weight: normal; color: #1b1b1b; font-size: .9em; min-width: 8em; }
.subject { word-break: break-word; } .mid { font-size: .85em; color: #555; word-break: break-all; }
ul.issues li { margin: .15em 0; overflow-wrap: anywhere; } footer { margin-top: 2em; font-size: .85em; color: #555; }
section.signature { margin-top: 2.5em; break-inside: avoid; page-break-inside: avoid; }
section.signature dl { display: grid; grid-template-columns: max-content 1fr; gap: 1.6em 1em; max-width: 34em; }
section.signature dt { font-weight: bold; } section.signature dd { margin: 0; border-bottom: 1px dotted #333; }
@page { size: A4; margin: 15mm 12mm 15mm 12mm; }
@media print {
  body { margin: 0; font-size: 10pt; }
  .status, td.s-complete, td.s-bad, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  table { width: 100%; table-layout: auto; font-size: 9pt; }
  thead { display: table-header-group; } tfoot { display: table-footer-group; }
  tr, td, th { break-inside: avoid; page-break-inside: avoid; }
}
</style>
</head>
<body>
$body
<footer>mailbackup $version</footer>
</body>
</html>
""")

# The words of a status; the catalogue gives the Thai ones.
STATUS_WORDS = {
    "complete": N_("COMPLETE"),
    "incomplete": N_("INCOMPLETE"),
    "corrupt": N_("CORRUPT"),
    "failed": N_("FAILED"),
    "inconclusive": N_("INCONCLUSIVE"),
    NEVER_VERIFIED: N_("NEVER VERIFIED"),
}
STATUS_EXPLAINED = {
    "complete": N_("Every message on the server is in the archive and its copy is undamaged."),
    "incomplete": N_("Some messages are not (yet) in the archive: run the backup again, then verify."),
    "corrupt": N_("Archived copies are damaged: keep this archive, run the backup into a new --dest and verify it."),
    "failed": N_("The server could not be reached, so nothing could be proven."),
    "inconclusive": N_("The server's answers on what a folder holds contradicted each other, so nothing could be "
                       "proven: keep the archive, report the numbers to the mail administrator, verify again."),
}
MODE_WORDS = {Mode.ONLINE.value: N_("online"), Mode.OFFLINE.value: N_("offline")}
THAI_MONTHS = ("ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค.")


def status_label(status: str) -> str:
    """COMPLETE, CORRUPT, ... in the chosen language (for the command line)."""
    word = STATUS_WORDS.get(status)
    return _(word) if word else status.upper()


def mode_label(mode: str) -> str:
    word = MODE_WORDS.get(mode)
    return _(word) if word else mode


def thai_report() -> bool:
    return i18n.language() == "th"


def label(msgid: str, **values: object) -> str:
    """A report's words.  Thai reports are in Thai; English ones keep the Thai
    beside the English ("ครบถ้วน / COMPLETE"), for they are handed in to a
    Thai office.  The Thai always comes from the catalogue."""
    thai = i18n.translations("th").gettext(msgid).format(**values)
    english = msgid.format(**values)
    if thai_report():
        return thai
    return english if thai == english else f"{thai} / {english}"


def heading(msgid: str, subject: str = "") -> str:
    """A page's h1 in Thai (and English under it), `subject` (a unit's name) after it."""
    thai = i18n.translations("th").gettext(msgid)
    after = f": {escape(subject)}" if subject else ""
    if thai_report():
        return f"<h1>{escape(thai)}{after}</h1>"
    return f"<h1>{escape(thai)}{after}<small>{escape(msgid)}</small></h1>"


def both(msgid: str) -> str:
    """Thai and English whatever the report's language: a form's printed
    words, which the Thai office and an English reader both fill in."""
    thai = i18n.translations("th").gettext(msgid)
    return msgid if thai == msgid else f"{thai} / {msgid}"


STAFF_LABELS = (("name", N_("Staff member")), ("position", N_("Position")), ("unit", N_("Unit")))


def staff_facts(staff: Staff) -> list[tuple[str, str]]:
    """(label, escaped HTML) rows of a report's facts for the staff details it has."""
    values = {"name": staff.full_name, "position": staff.position or "", "unit": staff.unit or ""}
    return [(label(msgid), escape(values[key])) for key, msgid in STAFF_LABELS if values[key]]


def signature_block() -> str:
    """Where the checking officer signs a printed report: name, signature, date."""
    rows = "".join(f"<dt>{escape(both(msgid))}</dt><dd>&nbsp;</dd>" for msgid in (
        N_("Checking officer's name"), N_("Position"), N_("Signature"), N_("Date")))
    return (f'<section class="signature" id="signature"><h2>{escape(both(N_("Checked by")))}</h2>'
            f"<dl>{rows}</dl></section>")


def escape(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str) -> bytes:
    text = PAGE.substitute(title=escape(title), body=body, version=escape(__version__))
    return text.encode("utf-8", "replace")


def bilingual_status(status: str) -> str:
    word = STATUS_WORDS.get(status)
    return label(word) if word else status.upper()


def status_cell(status: str, details: str = "") -> str:
    """A status word, coloured; `details` (escaped HTML) under it."""
    css = "s-complete" if status == Status.COMPLETE else "s-bad"
    return f'<td class="{css}">{escape(bilingual_status(status))}{details}</td>'


def report_date(day: date) -> str:
    """Thai reports: 31 มกราคม 2569, the Thai civil date in the Buddhist era.
    English ones: 2026-01-31 (31 ม.ค. 2569), ISO, then the Thai date."""
    if thai_report():
        return i18n.thai_date(day)
    return f"{day.isoformat()} ({day.day} {THAI_MONTHS[day.month - 1]} {day.year + i18n.BUDDHIST_ERA_OFFSET})"


def report_time(stamp: datetime) -> str:
    zone = f"UTC{stamp.strftime('%z')[:3]}"
    if thai_report():
        return f"{i18n.local_datetime(stamp)} ({zone})"
    return f"{report_date(stamp.date())} {stamp.strftime('%H:%M')} ({zone})"


def deadline_text(deadline: date | None, days_left: int | None, overdue: bool) -> str:
    if deadline is None or days_left is None:
        return "-"
    if days_left > 0:
        left = label(N_("{days} days left"), days=days_left)
    elif days_left == 0:
        left = label(N_("due today"))
    else:
        left = label(N_("{days} days past"), days=-days_left)
    flag = f' <span class="overdue">{escape(label(N_("OVERDUE")))}</span>' if overdue else ""
    return f"{escape(report_date(deadline))}, {escape(left)}{flag}"


def size_text(count: int | None) -> str:
    if count is None:
        return "-"
    value, unit = float(count), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def num_cell(value: object) -> str:
    return f'<td class="num">{escape("-" if value is None else value)}</td>'


def table(header: Iterable[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def entry_date(text: str | None, *, local: bool = False) -> str:
    """An ISO time as the report shows it; `local`: in this machine's time zone
    (our own runs' times, recorded in UTC), else as written (a message's date)."""
    if not text:
        return "-"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return text
    if local and stamp.tzinfo is not None:
        stamp = stamp.astimezone()
    return i18n.local_datetime(stamp) if thai_report() else stamp.strftime("%Y-%m-%d %H:%M")
