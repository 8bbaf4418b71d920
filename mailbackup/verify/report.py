"""The reports of one account's verification, which an officer can hand in,
written from results.py's dataclasses into the archive's ``reports/`` (and
any extra directory):

* ``verify.json``: the record (schema: docs/verify.schema.json).  It is also
  the archive's memory of the last verification: `load_verify` reads it back
  so `mailbackup report` can regenerate everything;
* ``verify.csv``: one row per folder, UTF-8 with BOM so Excel on Thai
  Windows shows Thai folder names;
* ``verify.html``: one self-contained page (no network, inline CSS).

The summary across accounts is summary.py; the pieces both share, render.py.
See docs/reports.md.  Every file is written to a temporary name and renamed,
mode 0600.  No password ever reaches this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

from mailbackup.archive import account_dir
from mailbackup.config.keys import STAFF_KEYS
from mailbackup.errors import StorageError
from mailbackup.i18n import N_, _
from mailbackup.store.files import atomic_write
from mailbackup.text import system_error
from mailbackup.verify.render import (
    SCHEMA_VERSION,
    STATUS_EXPLAINED,
    bilingual_status,
    blank,
    csv_bytes,
    csv_header,
    csv_word,
    deadline_status,
    deadline_text,
    entry_date,
    escape,
    heading,
    json_bytes,
    label,
    num_cell,
    page,
    report_time,
    signature_block,
    size_text,
    staff_facts,
    status_cell,
    table,
)
from mailbackup.verify.results import FolderReport, MessageEntry, Mode, Staff, Status, VerifyResult

VERIFY_NAMES = ("verify.json", "verify.csv", "verify.html")
HTML_LIST_LIMIT = 1000  # messages listed per folder and kind in HTML; the JSON has all


# ---------------------------------------------------------------------------
# verify.json
# ---------------------------------------------------------------------------


def verify_to_dict(result: VerifyResult, as_of: date) -> dict[str, Any]:
    days_left, overdue = deadline_status(result.deadline, result.status, as_of)
    return {
        "schema_version": SCHEMA_VERSION,
        "account": result.account,
        "staff": result.staff.to_dict(),
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
        "intact": folder.intact,
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
        "checked_at_download": folder.checked_at_download,
        "problems": folder.problems,
        "stray_files": folder.stray_files,
        "warnings": folder.warnings,
        "notes": folder.notes,
        "error": folder.error,
        "contradiction": folder.contradiction,
    }


def verify_from_dict(data: dict[str, Any]) -> VerifyResult:
    """The inverse of `verify_to_dict` (derived fields are recomputed)."""
    return VerifyResult(
        account=data["account"], server=data["server"], mode=Mode(data["mode"]),
        generated_at=datetime.fromisoformat(data["generated_at"]),
        folders=[_folder_from_dict(item) for item in data["folders"]],
        deadline=date.fromisoformat(data["deadline"]) if data.get("deadline") else None,
        tool_version=data["tool_version"], error=data.get("error"), seconds=float(data.get("seconds", 0.0)),
        staff=Staff.from_mapping(data.get("staff")),
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
        checked_at_download=data.get("checked_at_download", 0),
        problems=list(data.get("problems", [])), stray_files=list(data.get("stray_files", [])),
        warnings=list(data.get("warnings", [])), notes=list(data.get("notes", [])), error=data.get("error"),
        contradiction=data.get("contradiction"),
    )


def load_verify(path: Path) -> VerifyResult:
    """The last verification kept in an archive's reports directory."""
    try:
        return verify_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise StorageError(_("cannot read {path}: {error}").format(path=path, error=system_error(exc))) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(_("{path} is not a verification report mailbackup can read: {error}").format(
            path=path, error=exc), hint=_("run `mailbackup verify` again to write a new one")) from None


# ---------------------------------------------------------------------------
# verify.csv
# ---------------------------------------------------------------------------


