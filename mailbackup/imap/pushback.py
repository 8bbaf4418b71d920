"""Server pushback: recognising a server that says "not now", and waiting
as told within a bound.  (Sharing a server's connections and bandwidth
between the accounts of a sweep is sweep/limits.py.)

Public API:

* `recognise(text)`: a `Pushback` (why, and how long the server asked us to
  wait) when a NO/BAD/BYE text means throttling, over-quota, unavailable or
  too many connections; None otherwise.  `imap/connect.py` turns such
  answers into `ServerBusy`.
* `pushback_of(exc)`: the `ServerBusy` behind an error (also when a folder
  operation wrapped it into a `FolderError`).
* `WaitBudget`: the total a run (or one account of a sweep) may spend waiting
  on a busy server; `wait_or_raise` waits as told or backs off
  exponentially, and gives up once the total would pass the bound.

Only errors.py is imported: every layer may use this module.  Nothing here
prints; waits are logged at INFO.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailbackup.errors import FolderError, Interrupted, MailbackupError, ServerBusy
from mailbackup.i18n import N_, _

log = logging.getLogger(__name__)

DEFAULT_MAX_BUSY_WAIT = 300.0  # seconds a busy server may cost one run (or one account of a sweep) in all
MAX_BACKOFF = 60.0  # longest single wait when the server does not say how long
MIN_BACKOFF = 0.05
LONGEST_TOLD_WAIT = 3600.0  # a server asking for more is read as asking for this

# RFC 5530 response codes that mean "temporarily refused", and the texts real
# servers send (FIELD-NOTES.md):
#   Office 365  NO Request is throttled. Suggested Backoff Time: 1500 milliseconds
#   Dovecot     NO [LIMIT] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)
#   Dovecot     NO [UNAVAILABLE] Temporary authentication failure.
#   Gmail       NO [OVERQUOTA] Account exceeded command or bandwidth limits.
#   Gmail       * BYE [ALERT] Too many simultaneous connections.
#   others      * BYE Too many connections / server busy, try again later
# The reasons are data (English); N_ puts them in the catalogue for the messages.
PUSHBACK_CODES = {"UNAVAILABLE": N_("unavailable"), "OVERQUOTA": N_("over quota"), "LIMIT": N_("limit reached"),
                  "INUSE": N_("in use"), "THROTTLED": N_("throttled")}
# Patterns, not compiled ones: `re` compiles each on first use (most runs never meet a busy server).
PUSHBACK_TEXTS = (
    (r"throttl", "throttled"),
    (r"too many (?:simultaneous |concurrent |open |parallel )?"
     r"(?:connections|sessions|logins|login attempts|requests|commands|users)", N_("too many connections")),
    (r"maximum number of (?:connections|sessions)", "too many connections"),
    (r"\b(?:rate|bandwidth|command|connection) limit", "limit reached"),
    (r"exceeded (?:\w+ )*(?:limits?|quota)", "limit reached"),
    (r"\bover ?quota\b", "over quota"),
    (r"try (?:again )?later|temporar(?:il)?y (?:unavailable|busy|failure|refused)", "unavailable"),
    (r"server (?:is )?(?:busy|overloaded)", N_("server busy")),
)
CODE = r"\[([A-Z-]+)(?:[ \]])"  # case-sensitive: response codes are upper case
TOLD_WAIT = (  # case-insensitive, like PUSHBACK_TEXTS
    r"backoff time:?\s*(\d+(?:\.\d+)?)\s*(milliseconds|millisecond|msec|ms|seconds|second|secs|sec|s)\b",
    r"(?:retry|try again|wait)(?: after| in| for)?\s+(\d+(?:\.\d+)?)\s*"
    r"(milliseconds|millisecond|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|hours|hour|hrs|hr)\b",
)
UNIT_SECONDS = {"ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "s": 1.0, "sec": 1.0,
                "secs": 1.0, "second": 1.0, "seconds": 1.0, "min": 60.0, "mins": 60.0, "minute": 60.0,
                "minutes": 60.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0}


@dataclass(frozen=True)
class Pushback:
    reason: str  # "throttled", "too many connections", "over quota", ...
    wait_seconds: float | None  # what the server asked for, when it said


def recognise(text: str) -> Pushback | None:
    """Does this server text ask us to slow down?  Response codes first
    (``[UNAVAILABLE]``, ``[OVERQUOTA]``, ``[LIMIT]``, ``[INUSE]``), then
    the wordings real servers use."""
    reason = next((PUSHBACK_CODES[code] for code in re.findall(CODE, text) if code in PUSHBACK_CODES), None)
    if reason is None:
        reason = next((name for pattern, name in PUSHBACK_TEXTS if re.search(pattern, text, re.I)), None)
    if reason is None:
        return None
    return Pushback(reason, told_wait(text))


def told_wait(text: str) -> float | None:
    """Seconds the server asked us to wait ("Suggested Backoff Time: 200
    milliseconds", "try again in 30 seconds"), if it said."""
    for pattern in TOLD_WAIT:
        match = re.search(pattern, text, re.I)
        if match:
            seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()]
            return min(seconds, LONGEST_TOLD_WAIT)
    return None


