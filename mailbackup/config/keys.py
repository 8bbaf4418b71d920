"""The keys a config file may hold, where, and what each accepts: the
tables yamlfile.py checks a file against and config/__init__.py reads
settings from.  Each `Key` says what is expected in every error about it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailbackup.errors import UsageError
from mailbackup.i18n import N_
from mailbackup.model import ServerAddress
from mailbackup.text import parse_duration

FORMATS = ("maildir", "mbox")  # the stores archive.py can open
FORBIDDEN = {"password", "pass", "passwd", "pwd", "secret"}
STAFF_KEYS = ("title", "name", "surname", "position", "unit")


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


def _connections(value: Any) -> bool:
    return _count(value) and value <= MAX_CONNECTIONS


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _duration(value: Any) -> bool:
    if not _text(value):
        return False
    try:
        return parse_duration(value) > dt.timedelta(0)
    except UsageError:
        return False


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
WORKER_MODES = ("threads", "processes")  # how a sweep runs its accounts (sweep/workers.py)
MAX_CONNECTIONS = 16  # per account; servers cap connections per user (Dovecot 10, Gmail 15)


ACCOUNT_KEYS: dict[str, Key] = {
    "server": Key(N_("HOST or HOST:PORT (e.g. imap.mail.go.th:993)"), _server),
    "cafile": Key(N_("the path of a PEM file"), _text),
    "starttls": Key(N_("true or false"), _flag),
    "insecure": Key(N_("true or false"), _flag),
    "compress": Key(N_("auto, always or never (true = always, false = never)"),
                    lambda value: _flag(value) or value in COMPRESS_MODES),
    "timeout": Key(N_("a number of seconds above 0"), _seconds),
    "max_time": Key(N_("a duration, e.g. 90m, 2h or 1h30m"), _duration),
    "connections": Key(N_("a whole number of connections from 1 to 16"), _connections),
    "dest": Key(N_("a directory path"), _text),
    "format": Key(N_("maildir or mbox"), lambda value: value in FORMATS),
    "deadline": Key(N_("a date YYYY-MM-DD"), _date),
    "include": Key(N_("a folder glob or a list of them"), _globs),
    "exclude": Key(N_("a folder glob or a list of them"), _globs),
    "password_command": Key(N_("a command that prints the password"), _text),
    "password_file": Key(N_("the path of a file holding the password, readable by you alone"), _text),
}
SWEEP_KEYS: dict[str, Key] = {
    "jobs": Key(N_("a whole number of accounts at once, 1 or more"), _count),
    "max_connections_per_server": Key(N_("a whole number, 1 or more"), _count),
    "max_bytes_per_second": Key(N_("a whole number of bytes per second, 1 or more (e.g. 2000000)"), _count),
    "workers": Key(N_("threads or processes"), lambda value: value in WORKER_MODES),
}
ENTRY_KEYS: dict[str, Key] = {
    "account": Key(N_("the IMAP login, e.g. somchai.j@coj.go.th (no spaces or quotes)"), _account_name),
    **{key: Key(N_("text (quote numbers)"), _text) for key in STAFF_KEYS},
}
DEFAULTS_ALLOWED = {**ACCOUNT_KEYS, **SWEEP_KEYS, "unit": ENTRY_KEYS["unit"]}
ENTRY_ALLOWED = {**ACCOUNT_KEYS, **ENTRY_KEYS}
