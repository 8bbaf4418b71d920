#!/usr/bin/env python3
"""A loopback TCP proxy for fault-injection, latency tests and benchmarks.

Stdlib only.  It sits between a client and a real server and relays bytes; it
never terminates TLS, so a client may speak TLS end-to-end through it (implicit
TLS or STARTTLS alike).  Tests import it (``scripts/`` is put on ``sys.path`` by
``tests/conftest.py``)::

    with Proxy("127.0.0.1", server.port, latency=0.025) as proxy:
        IMAPClient("localhost", proxy.port, ssl_context=ctx)

It is also a CLI::

    python scripts/netproxy.py --target HOST:PORT [--latency 0.025] [--listen-port N]

which prints ``{"port": N}`` as one JSON line and relays until SIGTERM/SIGINT.

Faults and shaping (all per connection unless stated):

* ``latency``: seconds added to every chunk in EACH direction.  A chunk read at
  time t is written at t + latency; chunks keep their order but are not
  serialised behind each other's delay (a per-direction delivery queue), so a
  request/response round trip costs 2 x latency extra, as on a WAN link.
* ``cut_after_bytes``: once that many bytes have been relayed in
  ``cut_direction`` ("down" = server -> client, "up" = client -> server), both
  sides of that connection are closed abruptly (SO_LINGER 0, i.e. a TCP RST).
  The peer receives at most that many bytes in that direction (fewer if some
  were still in flight: a dropped link loses them), then sees a reset or EOF.
* ``stall_after_bytes``: once that many bytes have been relayed downstream,
  nothing more is delivered in either direction, but the sockets stay open
  (the client must hit its own timeout).  The connection is torn down when
  the client closes its side, or by ``stop()``.
* ``max_cuts``: at most this many cuts and stalls in total over the proxy's
  life (a fault fires only while ``cuts < max_cuts``), so a client that
  reconnects eventually gets through; ``cuts`` counts the faults done.
* ``bandwidth``: bytes/second cap for each direction of each connection
  (token bucket with a 50 ms burst).
* ``reject_first``: the first N connections are not forwarded: the proxy
  sends ``reject_banner`` (if any), closes its sending side and closes once
  the client does (at most ~1 s).  For plaintext IMAP the client sees e.g.
  ``* BYE Too many connections``; a client using implicit TLS sees a TLS
  handshake failure instead (the banner is not a TLS record), which is how
  a server that refuses before TLS looks from the client's side.
* ``on_server_data(index, chunk) -> chunk``: rewrites server -> client data
  (``index`` is the 0-based accept order of the connection).  It is called
  from proxy threads, with TCP chunks whose boundaries are arbitrary (a
  response line may be split over calls).  Only meaningful for plaintext
  protocols: TLS records cannot be rewritten (altering them breaks the
  connection with a MAC failure).  An exception from the hook resets the
  connection and is recorded in ``errors``.

Accounting: ``connections`` (accepted in total, rejected ones included),
``accepted_at`` (the ``time.monotonic()`` of each accept, in order),
``active`` (open now), ``max_active`` (peak concurrent), ``cuts``.  A
connection counts as active until the client closes its side: what the
client holds, not the proxy's own teardown after it (up to ``POLL`` later).

Every loop polls a closed flag at least every ``POLL`` seconds; all threads are
daemon threads, and ``stop()`` closes every socket and joins every thread in
bounded time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType, TracebackType

__all__ = ["Proxy", "main"]

POLL = 0.05  # socket timeout: how often blocked threads re-check for shutdown
CHUNK = 65536  # recv size
MAX_BUFFERED = 8 * 1024 * 1024  # per direction; the reader waits above this
CONNECT_TIMEOUT = 5.0
REJECT_LINGER = 1.0  # how long a rejected connection waits for the client to close
STOP_TIMEOUT = 5.0

# Queue markers (data items are bytes).
_EOF = "eof"  # half-close: shutdown(SHUT_WR) the destination
_CUT = "cut"  # reset the whole connection

ServerDataHook = Callable[[int, bytes], bytes]


def _set_linger_zero(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _configure(sock: socket.socket) -> None:
    sock.settimeout(POLL)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _TokenBucket:
    """``bandwidth`` bytes/second with a burst of 50 ms worth of bytes."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.burst = max(1, rate // 20)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def charge(self, nbytes: int) -> float:
        """Account for *nbytes* sent; return how long to wait before the next send."""
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= nbytes
        return -self.tokens / self.rate if self.tokens < 0 else 0.0


