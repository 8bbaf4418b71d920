"""YAML configuration → typed settings, every problem reported with its
file and line.

    defaults: {server: ..., dest: ..., format: ..., ...}
    accounts:
      - account: somchai.j@coj.go.th
        exclude: [Trash]

Keys are the long command-line options.  Command-line values win over the
account's entry, which wins over `defaults:`.  Passwords are never read
from this file (see secrets.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mailbackup.errors import ConfigError
from mailbackup.model import DEFAULT_SERVER, ConnectionSettings, ServerAddress, TLSMode

DEFAULT_DEST = "mail-backup"
KEY_TYPES: dict[str, tuple[type, ...]] = {
    "server": (str,), "cafile": (str,), "starttls": (bool,), "insecure": (bool,), "timeout": (int, float),
    "dest": (str,), "format": (str,), "jobs": (int,), "deadline": (dt.date, str), "include": (list, str),
    "exclude": (list, str), "password_command": (str,), "compress": (bool,),
    "max_connections_per_server": (int,), "max_bytes_per_second": (int,),
}
ACCOUNT_ONLY = {"account": (str,), "name": (str,), "title": (str,), "surname": (str,), "position": (str,),
                "unit": (str,)}
FORBIDDEN = {"password", "pass", "passwd"}


@dataclass
class AccountSettings:
    account: str
    connection: ConnectionSettings
    dest: Path = Path(DEFAULT_DEST)
    format: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    password_command: str | None = None
    deadline: dt.date | None = None
    jobs: int = 1
    metadata: dict[str, str] = field(default_factory=dict)


def load_account(path: Path | None, account: str, cli_values: dict[str, Any]) -> AccountSettings:
    """Settings for one account: the config's defaults and entry, then the command line."""
    values: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    if path is not None:
        document = read_config(path)
        values.update(document.get("defaults") or {})
        entry = next((item for item in document.get("accounts") or [] if item.get("account") == account), None)
        if entry:
            metadata = {key: str(entry[key]) for key in ACCOUNT_ONLY if key in entry and key != "account"}
            values.update({key: value for key, value in entry.items() if key in KEY_TYPES})
    values.update({key: value for key, value in cli_values.items() if value not in (None, ())})
    return _settings(account, values, metadata)


def read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None or node is None:
        return {}
    problems = validate(node, path)
    if problems:
        raise ConfigError("; ".join(problems) if len(problems) < 4 else "\n".join(["config problems:", *problems]))
    return data  # type: ignore[no-any-return]


def validate(node: yaml.Node, path: Path) -> list[str]:
    """Every problem in the document, each as ``file:line: what is expected``."""
    if not isinstance(node, yaml.MappingNode):
        return [f"{path}:{node.start_mark.line + 1}: expected a mapping with defaults: and accounts:"]
    problems: list[str] = []
    for key_node, value_node in node.value:
        key = key_node.value
        if key == "defaults":
            problems += _check_mapping(value_node, path, KEY_TYPES, "defaults")
        elif key == "accounts":
            problems += _check_accounts(value_node, path)
        else:
            problems.append(f"{path}:{key_node.start_mark.line + 1}: unknown key {key!r} "
                            "(expected defaults or accounts)")
    return problems


def _check_accounts(node: yaml.Node, path: Path) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        return [f"{path}:{node.start_mark.line + 1}: accounts must be a list of mappings"]
    problems: list[str] = []
    seen: dict[str, int] = {}
    for item in node.value:
        allowed = {**KEY_TYPES, **ACCOUNT_ONLY}
        problems += _check_mapping(item, path, allowed, "account entry")
        if isinstance(item, yaml.MappingNode):
            keys = {key.value: value for key, value in item.value}
            line = item.start_mark.line + 1
            if "account" not in keys:
                problems.append(f"{path}:{line}: account entry without `account:`")
            else:
                name = str(keys["account"].value)
                if name in seen:
                    problems.append(f"{path}:{line}: account {name} listed twice (first on line {seen[name]})")
                seen[name] = line
    return problems


def _check_mapping(node: yaml.Node, path: Path, allowed: dict[str, tuple[type, ...]], what: str) -> list[str]:
    if not isinstance(node, yaml.MappingNode):
        return [f"{path}:{node.start_mark.line + 1}: {what} must be a mapping"]
    problems = []
    for key_node, value_node in node.value:
        key, line = key_node.value, key_node.start_mark.line + 1
        if key in FORBIDDEN:
            problems.append(f"{path}:{line}: passwords do not belong in the config; "
                            "use `mailbackup auth set` or password_command")
        elif key not in allowed:
            expected = ", ".join(sorted(allowed))
            problems.append(f"{path}:{line}: unknown key {key!r} in {what} (expected one of {expected})")
        else:
            value = yaml.safe_load(yaml.serialize(value_node))
            if not isinstance(value, allowed[key]) or (isinstance(value, bool) and bool not in allowed[key]):
                names = " or ".join(kind.__name__ for kind in allowed[key])
                problems.append(f"{path}:{line}: {key} must be {names}, not {type(value).__name__}")
    return problems


def _settings(account: str, values: dict[str, Any], metadata: dict[str, str]) -> AccountSettings:
    starttls = bool(values.get("starttls"))
    connection = ConnectionSettings(
        server=ServerAddress.parse(str(values.get("server") or DEFAULT_SERVER), starttls=starttls),
        tls_mode=TLSMode.STARTTLS if starttls else TLSMode.IMPLICIT,
        cafile=values.get("cafile"), insecure=bool(values.get("insecure")),
        timeout=float(values.get("timeout") or 60.0), compress=values.get("compress", True) is not False,
    )
    return AccountSettings(
        account=account, connection=connection, dest=Path(values.get("dest") or DEFAULT_DEST),
        format=values.get("format"), include=_globs(values.get("include")), exclude=_globs(values.get("exclude")),
        password_command=values.get("password_command"), deadline=_date(values.get("deadline")),
        jobs=int(values.get("jobs") or 1), metadata=metadata,
    )


def _globs(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(item) for item in value)


def _date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"deadline {value!r} is not a date (expected YYYY-MM-DD)") from None