def busy_error(where: str, text: str) -> ServerBusy | None:
    """The ServerBusy for a server's answer, or None when it is not pushback."""
    pushback = recognise(text)
    if pushback is None:
        return None
    return ServerBusy(_("{server} is busy ({reason}): {reply}").format(
        server=where, reason=_(pushback.reason), reply=text), wait_seconds=pushback.wait_seconds)


def stopped_by_pushback(busy: ServerBusy) -> ServerBusy:
    """The error a run stops with when the server's pushback could not be waited
    out: what it said, and when to run again (what is saved stays saved; the next
    run continues from there)."""
    if busy.wait_seconds is not None and busy.wait_seconds < LONGEST_TOLD_WAIT:
        when = (datetime.now() + timedelta(seconds=busy.wait_seconds)).strftime("%Y-%m-%d %H:%M")
        advice = _("run it again after {time}; it continues where it stopped").format(time=when)
    else:
        advice = _("run it again later (the server's own words above say when); it continues where it stopped")
    return ServerBusy(_("stopped: {error}; {advice}").format(error=busy.message, advice=advice),
                      wait_seconds=busy.wait_seconds)


def pushback_of(exc: BaseException) -> ServerBusy | None:
    """The ServerBusy behind `exc`: itself, or the one a FolderError replaced
    (session.py re-raises SELECT/STATUS refusals as FolderError ``from None``,
    which keeps the original as ``__context__``)."""
    seen: BaseException | None = exc
    for _depth in range(3):
        if seen is None:
            return None
        if isinstance(seen, ServerBusy):
            return seen
        if not isinstance(seen, FolderError):
            return None
        seen = seen.__cause__ or seen.__context__
    return None


def backoff_delay(tries: int, first_delay: float) -> float:
    """1, 2, 4, ... times `first_delay` (at least MIN_BACKOFF), at most MAX_BACKOFF."""
    return min(max(first_delay, MIN_BACKOFF) * 2.0 ** max(tries - 1, 0), MAX_BACKOFF)


@dataclass
class WaitBudget:
    """Seconds a busy server may cost, in all, shared by every wait of a run.

    `in_place_limit`: a single wait longer than this is not sat out holding
    the connection; the caller gives up at once and `deferred` records how
    long the server wanted, so a sweep can requeue the account and serve
    others meanwhile.  A plain backup waits everything in place.
    """

    limit: float = DEFAULT_MAX_BUSY_WAIT
    in_place_limit: float | None = None  # None: the whole limit
    spent: float = 0.0
    deferred: float | None = None
    last: ServerBusy | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self) -> dict[str, object]:
        # A sweep's worker process gets and gives back an account's budget: everything but the lock.
        return {key: value for key, value in self.__dict__.items() if key != "_lock"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def remaining(self) -> float:
        return max(self.limit - self.spent, 0.0)

    def delay_for(self, busy: ServerBusy, tries: int, first_delay: float) -> float:
        if busy.wait_seconds is not None:
            return max(busy.wait_seconds, MIN_BACKOFF)
        return backoff_delay(tries, first_delay)

    def reserve(self, seconds: float) -> bool:
        """Charge a wait the caller does elsewhere (a requeued account); False when over the bound."""
        with self._lock:
            if self.spent + seconds > self.limit:
                return False
            self.spent += seconds
            return True

    def wait_or_raise(self, exc: MailbackupError, *, tries: int, first_delay: float,
                      stop: threading.Event | None = None, sleep: Callable[[float], object] | None = None) -> None:
        """Wait before retrying when `exc` is pushback; otherwise, or when the
        total would pass the bound, raise `exc` again.  Call it from the
        ``except`` clause that caught `exc`."""
        busy = pushback_of(exc)
        if busy is None:
            raise exc
        self.last = busy
        delay = self.delay_for(busy, tries, first_delay)
        in_place = self.limit if self.in_place_limit is None else self.in_place_limit
        if delay > in_place:
            self.deferred = max(self.deferred or 0.0, delay)
            raise exc
        if not self.reserve(delay):
            raise exc
        log.info("server busy (%s); waiting %.1f s before trying again", busy.message, delay)
        if stop is not None:
            if stop.wait(delay):
                raise Interrupted(_("stopped while waiting for a busy server"))
        else:
            (sleep or time.sleep)(delay)
