"""Reports an officer can hand in, written from verify.py's dataclasses.

Per account, into the archive's ``reports/`` (and any extra directory):

* ``verify.json``: the record (schema: docs/verify.schema.json).  It is also
  the archive's memory of the last verification: `load_verify` reads it back
  so `mailbackup report` can regenerate everything;
* ``verify.csv``: one row per folder, UTF-8 with BOM so Excel on Thai
  Windows shows Thai folder names;
* ``verify.html``: one self-contained page (no network, inline CSS).

Across all accounts of an archive root: ``summary.json``, ``summary.csv`` and
``summary.html`` (schema: docs/summary.schema.json).  See docs/reports.md.

Every file is written to a temporary name and renamed, mode 0600.  Text from
mail (subjects, folder names) is hostile input: escaped in HTML, defused
against spreadsheet formulas in CSV.  No password ever reaches this module.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from string import Template
from typing import Any

from mailbackup import __version__, i18n
from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import StorageError
from mailbackup.i18n import N_, _
from mailbackup.state.db import STATE_FILE, StateDB
from mailbackup.store.files import atomic_write
from mailbackup.verify.check import FolderReport, MessageEntry, Mode, Status, VerifyResult

SCHEMA_VERSION = 1
VERIFY_NAMES = ("verify.json", "verify.csv", "verify.html")
SUMMARY_NAMES = ("summary.json", "summary.csv", "summary.html")
NEVER_VERIFIED = "never_verified"
SUMMARY_DIR = "reports"  # under the archive root, beside the account directories
HTML_LIST_LIMIT = 1000  # messages listed per folder and kind in HTML; the JSON has all
SUCCESSFUL_BACKUP = ("ok", "warnings")


def deadline_status(deadline: date | None, status: str, as_of: date) -> tuple[int | None, bool]:
    """(days left, overdue): overdue once the deadline has passed and the
    account is not complete.  The deadline day itself still counts."""
    if deadline is None:
        return None, False
    days_left = (deadline - as_of).days
    return days_left, days_left < 0 and status != Status.COMPLETE


# ---------------------------------------------------------------------------
# verify.json
# ---------------------------------------------------------------------------


def verify_to_dict(result: VerifyResult, as_of: date) -> dict[str, Any]:
    days_left, overdue = deadline_status(result.deadline, result.status, as_of)
    return {
        "schema_version": SCHEMA_VERSION,
        "account": result.account,
        "server": result.server,
        "generated_at": result.generated_at.isoformat(timespec="seconds"),
        "tool_version": result.tool_version,
        "mode": result.mode.value,
        "status": result.status.value,
        "error": result.error,
        "deadline": result.deadline.isoformat() if result.deadline else None,
        "as_of": as_of.isoformat(),
        "days_left": days_left,
        "overdue": overdue,
        "seconds": round(result.seconds, 3),
        "totals": asdict(result.totals),
        "folders": [_folder_to_dict(folder) for folder in result.folders],
    }


def _folder_to_dict(folder: FolderReport) -> dict[str, Any]:
    return {
        "name": folder.name,
        "status": folder.status.value,
        "server_messages": folder.server_messages,
        "local_messages": folder.local_messages,
        "ok": folder.ok,
        "missing": [asdict(entry) for entry in folder.missing],
        "corrupt": [asdict(entry) for entry in folder.corrupt],
        "size_mismatch": [asdict(entry) for entry in folder.size_mismatch],
        "only_local": len(folder.only_local),
        "only_local_messages": [asdict(entry) for entry in folder.only_local],
        "bytes": folder.bytes,
        "checked": folder.checked,
        "bytes_checked": folder.bytes_checked,
        "skipped_recent": folder.skipped_recent,
        "problems": folder.problems,
        "stray_files": folder.stray_files,
        "warnings": folder.warnings,
        "notes": folder.notes,
        "error": folder.error,
    }


def verify_from_dict(data: dict[str, Any]) -> VerifyResult:
    """The inverse of `verify_to_dict` (derived fields are recomputed)."""
    return VerifyResult(
        account=data["account"], server=data["server"], mode=Mode(data["mode"]),
        generated_at=datetime.fromisoformat(data["generated_at"]),
        folders=[_folder_from_dict(item) for item in data["folders"]],
        deadline=date.fromisoformat(data["deadline"]) if data.get("deadline") else None,
        tool_version=data["tool_version"], error=data.get("error"), seconds=float(data.get("seconds", 0.0)),
    )


def _folder_from_dict(data: dict[str, Any]) -> FolderReport:
    def entries(key: str) -> list[MessageEntry]:
        return [MessageEntry(**item) for item in data.get(key, [])]

    return FolderReport(
        name=data["name"], status=Status(data["status"]), server_messages=data["server_messages"],
        local_messages=data["local_messages"], ok=data.get("ok", 0), missing=entries("missing"),
        corrupt=entries("corrupt"), size_mismatch=entries("size_mismatch"),
        only_local=entries("only_local_messages"), bytes=data.get("bytes", 0), checked=data.get("checked", 0),
        bytes_checked=data.get("bytes_checked", 0), skipped_recent=data.get("skipped_recent", 0),
        problems=list(data.get("problems", [])), stray_files=list(data.get("stray_files", [])),
        warnings=list(data.get("warnings", [])), notes=list(data.get("notes", [])), error=data.get("error"),
    )


def load_verify(path: Path) -> VerifyResult:
    """The last verification kept in an archive's reports directory."""
    try:
        return verify_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise StorageError(_("cannot read {path}: {error}").format(path=path, error=exc.strerror or exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(_("{path} is not a verification report mailbackup can read: {error}").format(
            path=path, error=exc), hint=_("run `mailbackup verify` again to write a new one")) from None


def _json_bytes(data: dict[str, Any]) -> bytes:
    # A lone surrogate from a broken header must not stop the report.
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8", "replace")


# ---------------------------------------------------------------------------
# verify.csv
# ---------------------------------------------------------------------------

VERIFY_CSV_COLUMNS = (
    "folder", "status", "server_messages", "local_messages", "ok", "missing", "corrupt", "size_mismatch",
    "only_local", "bytes", "stray_files", "error", "account", "server", "generated_at", "mode", "tool_version",
    "deadline",
)


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
}


def _csv_header(columns: Iterable[str]) -> list[str]:
    return [_(CSV_HEADINGS.get(column, column)) if _thai_report() else column for column in columns]


def _csv_word(value: str) -> str:
    """A status or mode as a Thai CSV shows it; English CSVs keep the value."""
    if not _thai_report():
        return value
    return status_label(value) if value in STATUS_WORDS else mode_label(value)


def verify_csv(result: VerifyResult) -> bytes:
    stamp = [result.account, result.server, result.generated_at.isoformat(timespec="seconds"),
             _csv_word(result.mode.value), result.tool_version, result.deadline.isoformat() if result.deadline else ""]
    rows = [[folder.name, _csv_word(folder.status.value), _blank(folder.server_messages), folder.local_messages,
             folder.ok, len(folder.missing), len(folder.corrupt), len(folder.size_mismatch), len(folder.only_local),
             folder.bytes, len(folder.stray_files), folder.error or "", *stamp] for folder in result.folders]
    if result.error:  # no folders were read: one row still says so
        rows.append(["", _csv_word(result.status.value), "", "", "", "", "", "", "", "", "", result.error, *stamp])
    return _csv_bytes(_csv_header(VERIFY_CSV_COLUMNS), rows)


def _csv_bytes(header: Iterable[str], rows: Iterable[Iterable[object]]) -> bytes:
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


def _blank(value: int | None) -> object:
    return "" if value is None else value


# ---------------------------------------------------------------------------
# HTML, shared pieces
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
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.s-complete { color: #1e7b34; font-weight: bold; } td.s-bad { color: #b3261e; font-weight: bold; }
.subject { word-break: break-word; } .mid { font-size: .85em; color: #555; word-break: break-all; }
ul.issues li { margin: .15em 0; } footer { margin-top: 2em; font-size: .85em; color: #555; }
@media print { body { margin: 0; } .status, td.s-complete, td.s-bad {
  -webkit-print-color-adjust: exact; print-color-adjust: exact; } h2 { break-after: avoid; }
  tr { break-inside: avoid; } }
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
    NEVER_VERIFIED: N_("NEVER VERIFIED"),
}
STATUS_EXPLAINED = {
    "complete": N_("Every message on the server is in the archive and its copy is undamaged."),
    "incomplete": N_("Some messages are not (yet) in the archive: run the backup again, then verify."),
    "corrupt": N_("Archived copies are damaged: keep this archive, run the backup into a new --dest and verify it."),
    "failed": N_("The server could not be reached, so nothing could be proven."),
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


def _thai_report() -> bool:
    return i18n.language() == "th"


def _label(msgid: str, **values: object) -> str:
    """A report's words.  Thai reports are in Thai; English ones keep the Thai
    beside the English ("ครบถ้วน / COMPLETE"), for they are handed in to a
    Thai office.  The Thai always comes from the catalogue."""
    thai = i18n.translations("th").gettext(msgid).format(**values)
    english = msgid.format(**values)
    if _thai_report():
        return thai
    return english if thai == english else f"{thai} / {english}"


def _heading(msgid: str) -> str:
    thai = i18n.translations("th").gettext(msgid)
    return f"<h1>{_e(thai)}</h1>" if _thai_report() else f"<h1>{_e(thai)}<small>{_e(msgid)}</small></h1>"


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str) -> bytes:
    text = PAGE.substitute(title=_e(title), body=body, version=_e(__version__))
    return text.encode("utf-8", "replace")


def _status_label(status: str) -> str:
    word = STATUS_WORDS.get(status)
    return _label(word) if word else status.upper()


def _status_cell(status: str) -> str:
    css = "s-complete" if status == Status.COMPLETE else "s-bad"
    return f'<td class="{css}">{_e(_status_label(status))}</td>'


def _thai_date(day: date) -> str:
    """Thai reports: 31 มกราคม 2569, the Thai civil date in the Buddhist era.
    English ones: 2026-01-31 (31 ม.ค. 2569), ISO, then the Thai date."""
    if _thai_report():
        return i18n.thai_date(day)
    return f"{day.isoformat()} ({day.day} {THAI_MONTHS[day.month - 1]} {day.year + i18n.BUDDHIST_ERA_OFFSET})"


def _when(stamp: datetime) -> str:
    zone = f"UTC{stamp.strftime('%z')[:3]}"
    if _thai_report():
        return f"{i18n.local_datetime(stamp)} ({zone})"
    return f"{_thai_date(stamp.date())} {stamp.strftime('%H:%M')} ({zone})"


def _deadline_text(deadline: date | None, days_left: int | None, overdue: bool) -> str:
    if deadline is None or days_left is None:
        return "-"
    if days_left > 0:
        left = _label(N_("{days} days left"), days=days_left)
    elif days_left == 0:
        left = _label(N_("due today"))
    else:
        left = _label(N_("{days} days past"), days=-days_left)
    flag = f' <span class="overdue">{_e(_label(N_("OVERDUE")))}</span>' if overdue else ""
    return f"{_e(_thai_date(deadline))}, {_e(left)}{flag}"


def _size(count: int | None) -> str:
    if count is None:
        return "-"
    value, unit = float(count), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def _num(value: object) -> str:
    return f'<td class="num">{_e("-" if value is None else value)}</td>'


def _table(header: Iterable[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{_e(name)}</th>" for name in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---------------------------------------------------------------------------
# verify.html
# ---------------------------------------------------------------------------


def verify_html(result: VerifyResult, as_of: date) -> bytes:
    status = result.status.value
    days_left, overdue = deadline_status(result.deadline, status, as_of)
    totals = result.totals
    mode = (_label(N_("server compared with archive")) if result.mode is Mode.ONLINE
            else _label(N_("archive checked on its own (offline)")))
    facts = [
        (_label(N_("Account")), _e(result.account)),
        (_label(N_("Server")), _e(result.server)),
        (_label(N_("Verified at")), _e(_when(result.generated_at))),
        (_label(N_("Mode")), _e(mode)),
        (_label(N_("Deadline")), _deadline_text(result.deadline, days_left, overdue)),
        (_label(N_("Tool version")), _e(f"mailbackup {result.tool_version}")),
    ]
    explained = STATUS_EXPLAINED.get(status)
    parts = [
        "<header>" + _heading(N_("Mail backup verification report")),
        f'<div class="status {"good" if status == Status.COMPLETE else "bad"}" id="status">'
        f"{_e(_status_label(status))}<small>{_e(_(explained) if explained else '')}</small></div>",
        '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl></header>",
    ]
    if result.error:
        parts.append(f"<h2>{_e(_label(N_('Error')))}</h2><p>{_e(result.error)}</p>")
    parts.append(f"<h2>{_e(_label(N_('Totals')))}</h2>" + _table(
        [_label(N_("On server")), _label(N_("In archive")), _label(N_("Missing")), _label(N_("Corrupt")),
         _label(N_("Size mismatch")), _label(N_("Only in archive")), _label(N_("Size"))],
        ["<tr>" + "".join(_num(value) for value in (
            totals.server_messages, totals.local_messages, totals.missing, totals.corrupt, totals.size_mismatch,
            totals.only_local)) + _num(_size(totals.bytes)) + "</tr>"]))
    if result.folders:
        parts.append(f"<h2>{_e(_label(N_('Folders')))}</h2>" + _folder_table(result.folders))
    parts.extend(_message_sections(result.folders))
    parts.append(_issue_section(result.folders))
    title = f"{_status_label(status)}: {result.account}"
    return _page(title, "\n".join(part for part in parts if part))


def _folder_table(folders: list[FolderReport]) -> str:
    rows = [
        f"<tr><td>{_e(folder.name)}</td>{_status_cell(folder.status.value)}"
        + "".join(_num(value) for value in (folder.server_messages, folder.local_messages, len(folder.missing),
                                             len(folder.corrupt), len(folder.size_mismatch),
                                             len(folder.only_local)))
        + _num(_size(folder.bytes)) + "</tr>"
        for folder in folders
    ]
    return _table([_label(N_("Folder")), _label(N_("Status")), _label(N_("On server")), _label(N_("In archive")),
                   _label(N_("Missing")), _label(N_("Corrupt")), _label(N_("Size mismatch")),
                   _label(N_("Only in archive")), _label(N_("Size"))], rows)


MESSAGE_KINDS = (
    ("missing", N_("Missing messages")),
    ("corrupt", N_("Corrupt messages")),
    ("size_mismatch", N_("Size differs from the server")),
    ("only_local", N_("Only in the archive (gone from the server)")),
)


def _message_sections(folders: list[FolderReport]) -> Iterator[str]:
    for kind, heading in MESSAGE_KINDS:
        listed = [(folder, getattr(folder, kind)) for folder in folders if getattr(folder, kind)]
        if not listed:
            continue
        yield f'<h2 id="{kind}">{_e(_label(heading))}</h2>'
        for folder, entries in listed:
            yield f"<h3>{_e(folder.name)} ({len(entries)})</h3>" + _message_table(entries)


def _message_table(entries: list[MessageEntry]) -> str:
    rows = []
    for entry in entries[:HTML_LIST_LIMIT]:
        subject = _e(entry.subject) if entry.subject else f"<i>({_e(_label(N_('no subject')))})</i>"
        message_id = f'<div class="mid">{_e(entry.message_id)}</div>' if entry.message_id else ""
        size = _size(entry.size) + (f" / {_size(entry.local_size)}" if entry.local_size is not None else "")
        rows.append(f"<tr>{_num(entry.uid)}<td>{_e(_entry_date(entry.date))}</td>"
                    f'<td class="subject">{subject}{message_id}</td>{_num(size)}<td>{_e(entry.reason or "")}</td></tr>')
    more = len(entries) - HTML_LIST_LIMIT
    if more > 0:
        rows.append(f'<tr><td colspan="5">{_e(_("… {count} more in verify.json").format(count=more))}</td></tr>')
    return _table(["UID", _label(N_("Date")), _label(N_("Subject")), _label(N_("Size")), _label(N_("Reason"))], rows)


def _entry_date(text: str | None) -> str:
    if not text:
        return "-"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return text
    return i18n.local_datetime(stamp) if _thai_report() else stamp.strftime("%Y-%m-%d %H:%M")


def _issue_section(folders: list[FolderReport]) -> str:
    items: list[str] = []
    for folder in folders:
        lines = [f"{_label(N_('damage'))}: {text}" for text in folder.problems]
        if folder.error:
            lines.append(f"{_label(N_('error'))}: {folder.error}")
        lines += [f"{_label(N_('stray file'))}: {name}" for name in folder.stray_files]
        lines += [f"{_label(N_('warning'))}: {text}" for text in folder.warnings]
        lines += [f"{_label(N_('note'))}: {text}" for text in folder.notes]
        items += [f"<li><b>{_e(folder.name)}</b>: {_e(line)}</li>" for line in lines]
    if not items:
        return ""
    return f'<h2>{_e(_label(N_("Problems and notes")))}</h2><ul class="issues">' + "".join(items) + "</ul>"


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def write_verify_reports(result: VerifyResult, directories: Iterable[Path], as_of: date) -> list[Path]:
    """verify.json, verify.csv and verify.html into each directory."""
    contents = (_json_bytes(verify_to_dict(result, as_of)), verify_csv(result), verify_html(result, as_of))
    written = []
    for directory in directories:
        for name, data in zip(VERIFY_NAMES, contents, strict=True):
            atomic_write(directory / name, data)
            written.append(directory / name)
    return written


def extra_report_dir(report_dir: Path, account: str) -> Path:
    """Where an account's reports go under --report-dir: its own subdirectory,
    named like its archive, so many accounts can share one report directory."""
    return account_dir(report_dir, account)


# ---------------------------------------------------------------------------
# The summary across accounts
# ---------------------------------------------------------------------------


@dataclass
class AccountSummary:
    account: str
    archive: Path | None  # None: in the config, never backed up here
    reports_dir: Path | None = None
    messages: int = 0
    bytes: int = 0
    last_backup: str | None = None  # finished_at of the last backup that ended ok or with warnings
    verification: VerifyResult | None = None
    deadline: date | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.verification.status.value if self.verification else NEVER_VERIFIED


def no_deadline(account: str) -> date | None:
    return None


def collect_accounts(dest: Path, *, deadline_for: Callable[[str], date | None] = no_deadline,
                     expected: Iterable[str] = ()) -> list[AccountSummary]:
    """Every account archive under `dest`, and each `expected` account (from
    the config) that has none.  `deadline_for` overrides the deadline an
    account's last verification recorded."""
    found: list[AccountSummary] = []
    if dest.is_dir():
        for directory in sorted(path for path in dest.iterdir() if (path / STATE_FILE).is_file()):
            found.append(_account_summary(dest, directory, deadline_for))
    known = {summary.account for summary in found}
    found += [AccountSummary(account=name, archive=None, deadline=deadline_for(name))
              for name in dict.fromkeys(expected) if name not in known]
    return sorted(found, key=lambda summary: summary.account.casefold())


def _account_summary(dest: Path, directory: Path, deadline_for: Callable[[str], date | None]) -> AccountSummary:
    state = StateDB(directory / STATE_FILE)
    try:
        account = state.get_meta("account") or directory.name
    finally:
        state.close()
    summary = AccountSummary(account=account, archive=directory, deadline=deadline_for(account))
    if account_dir(dest, account) != directory:
        summary.problems.append(_("archive directory {directory} does not match account {account}").format(
            directory=directory.name, account=account))
        return summary
    with open_archive(dest, account, lock=False, create=False) as archive:
        summary.messages, summary.bytes = archive.state.stored_totals()
        run = archive.state.last_run_in("backup", SUCCESSFUL_BACKUP)
        summary.last_backup = run["finished_at"] if run else None
        summary.reports_dir = archive.reports_dir
        report = archive.reports_dir / VERIFY_NAMES[0]
        if report.is_file():
            try:
                summary.verification = load_verify(report)
            except StorageError as exc:
                summary.problems.append(exc.message)
    if summary.verification is not None:
        if summary.deadline is not None:
            summary.verification.deadline = summary.deadline
        summary.deadline = summary.verification.deadline
    return summary


def summary_to_dict(accounts: list[AccountSummary], as_of: date, generated_at: datetime) -> dict[str, Any]:
    rows = [_summary_row(account, as_of) for account in accounts]
    counts = {status: sum(1 for row in rows if row["status"] == status)
              for status in ("complete", "incomplete", "corrupt", "failed", NEVER_VERIFIED)}
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "tool_version": __version__,
        "as_of": as_of.isoformat(),
        "totals": {"accounts": len(rows), **counts, "overdue": sum(1 for row in rows if row["overdue"]),
                   "messages": sum(row["messages"] for row in rows), "bytes": sum(row["bytes"] for row in rows)},
        "accounts": rows,
    }


def _summary_row(account: AccountSummary, as_of: date) -> dict[str, Any]:
    verification = account.verification
    days_left, overdue = deadline_status(account.deadline, account.status, as_of)
    totals = verification.totals if verification else None
    return {
        "account": account.account,
        "status": account.status,
        "archive": str(account.archive) if account.archive else None,
        "server": verification.server if verification else None,
        "messages": account.messages,
        "bytes": account.bytes,
        "last_backup": account.last_backup,
        "verified_at": verification.generated_at.isoformat(timespec="seconds") if verification else None,
        "mode": verification.mode.value if verification else None,
        "missing": totals.missing if totals else None,
        "corrupt": totals.corrupt if totals else None,
        "size_mismatch": totals.size_mismatch if totals else None,
        "deadline": account.deadline.isoformat() if account.deadline else None,
        "days_left": days_left,
        "overdue": overdue,
        "problems": account.problems,
    }


SUMMARY_CSV_COLUMNS = ("account", "status", "overdue", "deadline", "days_left", "messages", "bytes", "last_backup",
                       "verified_at", "mode", "missing", "corrupt", "size_mismatch", "server", "archive")


def summary_csv(data: dict[str, Any]) -> bytes:
    def cell(row: dict[str, Any], column: str) -> object:
        if column == "overdue":
            return _("yes") if row["overdue"] else _("no")
        if column in ("status", "mode") and row[column]:
            return _csv_word(row[column])
        return _blank(row[column])

    rows = [[cell(row, column) for column in SUMMARY_CSV_COLUMNS] for row in data["accounts"]]
    return _csv_bytes(_csv_header(SUMMARY_CSV_COLUMNS), rows)


def summary_html(data: dict[str, Any]) -> bytes:
    totals = data["totals"]
    all_good = totals["accounts"] > 0 and totals["complete"] == totals["accounts"]
    headline = _label(N_("{complete} of {accounts} accounts complete"), complete=totals["complete"],
                      accounts=totals["accounts"])
    counts = "".join(_num(totals[key]) for key in ("accounts", "complete", "incomplete", "corrupt", "failed",
                                                   NEVER_VERIFIED, "overdue"))
    rows = [_summary_html_row(row) for row in data["accounts"]]
    body = "\n".join([
        "<header>" + _heading(N_("Mail backup summary, all accounts")),
        f'<div class="status {"good" if all_good else "bad"}" id="status">{_e(headline)}</div>',
        f'<dl class="facts"><dt>{_e(_label(N_("Generated")))}</dt>'
        f'<dd>{_e(_when(datetime.fromisoformat(data["generated_at"])))}</dd>'
        f"<dt>{_e(_label(N_('Tool version')))}</dt><dd>mailbackup {_e(data['tool_version'])}</dd></dl></header>",
        f"<h2>{_e(_label(N_('Totals')))}</h2>" + _table(
            [_label(N_("Accounts")), _label(N_("Complete")), _label(N_("Incomplete")), _label(N_("Corrupt")),
             _label(N_("Failed")), _label(N_("Never verified")), _label(N_("Overdue"))],
            [f"<tr>{counts}</tr>"]) + f"<p>{_e(_label(N_('Total size')))}: {_e(_size(totals['bytes']))}</p>",
        f"<h2>{_e(_label(N_('Accounts')))}</h2>" + _table(
            [_label(N_("Account")), _label(N_("Status")), _label(N_("Deadline")), _label(N_("Messages")),
             _label(N_("Size")), _label(N_("Last good backup")), _label(N_("Last verified")), _label(N_("Missing")),
             _label(N_("Corrupt"))], rows),
    ])
    return _page(_("Mail backup summary"), body)


def _summary_html_row(row: dict[str, Any]) -> str:
    deadline = date.fromisoformat(row["deadline"]) if row["deadline"] else None
    when = {key: _entry_date(row[key]) for key in ("last_backup", "verified_at")}
    return (f"<tr><td>{_e(row['account'])}</td>{_status_cell(row['status'])}"
            f"<td>{_deadline_text(deadline, row['days_left'], row['overdue'])}</td>{_num(row['messages'])}"
            f"{_num(_size(row['bytes']))}<td>{_e(when['last_backup'])}</td><td>{_e(when['verified_at'])}</td>"
            f"{_num(row['missing'])}{_num(row['corrupt'])}</tr>")


def write_summary(accounts: list[AccountSummary], directory: Path, as_of: date,
                  generated_at: datetime) -> list[Path]:
    data = summary_to_dict(accounts, as_of, generated_at)
    contents = (_json_bytes(data), summary_csv(data), summary_html(data))
    for name, payload in zip(SUMMARY_NAMES, contents, strict=True):
        atomic_write(directory / name, payload)
    return [directory / name for name in SUMMARY_NAMES]
