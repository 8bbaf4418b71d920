"""COMPRESS=DEFLATE (RFC 4978): after login, both directions of the
connection become one raw DEFLATE stream.

Mail text compresses three to five times, which is what matters on a slow
link to a government server; on loopback it only costs CPU, so the default
("auto") leaves it off for local servers.  The wrapper replaces imaplib's
socket and reader in place, so imapclient and our own pipelined reader keep
working unchanged.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import zlib
from typing import TYPE_CHECKING, Any

from mailbackup.imap import wire

if TYPE_CHECKING:
    import imapclient

MAX_INFLATE = 1 << 20  # bytes inflated per step: a small packet cannot balloon in memory


def worth_compressing(host: str, mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return not _is_local(host)


def _is_local(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start(client: imapclient.IMAPClient) -> bool:
    """Ask for COMPRESS DEFLATE; on OK, swap in the compressing socket and reader."""
    typ, _ = wire.simple_command(client, "COMPRESS", "DEFLATE")
    sock = wire.reading_socket(client)  # reads stay bounded by the deadline for progress
    if typ != "OK" or sock is None:
        return False
    wrapped = DeflateSocket(sock)
    wire.replace_stream(client, wrapped, io.BufferedReader(_InflateReader(wrapped), 1 << 16))
    return True


class DeflateSocket:
    """Looks like the socket imaplib holds; compresses on send, inflates on read."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        self._pending = b""

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def read_inflated(self) -> bytes:
        """The next inflated bytes; b"" at the end of the stream."""
        while True:
            if self._inflate.unconsumed_tail:
                data = self._inflate.decompress(self._inflate.unconsumed_tail, MAX_INFLATE)
            else:
                raw = self._sock.recv(1 << 16)
                if not raw:
                    return b""
                data = self._inflate.decompress(raw, MAX_INFLATE)
            if data:
                return data

    def __getattr__(self, name: str) -> Any:  # settimeout, shutdown, close, fileno …
        return getattr(self._sock, name)


class _InflateReader(io.RawIOBase):
    def __init__(self, sock: DeflateSocket) -> None:
        self._sock = sock
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if not self._buffer:
            self._buffer = self._sock.read_inflated()
            if not self._buffer:
                return 0
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count
