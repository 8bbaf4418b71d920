"""The reports of a sweep: ``summary.json|csv|html`` (the schema of
`mailbackup report`, written by verify/summary.py) for its accounts, and
``sweep.json``/``sweep.csv``: this run, account by account, with the staff
details.

Public API: `write_reports(result, directory, ...)`, `report_directory`,
`sweep_to_dict`, `sweep_csv`.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from mailbackup import __version__
from mailbackup.config import AccountSettings, SweepSettings
from mailbackup.i18n import _
from mailbackup.store.files import atomic_write
from mailbackup.sweep.options import Shard
from mailbackup.sweep.run import INSECURE_WARNING, AccountOutcome, SweepResult
from mailbackup.verify.render import csv_bytes
from mailbackup.verify.results import Staff
from mailbackup.verify.summary import SUMMARY_DIR, AccountSummary, collect_accounts, write_summary

SCHEMA_VERSION = 1
SWEEP_NAMES = ("sweep.json", "sweep.csv")
SWEEP_CSV_COLUMNS = ("account", "คำนำหน้า/title", "ชื่อ/name", "นามสกุล/surname", "ตำแหน่ง/position",
                     "หน่วยงาน/unit", "backup", "verify", "exit_code", "messages", "bytes", "attempts",
                     "busy_waited_seconds", "problem")


def sweep_to_dict(result: SweepResult, generated_at: datetime) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "started_at": result.started_at.isoformat(timespec="seconds"),
        "tool_version": __version__,
        "config": str(result.config) if result.config else None,
        "shard": str(result.shard) if result.shard else None,
        "seconds": round(result.seconds, 3),
        "interrupted": result.interrupted,
        "exit_code": int(result.exit_code),
        "peak_connections": result.peak_connections,
        "accounts": [_outcome_to_dict(outcome) for outcome in result.outcomes],
    }


def _outcome_to_dict(outcome: AccountOutcome) -> dict[str, Any]:
    staff = outcome.settings.metadata
    return {
        "account": outcome.account,
        "staff": {key: staff.get(key) for key in ("title", "name", "surname", "position", "unit")},
        "server": str(outcome.settings.connection.server),
        "insecure": outcome.settings.connection.insecure,  # certificate not checked
        "archive": str(outcome.settings.dest),
        "backup": outcome.backup,
        "verify": outcome.verify,
        "exit_code": int(outcome.exit_code),
        "messages": outcome.messages,
        "bytes": outcome.bytes,
        "attempts": outcome.attempts,
        "busy_waited_seconds": round(outcome.waited, 3),
        "seconds": round(outcome.seconds, 3),
        "error": outcome.error,
        "problems": outcome.problems,
    }


def sweep_csv(data: dict[str, Any]) -> bytes:
    rows = []
    for row in data["accounts"]:
        staff = row["staff"]
        insecure = [_(INSECURE_WARNING)] if row["insecure"] else []
        problem = "; ".join(([row["error"]] if row["error"] else []) + insecure + row["problems"])
        rows.append([row["account"], *(staff[key] or "" for key in ("title", "name", "surname", "position", "unit")),
                     row["backup"], row["verify"], row["exit_code"], row["messages"], row["bytes"], row["attempts"],
                     row["busy_waited_seconds"], problem])
    return csv_bytes(SWEEP_CSV_COLUMNS, rows)


def report_directory(settings: SweepSettings, report_dir: Path | None, shard: Shard | None) -> Path:
    """``--report-dir`` or ``<dest>/reports``; one subdirectory per shard, so
    machines sharing a destination do not overwrite each other's summary."""
    directory = report_dir or settings.dest / SUMMARY_DIR
    return directory / f"shard-{shard.index}-of-{shard.count}" if shard else directory


def write_reports(result: SweepResult, directory: Path, *, as_of: date | None = None,
                  generated_at: datetime | None = None) -> list[Path]:
    """summary.json/.csv/.html (verify/summary.py's summary of these accounts) and
    sweep.json/.csv (this run, with the staff details)."""
    as_of = as_of or date.today()
    generated_at = generated_at or datetime.now().astimezone()
    written = write_summary(_summaries(result), directory, as_of, generated_at)
    data = sweep_to_dict(result, generated_at)
    contents = ((json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8", "replace"), sweep_csv(data))
    for name, payload in zip(SWEEP_NAMES, contents, strict=True):
        atomic_write(directory / name, payload)
        written.append(directory / name)
    return written


def _summaries(result: SweepResult) -> list[AccountSummary]:
    """verify/summary.py's AccountSummary of every account of this sweep, whatever its dest."""
    by_dest: dict[Path, dict[str, AccountSettings]] = {}
    known: dict[Path, AccountSummary] = {}  # read by the workers while they held the archives
    for outcome in result.outcomes:
        by_dest.setdefault(outcome.settings.dest, {})[outcome.account.strip().casefold()] = outcome.settings
        if outcome.summary is not None and outcome.summary.archive is not None:
            known[outcome.summary.archive] = outcome.summary
    found = []
    for dest, accounts in by_dest.items():
        def deadline_for(account: str, accounts: dict[str, AccountSettings] = accounts) -> date | None:
            settings = accounts.get(account.strip().casefold())
            return settings.deadline if settings else None

        def staff_for(account: str, accounts: dict[str, AccountSettings] = accounts) -> Staff:
            settings = accounts.get(account.strip().casefold())
            return Staff.from_mapping(settings.metadata if settings else None)

        names = [settings.account for settings in accounts.values()]
        found += [summary for summary in collect_accounts(dest, deadline_for=deadline_for, staff_for=staff_for,
                                                          expected=names, known=known)
                  if summary.account.strip().casefold() in accounts]
    insecure = {outcome.account.strip().casefold() for outcome in result.outcomes
                if outcome.settings.connection.insecure}
    for summary in found:
        if summary.account.strip().casefold() in insecure:
            summary.problems.insert(0, _(INSECURE_WARNING))
    return sorted(found, key=lambda summary: summary.account.casefold())
