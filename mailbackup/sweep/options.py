"""Which accounts a sweep (or `check`) takes, and how it runs them.

Public API: `Shard` (``--shard I/N``), `select_accounts`, `SweepOptions`
(built from the config's sweep settings and the command line), and
`password_from_command_or_keyring`, the unattended password lookup.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailbackup import secrets
from mailbackup.config import AccountSettings, SweepSettings
from mailbackup.errors import UsageError
from mailbackup.i18n import _
from mailbackup.imap.pushback import DEFAULT_MAX_BUSY_WAIT

IN_PLACE_WAIT = 30.0  # a server asking for a longer pause gets the account requeued instead


@dataclass(frozen=True)
class Shard:
    """``I/N``, 1-based: machine I of N takes the accounts whose SHA-256 of
    the lower-cased account name, read as a number, leaves remainder I-1 when
    divided by N.  The same on every machine and Python version, so N machines
    split a config without talking to each other."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        parts = text.strip().split("/")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise UsageError(_("cannot read shard {text!r}").format(text=text),
                             hint=_("use I/N, e.g. 1/3 for the first of three machines"))
        index, count = int(parts[0]), int(parts[1])
        if count < 1 or not 1 <= index <= count:
            raise UsageError(_("shard {text!r} does not exist").format(text=text),
                             hint=_("I runs from 1 to N, e.g. 1/{count}").format(count=max(count, 1)))
        return cls(index, count)

    def holds(self, account: str) -> bool:
        digest = hashlib.sha256(account.strip().lower().encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def select_accounts(settings: SweepSettings, shard: Shard | None) -> list[AccountSettings]:
    return [account for account in settings.accounts if shard is None or shard.holds(account.account)]


def password_from_command_or_keyring(settings: AccountSettings) -> str:
    """An unattended lookup: the account's password_command, its password_file,
    else the keyring.  MAILBACKUP_PASSWORD is for one account and is not used;
    nobody is asked."""
    return secrets.lookup(settings.account, settings.host, password_command=settings.password_command,
                          password_file=settings.password_file, prompt=None, use_env=False)


@dataclass
class SweepOptions:
    jobs: int = 4
    max_connections_per_server: int = 4
    max_bytes_per_second: int | None = None
    verify: bool = True
    verify_max_age: timedelta | None = None  # skip files verified more recently than this
    max_time: timedelta | None = None  # --max-time: each account's backup, over the config's max_time
    report_dir: Path | None = None  # also write each account's verify reports here
    batch_size: int = 500
    max_retries: int = 5
    retry_delay: float = 1.0
    max_busy_wait: float = DEFAULT_MAX_BUSY_WAIT  # per account, every wait a busy server causes
    in_place_wait: float = IN_PLACE_WAIT
    workers: str = "threads"  # or processes: each job's accounts in a worker process (workers.py)
    stop: threading.Event = field(default_factory=threading.Event)
    password: Callable[[AccountSettings], str] = password_from_command_or_keyring

    @classmethod
    def from_settings(cls, settings: SweepSettings, **overrides: Any) -> SweepOptions:
        """The config's sweep settings; `overrides` (the command line) win when not None."""
        options = cls(jobs=settings.jobs, max_connections_per_server=settings.max_connections_per_server,
                      max_bytes_per_second=settings.max_bytes_per_second, workers=settings.workers)
        for key, value in overrides.items():
            if not hasattr(options, key):
                raise TypeError(f"SweepOptions has no {key!r}")
            if value is not None:
                setattr(options, key, value)
        return options
