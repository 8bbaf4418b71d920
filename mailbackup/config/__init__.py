"""YAML configuration → typed settings, every problem reported with its
file and line.

    defaults: {server: ..., dest: ..., format: ..., jobs: 4, ...}
    accounts:
      - account: somchai.j@coj.go.th
        title: นาย
        name: สมชาย
        exclude: [Trash]
      - malee.s@coj.go.th          # shorthand: an account with nothing to override

`config/example.yaml` documents every key.  Keys are the long command-line
options; the command line wins over the account's entry, which wins over
`defaults:`.  `jobs`, `max_connections_per_server`, `workers` and
`max_bytes_per_second` concern a whole sweep and belong under `defaults:`;
`account` and the staff details (`title`, `name`, `surname`, `position`;
`unit` also under `defaults:`) belong to an entry.  Relative paths in the
file (`dest`, `cafile`, `password_file`) are relative to the file's own directory, so a
scheduled run finds them whatever its working directory; ``~`` is expanded.
``{account}`` in a `password_command` or `password_file` is replaced by the account name.
Passwords are never read from this file (see secrets.py).

Public API: `load_account` (one account, for the single-account commands),
`load_sweep` (every account, for sweep/check/schedule/auth import),
`read_config` (yamlfile.py checks the YAML against the keys of keys.py).  Unknown keys, wrong types and impossible
values are all reported at once, each as ``FILE:LINE: what is expected``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbackup.config.keys import ACCOUNT_KEYS, COMPRESS_MODES, STAFF_KEYS
from mailbackup.errors import ConfigError
from mailbackup.i18n import _
from mailbackup.model import DEFAULT_SERVER, ConnectionSettings, ServerAddress, TLSMode
from mailbackup.text import parse_duration

DEFAULT_DEST = "mail-backup"
DEFAULT_JOBS = 4
# Folders a `backup` syncs at once; a sweep's accounts already run in parallel, so there 1
# (docs/benchmark.md, scenario 7, for how this was chosen).
DEFAULT_CONNECTIONS = 4
# Per server host.  Dovecot allows 10 per user and IP by default; a sweep uses
# one connection per account at a time, and government servers throttle.
DEFAULT_MAX_CONNECTIONS_PER_SERVER = 4
ACCOUNT_PLACEHOLDER = "{account}"


def _compress_mode(value: Any) -> str:
    if value is True:
        return "always"
    if value is False:
        return "never"
    return str(value) if value in COMPRESS_MODES else "auto"


@dataclass
class AccountSettings:
    account: str
    connection: ConnectionSettings
    dest: Path = Path(DEFAULT_DEST)
    format: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    password_command: str | None = None
    password_file: str | None = None
    deadline: dt.date | None = None
    max_time: dt.timedelta | None = None  # a run (a sweep: each account's) ends cleanly when it has run this long
    connections: int | None = None  # folders synced at once; None: the command's default
    metadata: dict[str, str] = field(default_factory=dict)  # staff details: title, name, surname, position, unit

    @property
    def host(self) -> str:
        return self.connection.server.host


@dataclass(frozen=True)
class SweepSettings:
    """Every account of a config, with the settings of the sweep as a whole."""

    path: Path
    accounts: tuple[AccountSettings, ...]
    dest: Path  # the defaults' dest: where the sweep's reports and lock live
    jobs: int = DEFAULT_JOBS
    max_connections_per_server: int = DEFAULT_MAX_CONNECTIONS_PER_SERVER
    max_bytes_per_second: int | None = None
    workers: str = "threads"


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_account(path: Path | None, account: str, cli_values: dict[str, Any]) -> AccountSettings:
    """Settings for one account: the config's defaults and entry, then the command line."""
    values: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    if path is not None:
        document = read_config(path)
        defaults = document.get("defaults") or {}
        entry = next((item for item in _entries(document) if _same_account(item["account"], account)), {})
        values, metadata = _merge(defaults, entry, path)
    values.update({key: value for key, value in cli_values.items() if value not in (None, ())})
    return _settings(account, values, metadata)


