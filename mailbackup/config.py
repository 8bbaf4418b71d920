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
`defaults:`.  `jobs`, `max_connections_per_server` and
`max_bytes_per_second` concern a whole sweep and belong under `defaults:`;
`account` and the staff details (`title`, `name`, `surname`, `position`;
`unit` also under `defaults:`) belong to an entry.  Relative paths in the
file (`dest`, `cafile`) are relative to the file's own directory, so a
scheduled run finds them whatever its working directory; ``~`` is expanded.
``{account}`` in a `password_command` is replaced by the account name.
Passwords are never read from this file (see secrets.py).

Public API: `load_account` (one account, for the single-account commands),
`load_sweep` (every account, for sweep/check/schedule/auth import),
`read_config` and `validate`.  Unknown keys, wrong types and impossible
values are all reported at once, each as ``FILE:LINE: what is expected``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from mailbackup.errors import ConfigError, UsageError
from mailbackup.i18n import N_, _
from mailbackup.model import DEFAULT_SERVER, ConnectionSettings, ServerAddress, TLSMode

DEFAULT_DEST = "mail-backup"
DEFAULT_JOBS = 4
# Per server host.  Dovecot allows 10 per user and IP by default; a sweep uses
# one connection per account at a time, and government servers throttle.
DEFAULT_MAX_CONNECTIONS_PER_SERVER = 4
FORMATS = ("maildir", "mbox")  # the stores sync/archive.py can open
FORBIDDEN = {"password", "pass", "passwd", "pwd", "secret"}
STAFF_KEYS = ("title", "name", "surname", "position", "unit")
ACCOUNT_PLACEHOLDER = "{account}"


@dataclass(frozen=True)
class Key:
    expected: str  # "HOST or HOST:PORT": said in every error about this key (marked with N_, shown with _)
    accepts: Callable[[Any], bool]


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _server(value: Any) -> bool:
    if not _text(value):
        return False
    try:
        ServerAddress.parse(value)
    except UsageError:
        return False
    return True


def _date(value: Any) -> bool:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return True
    if not isinstance(value, str):
        return False
    try:
        dt.date.fromisoformat(value.strip())
    except ValueError:
        return False
    return True


def _globs(value: Any) -> bool:
    return _text(value) or (isinstance(value, list) and bool(value) and all(_text(item) for item in value))


def _account_name(value: Any) -> bool:
    # No spaces or quotes: the name goes into file names and password commands.
    return _text(value) and not re.search(r"[\s\"'`$\\/]", value)


COMPRESS_MODES = ("auto", "always", "never")


def _compress_mode(value: Any) -> str:
    if value is True:
        return "always"
    if value is False:
        return "never"
    return str(value) if value in COMPRESS_MODES else "auto"