class _Pipe:
    """One direction of one connection: a reader thread and a delivery thread."""

    def __init__(self, conn: _Conn, src: socket.socket, dst: socket.socket, *, down: bool) -> None:
        self.conn = conn
        self.src = src
        self.dst = dst
        self.down = down
        self.items: deque[tuple[float, bytes | str]] = deque()
        self.cond = threading.Condition()
        self.buffered = 0
        self.relayed = 0  # bytes accepted for delivery (after rewriting)
        proxy = conn.proxy
        faults: list[tuple[int, str]] = []
        if proxy.cut_after_bytes is not None and (proxy.cut_direction == "down") == down:
            faults.append((proxy.cut_after_bytes, "cut"))
        if proxy.stall_after_bytes is not None and down:
            faults.append((proxy.stall_after_bytes, "stall"))
        faults.sort()
        self.faults = faults
        self.bucket = _TokenBucket(proxy.bandwidth) if proxy.bandwidth else None

    # -- queue
    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _put(self, due: float, item: bytes | str) -> bool:
        closed = self.conn.closed
        with self.cond:
            while self.buffered > MAX_BUFFERED and not closed.is_set():
                self.cond.wait(POLL)
            if closed.is_set():
                return False
            self.items.append((due, item))
            if isinstance(item, bytes):
                self.buffered += len(item)
            self.cond.notify_all()
        return True

    def _get(self) -> bytes | str | None:
        """Next item once it is due, or None when the connection is closed."""
        closed = self.conn.closed
        with self.cond:
            while not closed.is_set():
                if self.items:
                    due, item = self.items[0]
                    delay = due - time.monotonic()
                    if delay <= 0:
                        self.items.popleft()
                        if isinstance(item, bytes):
                            self.buffered -= len(item)
                        self.cond.notify_all()
                        return item
                    self.cond.wait(min(delay, 0.5))
                else:
                    self.cond.wait(0.5)
        return None

    def _client_gone(self) -> None:
        if not self.down:  # the client closed its side: for it, the connection is over
            self.conn.proxy._release(self.conn)

    # -- reading side
    def read_loop(self) -> None:
        conn = self.conn
        try:
            while not conn.closed.is_set():
                try:
                    data = self.src.recv(CHUNK)
                except TimeoutError:
                    continue
                except OSError:
                    self._client_gone()
                    conn.abort(rst=True)
                    return
                if conn.closed.is_set():
                    return
                if not data:
                    self._client_gone()
                    self._on_eof()
                    return
                if conn.stalled:
                    continue  # black hole: read and drop
                due = time.monotonic() + conn.proxy.latency
                hook = conn.proxy.on_server_data
                if self.down and hook is not None:
                    data = hook(conn.index, data)
                if not self._relay(due, data):
                    return
        except BaseException as exc:  # a hook failed, or a bug: never leave the connection half alive
            conn.proxy._record_error(exc)
            conn.abort(rst=True)

    def _relay(self, due: float, data: bytes) -> bool:
        """Queue *data*, applying faults; False when this reader should stop."""
        while self.faults and data:
            threshold, kind = self.faults[0]
            room = threshold - self.relayed
            if len(data) < room:
                break
            if not self.conn.proxy._claim_cut():
                self.faults.pop(0)  # max_cuts reached: this fault is disarmed
                continue
            self.faults.clear()
            head = data[: max(room, 0)]
            if head and not self._put(due, head):
                return False
            self.relayed += len(head)
            if kind == "cut":
                self._put(due, _CUT)
                return False
            self.conn.stalled = True
            return True
        if data:
            if not self._put(due, data):
                return False
            self.relayed += len(data)
        return True

    def _on_eof(self) -> None:
        conn = self.conn
        if conn.stalled:
            if not self.down:  # the client gave up: tear the connection down
                conn.abort(rst=False)
            return  # a server FIN is swallowed like everything else
        self._put(time.monotonic() + conn.proxy.latency, _EOF)

    # -- delivering side
    def write_loop(self) -> None:
        conn = self.conn
        try:
            while True:
                item = self._get()
                if item is None:
                    return
                if isinstance(item, str):
                    if item == _CUT:
                        conn.abort(rst=True)
                        return
                    try:  # _EOF
                        self.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        conn.abort(rst=True)
                    return
                if not self._send(item):
                    return
        except BaseException as exc:
            conn.proxy._record_error(exc)
            conn.abort(rst=True)

    def _send(self, data: bytes) -> bool:
        closed = self.conn.closed
        view = memoryview(data)
        while view:
            if closed.is_set():
                return False
            piece = view[: self.bucket.burst] if self.bucket else view
            try:
                sent = self.dst.send(piece)
            except TimeoutError:
                continue
            except OSError:
                self.conn.abort(rst=True)
                return False
            view = view[sent:]
            if self.bucket is not None:
                delay = self.bucket.charge(sent)
                if delay > 0 and closed.wait(delay):
                    return False
        return True