def load_sweep(path: Path) -> SweepSettings:
    """Every account listed in the config, in file order."""
    document = read_config(path)
    defaults = document.get("defaults") or {}
    entries = _entries(document)
    if not entries:
        raise ConfigError(_("{path}: no accounts to work on").format(path=path),
                          hint=_("add `accounts:` with one `- account: NAME` line per mailbox"))
    accounts = []
    for entry in entries:
        values, metadata = _merge(defaults, entry, path)
        accounts.append(_settings(str(entry["account"]), values, metadata))
    base, _staff = _merge(defaults, {}, path)
    return SweepSettings(
        path=path.resolve(), accounts=tuple(accounts), dest=Path(base.get("dest") or DEFAULT_DEST),
        jobs=int(defaults.get("jobs") or DEFAULT_JOBS),
        max_connections_per_server=int(defaults.get("max_connections_per_server")
                                       or DEFAULT_MAX_CONNECTIONS_PER_SERVER),
        max_bytes_per_second=defaults.get("max_bytes_per_second"),
        workers=str(defaults.get("workers") or "threads"),
    )


def _entries(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The account entries, the shorthand ``- name`` read as ``- account: name``."""
    return [item if isinstance(item, dict) else {"account": item} for item in document.get("accounts") or []]


def _same_account(listed: str, wanted: str) -> bool:
    return listed.strip().casefold() == wanted.strip().casefold()


def _merge(defaults: dict[str, Any], entry: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Account settings (defaults, then the entry; paths made absolute) and staff details."""
    values = {key: value for key, value in defaults.items() if key in ACCOUNT_KEYS}
    values.update({key: value for key, value in entry.items() if key in ACCOUNT_KEYS})
    base = path.resolve().parent
    for key in ("dest", "cafile", "password_file"):
        if values.get(key):
            values[key] = str(base / Path(str(values[key])).expanduser())
    metadata = {key: str(defaults[key]) for key in STAFF_KEYS if key in defaults}
    metadata.update({key: str(entry[key]) for key in STAFF_KEYS if key in entry})
    return values, metadata


def _settings(account: str, values: dict[str, Any], metadata: dict[str, str]) -> AccountSettings:
    starttls = bool(values.get("starttls"))
    connection = ConnectionSettings(
        server=ServerAddress.parse(str(values.get("server") or DEFAULT_SERVER), starttls=starttls),
        tls_mode=TLSMode.STARTTLS if starttls else TLSMode.IMPLICIT,
        cafile=values.get("cafile"), insecure=bool(values.get("insecure")),
        timeout=float(values.get("timeout") or 60.0), compress=_compress_mode(values.get("compress")),
    )
    command, password_file = values.get("password_command"), values.get("password_file")
    return AccountSettings(
        account=account, connection=connection, dest=Path(values.get("dest") or DEFAULT_DEST),
        format=values.get("format"), include=_glob_tuple(values.get("include")),
        exclude=_glob_tuple(values.get("exclude")),
        password_command=command.replace(ACCOUNT_PLACEHOLDER, account.strip()) if command else None,
        password_file=password_file.replace(ACCOUNT_PLACEHOLDER, account.strip()) if password_file else None,
        deadline=_as_date(values.get("deadline")), metadata=metadata,
        max_time=parse_duration(str(values["max_time"])) if values.get("max_time") else None,
        connections=int(values["connections"]) if values.get("connections") else None,
    )


def _glob_tuple(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(item) for item in value)


def _as_date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(_("deadline {value!r} is not a date (expected YYYY-MM-DD)").format(value=value)) from None


def read_config(path: Path) -> dict[str, Any]:
    """The validated document, every account entry a mapping (the shorthand
    ``- name`` read as ``- account: name``); ConfigError listing every problem otherwise."""
    from mailbackup.config.yamlfile import read_document  # PyYAML only when a file is read (start-up time)

    data = read_document(path)
    if data.get("accounts"):
        data["accounts"] = _entries(data)
    return data