ACCOUNT_KEYS: dict[str, Key] = {
    "server": Key(N_("HOST or HOST:PORT (e.g. imap.mail.go.th:993)"), _server),
    "cafile": Key(N_("the path of a PEM file"), _text),
    "starttls": Key(N_("true or false"), _flag),
    "insecure": Key(N_("true or false"), _flag),
    "compress": Key(N_("auto, always or never (true = always, false = never)"),
                    lambda value: _flag(value) or value in COMPRESS_MODES),
    "timeout": Key(N_("a number of seconds above 0"), _seconds),
    "dest": Key(N_("a directory path"), _text),
    "format": Key(N_("maildir or mbox"), lambda value: value in FORMATS),
    "deadline": Key(N_("a date YYYY-MM-DD"), _date),
    "include": Key(N_("a folder glob or a list of them"), _globs),
    "exclude": Key(N_("a folder glob or a list of them"), _globs),
    "password_command": Key(N_("a command that prints the password"), _text),
}
SWEEP_KEYS: dict[str, Key] = {
    "jobs": Key(N_("a whole number of accounts at once, 1 or more"), _count),
    "max_connections_per_server": Key(N_("a whole number, 1 or more"), _count),
    "max_bytes_per_second": Key(N_("a whole number of bytes per second, 1 or more (e.g. 2000000)"), _count),
}
ENTRY_KEYS: dict[str, Key] = {
    "account": Key(N_("the IMAP login, e.g. somchai.j@coj.go.th (no spaces or quotes)"), _account_name),
    **{key: Key(N_("text (quote numbers)"), _text) for key in STAFF_KEYS},
}
DEFAULTS_ALLOWED = {**ACCOUNT_KEYS, **SWEEP_KEYS, "unit": ENTRY_KEYS["unit"]}
ENTRY_ALLOWED = {**ACCOUNT_KEYS, **ENTRY_KEYS}


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
    for key in ("dest", "cafile"):
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
    command = values.get("password_command")
    return AccountSettings(
        account=account, connection=connection, dest=Path(values.get("dest") or DEFAULT_DEST),
        format=values.get("format"), include=_glob_tuple(values.get("include")),
        exclude=_glob_tuple(values.get("exclude")),
        password_command=command.replace(ACCOUNT_PLACEHOLDER, account.strip()) if command else None,
        deadline=_as_date(values.get("deadline")), metadata=metadata,
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


# ---------------------------------------------------------------------------
# Reading and validating
# ---------------------------------------------------------------------------


def read_config(path: Path) -> dict[str, Any]:
    """The validated document, every account entry a mapping (the shorthand
    ``- name`` read as ``- account: name``); ConfigError listing every problem otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(_("cannot read config {path}: {error}").format(path=path, error=exc.strerror or exc)) \
            from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(_("{path}:{line}: not UTF-8 text").format(path=path, line=line),
                          hint=_("save the file as UTF-8 (not TIS-620 or Windows-874); Notepad: Save as, "
                                 "Encoding UTF-8")) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc, path, text)) from None
    if data is None or node is None:
        return {}
    problems = validate(node, path)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1
                          else "\n".join([_("{count} problems in the config:").format(count=len(problems)),
                                          *problems]))
    if data.get("accounts"):
        data["accounts"] = _entries(data)
    return data  # type: ignore[no-any-return]


def _yaml_problem(exc: yaml.YAMLError, path: Path, text: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    hint = _(" (indent with spaces, not tabs)") if "\t" in line[: len(line) - len(line.lstrip())] or "'\\t'" in str(
        problem) else ""
    return _("{where}: not valid YAML: {problem}{hint}").format(where=where, problem=problem, hint=hint)


def validate(node: yaml.Node, path: Path) -> list[str]:
    """Every problem in the document, each as ``file:line: what is expected``, in line order."""
    if not isinstance(node, yaml.MappingNode):
        return [_("{path}:{line}: expected a mapping with `defaults:` and `accounts:`").format(
            path=path, line=_line(node))]
    problems: list[tuple[int, str]] = []
    for key_node, value_node in _pairs(node, path, problems):
        key = key_node.value
        if key == "defaults":
            problems += _check_mapping(value_node, path, DEFAULTS_ALLOWED, "defaults")
        elif key == "accounts":
            problems += _check_accounts(value_node, path)
        else:
            problems.append((_line(key_node), _("unknown key {key!r} at the top{suggestion} (expected defaults or "
                                                "accounts)").format(
                key=key, suggestion=_suggest(key, ["defaults", "accounts"]))))
    return [f"{path}:{line}: {text}" for line, text in sorted(problems, key=lambda item: item[0])]


def _construct(node: yaml.Node) -> Any:
    """The Python value of one node, as safe_load would make it."""
    return SafeConstructor().construct_object(node, deep=True)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _pairs(node: yaml.MappingNode, path: Path, problems: list[tuple[int, str]]) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's key/value nodes; a key given twice is a problem (YAML would keep the last silently)."""
    seen: dict[str, int] = {}
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append((_line(key_node), _("a key must be a plain word")))
            continue
        key = str(key_node.value)
        if key in seen:
            problems.append((_line(key_node), _("{key} given twice in one mapping (first on line {first})").format(
                key=key, first=seen[key])))
            continue
        seen[key] = _line(key_node)
        pairs.append((key_node, value_node))
    return pairs


def _check_accounts(node: yaml.Node, path: Path) -> list[tuple[int, str]]:
    if not isinstance(node, yaml.SequenceNode):
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        return [(_line(node), _("accounts must be a list: one `- account: NAME` entry per mailbox"))]
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for item in node.value:
        line = _line(item)
        if isinstance(item, yaml.ScalarNode):  # shorthand: `- somchai.j@coj.go.th`
            name = _construct(item)
            problems += _check_value("account", name, ENTRY_KEYS["account"], line)
        elif isinstance(item, yaml.MappingNode):
            problems += _check_mapping(item, path, ENTRY_ALLOWED, N_("an account entry"))
            keys = {key.value: value for key, value in item.value if isinstance(key, yaml.ScalarNode)}
            if "account" not in keys:
                problems.append((line, _("account entry without `account:` (expected `- account: NAME`)")))
                continue
            name = _construct(keys["account"])
        else:
            problems.append((line, _("an account entry must be a mapping (`- account: NAME`) or an account name")))
            continue
        if isinstance(name, str) and name.strip():
            folded = name.strip().casefold()
            if folded in seen:
                problems.append((line, _("account {account} listed twice (first on line {first})").format(
                    account=name, first=seen[folded])))
            seen.setdefault(folded, line)
    return problems


def _check_mapping(node: yaml.Node, path: Path, allowed: dict[str, Key], what: str) -> list[tuple[int, str]]:
    if not isinstance(node, yaml.MappingNode):
        if what == "defaults" and isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return []
        return [(_line(node), _("{what} must be a mapping of `key: value` lines").format(what=_(what)))]
    problems: list[tuple[int, str]] = []
    for key_node, value_node in _pairs(node, path, problems):
        key, line = str(key_node.value), _line(key_node)
        if key.lower() in FORBIDDEN:
            problems.append((line, _("passwords do not belong in the config; use `mailbackup auth set`, "
                                     "`mailbackup auth import` or password_command")))
        elif key not in allowed:
            problems.append((line, _misplaced(key, allowed, what)))
        else:
            value = _construct(value_node)
            problems += _check_value(key, value, allowed[key], line, base=path.resolve().parent)
    return problems


def _misplaced(key: str, allowed: dict[str, Key], what: str) -> str:
    if key in SWEEP_KEYS:
        return _("{key} applies to the whole sweep: put it under `defaults:`").format(key=key)
    if key in ENTRY_KEYS:
        return _("{key} belongs to one account: put it in the account's entry under `accounts:`").format(key=key)
    return _("unknown key {key!r} in {what}{suggestion} (expected one of {keys})").format(
        key=key, what=_(what), suggestion=_suggest(key, list(allowed)), keys=", ".join(sorted(allowed)))


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key.lower(), choices, n=1, cutoff=0.75)
    return _("; did you mean {key}?").format(key=close[0]) if close else ""


def _check_value(key: str, value: Any, spec: Key, line: int, *, base: Path | None = None) -> list[tuple[int, str]]:
    if value is None:
        return [(line, _("{key} has no value (expected {expected})").format(key=key, expected=_(spec.expected)))]
    if not spec.accepts(value):
        return [(line, _("{key} must be {expected}, not {value}").format(
            key=key, expected=_(spec.expected), value=_shown(key, value)))]
    if key == "cafile" and base is not None:
        cafile = base / Path(str(value)).expanduser()
        if not cafile.is_file():
            return [(line, _("cafile {path} does not exist (expected {expected})").format(
                path=cafile, expected=_(spec.expected)))]
    return []


def _shown(key: str, value: Any) -> str:
    if key == "password_command" or not isinstance(value, str | int | float | bool | dt.date):
        return _("a {type}").format(type=type(value).__name__) if not isinstance(value, list) else _("a list")
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