class _Conn:
    """One accepted client connection and (unless rejected) its upstream socket."""

    def __init__(self, proxy: Proxy, index: int, client: socket.socket) -> None:
        self.proxy = proxy
        self.index = index
        self.client = client
        self.server: socket.socket | None = None
        self.closed = threading.Event()
        self.rst = False
        self.stalled = False
        self.pipes: list[_Pipe] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.handler = threading.Thread(target=self._serve, name=f"netproxy-conn-{index}", daemon=True)

    def abort(self, *, rst: bool) -> None:
        """Stop relaying; sockets are closed (with RST if *rst*) by the handler."""
        with self._lock:
            if self.closed.is_set():
                return
            self.rst = rst
            self.closed.set()
            socks = [self.client, self.server]
        for sock in socks:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)  # wakes readers; sends nothing
        for pipe in self.pipes:
            pipe.wake()

    def _serve(self) -> None:
        try:
            if self.index < self.proxy.reject_first:
                self._reject()
                return
            try:
                server = socket.create_connection(self.proxy.target, timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                self.proxy._record_error(exc)
                self.rst = True
                return
            with self._lock:
                self.server = server
                if self.closed.is_set():  # stop() came while connecting
                    return
            _configure(self.client)
            _configure(server)
            up = _Pipe(self, self.client, server, down=False)
            down = _Pipe(self, server, self.client, down=True)
            self.pipes = [up, down]
            for pipe, what in ((up, "up"), (down, "down")):
                for loop, role in ((pipe.read_loop, "read"), (pipe.write_loop, "write")):
                    thread = threading.Thread(
                        target=loop, name=f"netproxy-conn-{self.index}-{what}-{role}", daemon=True
                    )
                    self.threads.append(thread)
                    thread.start()
            for thread in self.threads:
                thread.join()
        finally:
            self._close()
            self.proxy._conn_done(self)

    def _reject(self) -> None:
        sock = self.client
        banner = self.proxy.reject_banner
        deadline = time.monotonic() + REJECT_LINGER
        try:
            sock.settimeout(POLL)
            if banner:
                sock.sendall(banner)
            sock.shutdown(socket.SHUT_WR)
            # Wait for the client to close, so unread client data (say a TLS
            # ClientHello) does not turn our close into an RST that could
            # destroy the banner before the client reads it.
            while not self.closed.is_set() and time.monotonic() < deadline:
                try:
                    if not sock.recv(CHUNK):
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass

    def _close(self) -> None:
        with self._lock:
            self.closed.set()
            socks = [s for s in (self.client, self.server) if s is not None]
        for pipe in self.pipes:
            pipe.wake()
        for sock in socks:
            if self.rst:
                _set_linger_zero(sock)
            with contextlib.suppress(OSError):
                sock.close()


class Proxy:
    """Relay ``listen_host:port`` <-> ``target_host:target_port``; see the module docstring."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        latency: float = 0.0,
        cut_after_bytes: int | None = None,
        cut_direction: str = "down",
        stall_after_bytes: int | None = None,
        max_cuts: int | None = None,
        bandwidth: int | None = None,
        on_server_data: ServerDataHook | None = None,
        reject_first: int = 0,
        reject_banner: bytes | None = None,
    ) -> None:
        if cut_direction not in ("down", "up"):
            raise ValueError(f"cut_direction must be 'down' or 'up', not {cut_direction!r}")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 bytes/second")
        for name, value in (
            ("cut_after_bytes", cut_after_bytes),
            ("stall_after_bytes", stall_after_bytes),
            ("max_cuts", max_cuts),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.latency = latency
        self.cut_after_bytes = cut_after_bytes
        self.cut_direction = cut_direction
        self.stall_after_bytes = stall_after_bytes
        self.max_cuts = max_cuts
        self.bandwidth = bandwidth
        self.on_server_data = on_server_data
        self.reject_first = reject_first
        self.reject_banner = reject_banner

        self.port = 0
        self.connections = 0
        self.accepted_at: list[float] = []  # time.monotonic() of each accept, in order
        self.active = 0
        self.max_active = 0
        self.cuts = 0
        self.errors: list[BaseException] = []

        self._cond = threading.Condition()  # guards the counters and _conns
        self._conns: set[_Conn] = set()
        self._held: set[_Conn] = set()  # counted in `active`: accepted, and the client has not closed it
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> Proxy:
        if self._listener is not None or self._stopping.is_set():
            raise RuntimeError("Proxy.start() may be called once")
        listener = socket.socket(socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.listen_host, self.listen_port))
            listener.listen(128)
            listener.settimeout(POLL)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="netproxy-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close every socket and join every thread (waits at most about *timeout*)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            conn.abort(rst=True)
        for conn in conns:
            for thread in [conn.handler, *conn.threads]:
                if thread.ident is not None:
                    thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no connection is open; True if that happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- internals
    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(POLL)  # e.g. EMFILE: do not spin
                continue
            if self._stopping.is_set():
                _set_linger_zero(client)
                client.close()
                return
            with self._cond:
                conn = _Conn(self, self.connections, client)
                self.connections += 1
                self.accepted_at.append(time.monotonic())
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                self._conns.add(conn)
                self._held.add(conn)
            conn.handler.start()

    def _conn_done(self, conn: _Conn) -> None:
        with self._cond:  # a re-entrant lock: _release takes it again
            self._conns.discard(conn)
            self._release(conn)

    def _release(self, conn: _Conn) -> None:
        """The connection no longer counts as active (once)."""
        with self._cond:
            if conn in self._held:
                self._held.discard(conn)
                self.active -= 1
                self._cond.notify_all()

    def _claim_cut(self) -> bool:
        with self._cond:
            if self.max_cuts is not None and self.cuts >= self.max_cuts:
                return False
            self.cuts += 1
            return True

    def _record_error(self, exc: BaseException) -> None:
        with self._cond:
            self.errors.append(exc)


# ---------------------------------------------------------------------- CLI
def _parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback TCP proxy with latency and fault injection.")
    parser.add_argument("--target", type=_parse_target, required=True, help="HOST:PORT to relay to")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added each way")
    parser.add_argument("--bandwidth", type=int, help="bytes/second per direction per connection")
    parser.add_argument("--cut-after-bytes", type=int)
    parser.add_argument("--cut-direction", choices=("down", "up"), default="down")
    parser.add_argument("--stall-after-bytes", type=int)
    parser.add_argument("--max-cuts", type=int)
    parser.add_argument("--reject-first", type=int, default=0)
    parser.add_argument("--reject-banner", help='e.g. "* BYE Too many connections" (CRLF is appended)')
    args = parser.parse_args(argv)

    host, port = args.target
    proxy = Proxy(
        host,
        port,
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        latency=args.latency,
        bandwidth=args.bandwidth,
        cut_after_bytes=args.cut_after_bytes,
        cut_direction=args.cut_direction,
        stall_after_bytes=args.stall_after_bytes,
        max_cuts=args.max_cuts,
        reject_first=args.reject_first,
        reject_banner=args.reject_banner.encode() + b"\r\n" if args.reject_banner is not None else None,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proxy.start()
    try:
        print(json.dumps({"port": proxy.port}), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