VERIFY_CSV_COLUMNS = (
    "folder", "status", "server_messages", "local_messages", "ok", "missing", "corrupt", "size_mismatch",
    "only_local", "bytes", "stray_files", "error", "account", "server", "generated_at", "mode", "tool_version",
    "deadline", "intact", *STAFF_KEYS,
)


def verify_csv(result: VerifyResult) -> bytes:
    stamp = [result.account, result.server, result.generated_at.isoformat(timespec="seconds"),
             csv_word(result.mode.value), result.tool_version, result.deadline.isoformat() if result.deadline else ""]
    staff = [result.staff.to_dict()[key] or "" for key in STAFF_KEYS]
    rows = [[folder.name, csv_word(folder.status.value), blank(folder.server_messages), folder.local_messages,
             folder.ok, len(folder.missing), len(folder.corrupt), len(folder.size_mismatch), len(folder.only_local),
             folder.bytes, len(folder.stray_files), folder.error or folder.contradiction or "", *stamp, folder.intact,
             *staff]
            for folder in result.folders]
    if result.error:  # no folders were read: one row still says so
        rows.append(["", csv_word(result.status.value), "", "", "", "", "", "", "", "", "", result.error, *stamp, "",
                     *staff])
    return csv_bytes(csv_header(VERIFY_CSV_COLUMNS), rows)


# ---------------------------------------------------------------------------
# verify.html
# ---------------------------------------------------------------------------


def verify_html(result: VerifyResult, as_of: date) -> bytes:
    status = result.status.value
    days_left, overdue = deadline_status(result.deadline, status, as_of)
    totals = result.totals
    mode = (label(N_("server compared with archive")) if result.mode is Mode.ONLINE
            else label(N_("archive checked on its own (offline)")))
    facts = [
        (label(N_("Account")), escape(result.account)),
        *staff_facts(result.staff),
        (label(N_("Server")), escape(result.server)),
        (label(N_("Verified at")), escape(report_time(result.generated_at))),
        (label(N_("Mode")), escape(mode)),
        (label(N_("Deadline")), deadline_text(result.deadline, days_left, overdue)),
        (label(N_("Tool version")), escape(f"mailbackup {result.tool_version}")),
    ]
    if totals.checked_at_download:  # say how the archive side was checked when it was not all read again
        facts.append((label(N_("Archived copies checked")), escape(label(
            N_("{read} read again and hashed; {written} written by this run's backup, checked from the SHA-256 "
               "computed at download (in place, a regular file, the recorded size)"),
            read=totals.checked, written=totals.checked_at_download))))
    explained = STATUS_EXPLAINED.get(status)
    parts = [
        "<header>" + heading(N_("Mail backup verification report")),
        f'<div class="status {"good" if status == Status.COMPLETE else "bad"}" id="status">'
        f"{escape(bilingual_status(status))}<small>{escape(_(explained) if explained else '')}</small></div>",
        '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl></header>",
    ]
    if result.error:
        parts.append(f"<h2>{escape(label(N_('Error')))}</h2><p>{escape(result.error)}</p>")
    parts.append(f"<h2>{escape(label(N_('Totals')))}</h2>" + table(
        [label(N_("On server")), label(N_("In the archive's records")), label(N_("Found intact")),
         label(N_("Missing")), label(N_("Corrupt")), label(N_("Size mismatch")), label(N_("Only in archive")),
         label(N_("Size"))],
        ["<tr>" + "".join(num_cell(value) for value in (
            totals.server_messages, totals.local_messages, totals.intact, totals.missing, totals.corrupt,
            totals.size_mismatch, totals.only_local)) + num_cell(size_text(totals.bytes)) + "</tr>"]))
    if result.folders:
        parts.append(f"<h2>{escape(label(N_('Folders')))}</h2>" + _folder_table(result.folders))
    parts.extend(_message_sections(result.folders))
    parts.append(_issue_section(result.folders))
    parts.append(signature_block())
    title = f"{bilingual_status(status)}: {result.account}"
    return page(title, "\n".join(part for part in parts if part))


