"""A deadline for progress, not only for the next byte.

A socket timeout starts again with every byte: a server that sends one LIST
line every 2 s, or floods ``* 1 EXISTS`` during a FETCH, would keep a run
alive for ever.  Here every read from the connection is bounded by the time
left until `ProgressDeadline` expires, whatever arrives meanwhile; the
deadline moves on only with progress: a command sent (or our waiting for it
begun), its tagged completion, a FETCH answer, a piece of a message body.
Past it, `ConnectionLost` (exit 4, like a timeout; the retry policy may try
again on a new connection).

Public API: `ProgressDeadline(seconds, server)` (`progress()`, `check()`),
`DeadlineSocket(sock, deadline)` (recv and recv_into bounded by it; all else
passed to the socket), `SocketReader(sock)` (a raw stream over it, for
`io.BufferedReader`).
"""

from __future__ import annotations

import io
import socket
import time
from typing import Any

from mailbackup.errors import ConnectionLost
from mailbackup.i18n import _


class ProgressDeadline:
    def __init__(self, seconds: float, server: str) -> None:
        self.seconds = seconds
        self.server = server
        self.expires = time.monotonic() + seconds

    def progress(self) -> None:
        self.expires = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def check(self) -> float:
        """The seconds left; ConnectionLost when there are none."""
        left = self.remaining()
        if left <= 0:
            raise self.expired()
        return left

    def expired(self) -> ConnectionLost:
        return ConnectionLost(_("{server} made no progress for {seconds:g} seconds (it sent nothing that answers "
                                "our command); giving up on this connection").format(
            server=self.server, seconds=self.seconds))


class DeadlineSocket:
    """The connection's socket, each read bounded by the time the deadline leaves."""

    def __init__(self, sock: socket.socket, deadline: ProgressDeadline) -> None:
        self._sock = sock
        self.deadline = deadline

    def recv_into(self, buffer: Any, size: int = 0) -> int:
        return int(self._bounded(lambda: self._sock.recv_into(buffer, size)))

    def recv(self, size: int) -> bytes:
        return bytes(self._bounded(lambda: self._sock.recv(size)))

    def _bounded(self, read: Any) -> Any:
        full = self._sock.gettimeout()
        left = self.deadline.check()
        bounded = full is None or left < full
        self._sock.settimeout(left if bounded else full)
        try:
            return read()
        except TimeoutError:
            if bounded:  # the deadline, not the socket's own timeout, ran out: say so
                raise self.deadline.expired() from None
            raise
        finally:
            self._sock.settimeout(full)

    def __getattr__(self, name: str) -> Any:  # sendall, settimeout, shutdown, fileno …
        return getattr(self._sock, name)


class SocketReader(io.RawIOBase):
    """What ``socket.makefile("rb")`` gives imaplib, over a DeadlineSocket."""

    def __init__(self, sock: DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        return self._sock.recv_into(target)
