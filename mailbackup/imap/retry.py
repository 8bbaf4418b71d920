"""One retry policy for every conversation with a server: backup, verify and
restore (source or target) alike.

Public API:

* `RetryPolicy`: how many times, how long to back off, and the `WaitBudget`
  a busy server may cost in all;
* `Retrying(policy, reconnect, server)`: `call(action, reopen)`
  runs a server action; on a dropped connection (`ConnectionLost`) it
  reconnects with exponential backoff, re-opens the folder (`reopen`) and
  tries again, `tries` times in all; on pushback (`ServerBusy`, also behind
  a `FolderError`: "throttled", "[UNAVAILABLE] try again later", too many
  connections) it waits as the server asks, within the budget, without
  counting a try.  `reconnect(reopen)` is the same reconnection on its own,
  for a caller that must look at what a dropped command left behind, as
  `call_when_free(action)` only waits out pushback;
* `refusal_pushback(server, code, text)`: the `ServerBusy` for a refused
  command (an APPEND) whose answer means "not now" rather than "never".

Only errors and pushback are imported: nothing here knows imapclient.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mailbackup.errors import ConnectError, ConnectionLost, FolderError, ServerBusy
from mailbackup.i18n import _
from mailbackup.imap.pushback import MAX_BACKOFF, WaitBudget, busy_error

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RetryPolicy:
    max_retries: int = 5  # reconnects per action, and tries per reconnection
    retry_delay: float = 1.0  # first backoff; doubles per try
    busy_wait: WaitBudget = field(default_factory=WaitBudget)
    stop: threading.Event | None = None  # set: a wait on a busy server ends with Interrupted


class Retrying:
    """Runs actions against one connection under a `RetryPolicy`.

    `reconnect` opens a fresh connection (logged in); `reopen`, given per call,
    selects again whatever folder the action needs.  `server` is named in the
    error of a reconnection that failed for good."""

    def __init__(self, policy: RetryPolicy, reconnect: Callable[[], None], server: str) -> None:
        self.policy = policy
        self._reconnect = reconnect
        self.server = server

    def call(self, action: Callable[[], T], reopen: Callable[[], object] | None = None,
             tries: int | None = None) -> T:
        attempts = tries or (self.policy.max_retries + 1)
        lost = busy = 0
        while True:
            try:
                return action()
            except ConnectionLost as exc:
                lost += 1
                if lost >= attempts:
                    raise
                log.info("connection lost (%s); reconnecting, try %d", exc.message, lost)
                self.reconnect(reopen)
            except (ServerBusy, FolderError) as exc:
                busy += 1
                self._wait_out(exc, busy)

    def call_when_free(self, action: Callable[[], T]) -> T:
        """Run `action` again while the server pushes back; a dropped
        connection is left to the caller (who must find out what got through)."""
        busy = 0
        while True:
            try:
                return action()
            except (ServerBusy, FolderError) as exc:
                busy += 1
                self._wait_out(exc, busy)

    def reconnect(self, reopen: Callable[[], object] | None = None) -> None:
        """A new connection, tried `max_retries` times with growing pauses;
        ConnectError when none comes up."""
        delay = self.policy.retry_delay
        failed = busy = 0
        time.sleep(delay)
        while True:
            try:
                self._reconnect()
                if reopen is not None:
                    reopen()
                return
            except (ConnectionLost, ConnectError) as exc:
                failed += 1
                if failed >= self.policy.max_retries:
                    raise ConnectError(_("could not reconnect to {server} after {count} tries: {error}").format(
                        server=self.server, count=failed, error=exc.message)) from None
                delay = min(delay * 2, MAX_BACKOFF)
                time.sleep(delay)
            except (ServerBusy, FolderError) as exc:  # e.g. NO [LIMIT] too many connections at login
                busy += 1
                self._wait_out(exc, busy)

    def _wait_out(self, exc: ServerBusy | FolderError, tries: int) -> None:
        """Wait as the server asks when `exc` is pushback; raise it otherwise."""
        self.policy.busy_wait.wait_or_raise(exc, tries=tries, first_delay=self.policy.retry_delay,
                                            stop=self.policy.stop)


# An APPEND refused with these codes is refused for good (a full mailbox, a
# message too large): waiting would not change the answer.
PERMANENT_REFUSALS = frozenset({"OVERQUOTA", "TOOBIG", "LIMIT"})


def refusal_pushback(server: str, code: str | None, text: str) -> ServerBusy | None:
    if code is not None and code.upper() in PERMANENT_REFUSALS:
        return None
    return busy_error(server, text)