def _folder_table(folders: list[FolderReport]) -> str:
    rows = [
        f"<tr><td class='name'>{escape(folder.name)}</td>{status_cell(folder.status.value, _contradiction(folder))}"
        + "".join(num_cell(value) for value in (folder.server_messages, folder.local_messages, folder.intact,
                                             len(folder.missing), len(folder.corrupt), len(folder.size_mismatch),
                                             len(folder.only_local)))
        + num_cell(size_text(folder.bytes)) + "</tr>"
        for folder in folders
    ]
    return table([label(N_("Folder")), label(N_("Status")), label(N_("On server")),
                  label(N_("In the archive's records")), label(N_("Found intact")), label(N_("Missing")),
                  label(N_("Corrupt")), label(N_("Size mismatch")), label(N_("Only in archive")), label(N_("Size"))],
                 rows)


def _contradiction(folder: FolderReport) -> str:
    """Under an INCONCLUSIVE folder's status: the numbers each answer of the server gave."""
    return f"<small><br>{escape(folder.contradiction)}</small>" if folder.contradiction else ""


MESSAGE_KINDS = (
    ("missing", N_("Missing messages")),
    ("corrupt", N_("Corrupt messages")),
    ("size_mismatch", N_("Size differs from the server")),
    ("only_local", N_("Only in the archive (gone from the server)")),
)


def _message_sections(folders: list[FolderReport]) -> Iterator[str]:
    for kind, title in MESSAGE_KINDS:
        listed = [(folder, getattr(folder, kind)) for folder in folders if getattr(folder, kind)]
        if not listed:
            continue
        yield f'<h2 id="{kind}">{escape(label(title))}</h2>'
        for folder, entries in listed:
            yield f"<h3>{escape(folder.name)} ({len(entries)})</h3>" + _message_table(entries)


def _message_table(entries: list[MessageEntry]) -> str:
    rows = []
    for entry in entries[:HTML_LIST_LIMIT]:
        subject = escape(entry.subject) if entry.subject else f"<i>({escape(label(N_('no subject')))})</i>"
        message_id = f'<div class="mid">{escape(entry.message_id)}</div>' if entry.message_id else ""
        size = size_text(entry.size) + (f" / {size_text(entry.local_size)}" if entry.local_size is not None else "")
        rows.append(f"<tr>{num_cell(entry.uid)}<td>{escape(entry_date(entry.date))}</td>"
                    f'<td class="subject">{subject}{message_id}</td>{num_cell(size)}'
                    f'<td>{escape(entry.reason or "")}</td></tr>')
    more = len(entries) - HTML_LIST_LIMIT
    if more > 0:
        rows.append(f'<tr><td colspan="5">{escape(_("… {count} more in verify.json").format(count=more))}</td></tr>')
    return table(["UID", label(N_("Date")), label(N_("Subject")), label(N_("Size")), label(N_("Reason"))], rows)


def _issue_section(folders: list[FolderReport]) -> str:
    items: list[str] = []
    for folder in folders:
        lines = [f"{label(N_('damage'))}: {text}" for text in folder.problems]
        if folder.error:
            lines.append(f"{label(N_('error'))}: {folder.error}")
        lines += [f"{label(N_('stray file'))}: {name}" for name in folder.stray_files]
        lines += [f"{label(N_('warning'))}: {text}" for text in folder.warnings]
        lines += [f"{label(N_('note'))}: {text}" for text in folder.notes]
        items += [f"<li><b>{escape(folder.name)}</b>: {escape(line)}</li>" for line in lines]
    if not items:
        return ""
    return f'<h2>{escape(label(N_("Problems and notes")))}</h2><ul class="issues">' + "".join(items) + "</ul>"


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def write_verify_reports(result: VerifyResult, directories: Iterable[Path], as_of: date) -> list[Path]:
    """verify.json, verify.csv and verify.html into each directory."""
    contents = (json_bytes(verify_to_dict(result, as_of)), verify_csv(result), verify_html(result, as_of))
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
