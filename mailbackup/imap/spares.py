"""Connections opened ahead, while the first one logs in.

A first backup on several connections wants the others as soon as the
folder list is read.  Opening one (TCP, TLS, the greeting) costs two or
three round trips; begun as soon as the server accepted the first
connection's TCP connection, they open while it secures its channel, logs
in and reads the folder list, and then only log in themselves (one round
trip).  Not before: the server sees the run's own connection first (a
server that admits a few connections per address admits that one).  On a
link of 100 ms each way that is 0.3 s earlier than waiting for the first
channel to be secure (TLS and the greeting).

Only the channel is opened ahead: no credentials are sent before the first
connection's login succeeded, so a wrong password is tried once, not once
per connection (servers count failed logins against an account or an
address).

Public API: `Spares(open_one, count)`, `start()` (begins opening them; once),
`take()` (an opened client, or None when none is left, none was started or
its opening failed: the caller opens its own) and `close()` (closes what
nobody took).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import imapclient

log = logging.getLogger(__name__)


class _Spare:
    def __init__(self, open_one: Callable[[], imapclient.IMAPClient], name: str) -> None:
        self.client: imapclient.IMAPClient | None = None
        self.thread = threading.Thread(target=self._open, args=(open_one,), name=name, daemon=True)
        self.thread.start()

    def _open(self, open_one: Callable[[], imapclient.IMAPClient]) -> None:
        try:
            self.client = open_one()
        except Exception as exc:  # its taker opens its own and reports what goes wrong then
            log.debug("a connection opened ahead failed: %s", exc)

    def result(self) -> imapclient.IMAPClient | None:
        self.thread.join()
        client, self.client = self.client, None
        return client


class Spares:
    def __init__(self, open_one: Callable[[], imapclient.IMAPClient], count: int) -> None:
        self._open_one, self._count = open_one, count
        self._waiting: list[_Spare] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            count, self._count = self._count, 0
            self._waiting += [_Spare(self._open_one, f"connection-ahead-{index + 2}") for index in range(count)]

    def take(self) -> imapclient.IMAPClient | None:
        with self._lock:
            spare = self._waiting.pop(0) if self._waiting else None
        return spare.result() if spare is not None else None

    def close(self, close_one: Callable[[imapclient.IMAPClient], None]) -> None:
        with self._lock:
            left, self._waiting, self._count = self._waiting, [], 0
        for spare in left:
            client = spare.result()
            if client is not None:
                close_one(client)
