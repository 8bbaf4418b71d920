"""scripts/netproxy.py: relaying, latency, cuts, stalls, rejects, accounting.

All but the last tests run against tiny plain-socket servers started here; the
last ones go through the proxy to the real Dovecot with implicit TLS.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dovecot_server import DovecotServer  # scripts/ is put on sys.path by conftest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from netproxy import Proxy

if TYPE_CHECKING:
    from conftest import ImapUser

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
GREETING = b"* OK hello\r\n"
PAYLOAD = random.Random(1234).randbytes(200_000)


# ----------------------------------------------------------- tiny test servers
class TinyServer:
    """Threaded TCP server on 127.0.0.1 running ``handler(sock)`` per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.socks: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks.append(sock)
            thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError), sock:
            self.handler(sock)

    def stop(self) -> None:
        self.stopping.set()
        self.accepter.join(2)
        self.listener.close()
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(2)


def echo(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def greet_then_echo(sock: socket.socket) -> None:
    sock.sendall(GREETING)
    echo(sock)


def source(sock: socket.socket) -> None:
    """Send PAYLOAD, then close."""
    sock.sendall(PAYLOAD)
    sock.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], TinyServer]]:
    servers: list[TinyServer] = []

    def start(handler: Callable[[socket.socket], None]) -> TinyServer:
        servers.append(TinyServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def proxies() -> Iterator[Callable[..., Proxy]]:
    """``make(server_port, **options)`` -> a started Proxy, stopped at teardown."""
    started: list[Proxy] = []

    def make(port: int, **options: object) -> Proxy:
        proxy = Proxy("127.0.0.1", port, **options)  # type: ignore[arg-type]
        started.append(proxy)
        return proxy.start()

    yield make
    for proxy in started:
        proxy.stop()
        assert not proxy.errors


def connect(proxy: Proxy, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return data


def recv_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until EOF or reset; returns (data, "eof" | "reset")."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk


# ---------------------------------------------------------------------- relay
def test_relays_5mb_both_ways_and_propagates_half_close(
    serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]
) -> None:
    proxy = proxies(serve(echo).port)
    blob = random.Random(5).randbytes(5 * 1024 * 1024)
    with connect(proxy) as sock:

        def send() -> None:
            sock.sendall(blob)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        back, how = recv_until_closed(sock)
        sender.join()
    assert how == "eof"
    assert len(back) == len(blob)
    assert back == blob
    assert proxy.wait_idle(2)
    assert (proxy.connections, proxy.active, proxy.max_active, proxy.cuts) == (1, 0, 1, 0)


def test_latency_is_added_each_way(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    latency = 0.02
    proxy = proxies(serve(greet_then_echo).port, latency=latency)
    with connect(proxy) as sock:
        assert recv_exactly(sock, len(GREETING)) == GREETING
        start = time.monotonic()
        for i in range(10):
            line = b"ping %d\r\n" % i
            sock.sendall(line)
            assert recv_exactly(sock, len(line)) == line
        elapsed = time.monotonic() - start
    assert elapsed >= 10 * 2 * latency - 0.001


def test_latency_does_not_serialise_pipelined_chunks(
    serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]
) -> None:
    latency = 0.05
    chunks_seen: list[int] = []
    proxy = proxies(
        serve(echo).port, latency=latency, on_server_data=lambda index, data: chunks_seen.append(len(data)) or data
    )
    lines = [b"%02d-" % i + b"x" * 100 for i in range(50)]
    with connect(proxy) as sock:
        start = time.monotonic()
        for line in lines:
            sock.sendall(line)
            time.sleep(0.002)
        sent = time.monotonic() - start
        back = recv_exactly(sock, sum(map(len, lines)))
        elapsed = time.monotonic() - start
    assert back == b"".join(lines)
    assert len(chunks_seen) >= 5  # really relayed as separate chunks
    # Delivered about 2 x latency after sending; serialised it would be >= 50 x latency.
    assert 2 * latency - 0.001 <= elapsed < sent + 2 * latency + 5 * latency


def test_bandwidth_cap(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    proxy = proxies(serve(source).port, bandwidth=400_000)
    with connect(proxy) as sock:
        start = time.monotonic()
        data, how = recv_until_closed(sock)
        elapsed = time.monotonic() - start
    assert (data, how) == (PAYLOAD, "eof")
    # 200 kB at 400 kB/s with a 20 kB burst: >= 0.45 s.
    assert elapsed >= 0.4


# ----------------------------------------------------------------------- cuts
def test_cut_down_closes_after_n_bytes(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    proxy = proxies(serve(source).port, cut_after_bytes=10_000)
    with connect(proxy) as sock:
        data, how = recv_until_closed(sock)
    assert how == "reset"  # SO_LINGER 0, like a dropped link
    assert len(data) <= 10_000
    assert PAYLOAD.startswith(data)
    assert proxy.cuts == 1
    assert proxy.wait_idle(2)


def test_cut_up_closes_after_n_bytes(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    received: list[int] = []
    done = threading.Event()

    def sink(sock: socket.socket) -> None:
        total = 0
        try:
            while chunk := sock.recv(65536):
                total += len(chunk)
        finally:
            received.append(total)
            done.set()

    proxy = proxies(serve(sink).port, cut_after_bytes=10_000, cut_direction="up")
    with connect(proxy) as sock, pytest.raises(OSError):  # reset / broken pipe
        for _ in range(1000):
            sock.sendall(PAYLOAD[:50_000])
    assert done.wait(5)
    assert received[0] <= 10_000
    assert proxy.cuts == 1


def test_max_cuts_lets_later_connections_through(
    serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]
) -> None:
    proxy = proxies(serve(source).port, cut_after_bytes=1000, max_cuts=1)
    with connect(proxy) as sock:
        first, _ = recv_until_closed(sock)
    with connect(proxy) as sock:
        second = recv_until_closed(sock)
    assert len(first) <= 1000
    assert second == (PAYLOAD, "eof")
    assert (proxy.cuts, proxy.connections) == (1, 2)


def test_stall_makes_the_client_time_out(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    proxy = proxies(serve(source).port, stall_after_bytes=1000, max_cuts=1)
    data = b""
    with connect(proxy, timeout=0.5) as sock:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            while chunk := sock.recv(65536):
                data += chunk
        waited = time.monotonic() - start
    assert len(data) <= 1000
    assert PAYLOAD.startswith(data)
    assert waited >= 0.5
    assert proxy.cuts == 1
    assert proxy.wait_idle(2)  # the client closing tears the stalled connection down
    with connect(proxy) as sock:  # max_cuts: stalls count as cuts
        assert recv_until_closed(sock) == (PAYLOAD, "eof")


# ------------------------------------------------------- accounting, rejects
def test_a_connection_stops_counting_when_the_client_closes_it(serve: Callable[..., TinyServer],
                                                                proxies: Callable[..., Proxy]) -> None:
    """`active` is what the client holds: a server slow to see the close (here
    one that never reads again) does not keep it counted, so a client that
    closes one connection and opens the next is never seen holding two."""
    stay = threading.Event()
    proxy = proxies(serve(lambda sock: stay.wait(5)).port)
    first = connect(proxy)
    deadline = time.monotonic() + 2
    while proxy.active < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.close()
    assert proxy.wait_idle(2)
    with connect(proxy):
        deadline = time.monotonic() + 2
        while proxy.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (proxy.connections, proxy.max_active) == (2, 1)
    stay.set()


def test_connection_accounting(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    proxy = proxies(serve(echo).port)
    socks = [connect(proxy) for _ in range(4)]
    for sock in socks:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
    assert (proxy.connections, proxy.active, proxy.max_active) == (4, 4, 4)
    for sock in socks:
        sock.close()
    assert proxy.wait_idle(2)
    with connect(proxy) as sock:
        sock.sendall(b"y")
        assert recv_exactly(sock, 1) == b"y"
    assert (proxy.connections, proxy.max_active) == (5, 4)


def test_reject_first_sends_banner_and_closes(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    banner = b"* BYE Too many connections\r\n"
    proxy = proxies(serve(greet_then_echo).port, reject_first=1, reject_banner=banner)
    with connect(proxy) as sock:
        assert recv_until_closed(sock) == (banner, "eof")
    with connect(proxy) as sock:
        assert recv_exactly(sock, len(GREETING)) == GREETING
    assert proxy.connections == 2


def test_on_server_data_rewrites_responses(serve: Callable[..., TinyServer], proxies: Callable[..., Proxy]) -> None:
    seen: list[int] = []

    def hook(index: int, data: bytes) -> bytes:
        seen.append(index)
        return data.replace(b"* OK", b"* NO") if index == 0 else data

    proxy = proxies(serve(greet_then_echo).port, on_server_data=hook)
    with connect(proxy) as sock:
        assert recv_exactly(sock, len(GREETING)) == b"* NO hello\r\n"
    with connect(proxy) as sock:
        assert recv_exactly(sock, len(GREETING)) == GREETING
    assert set(seen) == {0, 1}


def test_stop_is_bounded_and_closes_everything(serve: Callable[..., TinyServer]) -> None:
    proxy = Proxy("127.0.0.1", serve(source).port, latency=0.05, stall_after_bytes=10).start()
    sock = connect(proxy)
    idle = connect(proxy)
    assert recv_exactly(sock, 10) == PAYLOAD[:10]
    start = time.monotonic()
    proxy.stop()
    assert time.monotonic() - start < 2
    assert not [t for t in threading.enumerate() if t.name.startswith("netproxy")]
    assert recv_until_closed(sock)[1] in ("eof", "reset")
    assert recv_until_closed(idle)[1] in ("eof", "reset")
    sock.close()
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_cli_prints_port_and_stops_on_sigterm(serve: Callable[..., TinyServer]) -> None:
    server = serve(greet_then_echo)
    cmd = [sys.executable, str(SCRIPTS / "netproxy.py"), "--target", f"127.0.0.1:{server.port}", "--latency", "0.01"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            port = json.loads(proc.stdout.readline())["port"]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                assert recv_exactly(sock, len(GREETING)) == GREETING
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


# --------------------------------------------------------------- real Dovecot
def test_imap_tls_login_through_proxy(dovecot_server: DovecotServer, imap_user: ImapUser) -> None:
    with Proxy("127.0.0.1", dovecot_server.port, latency=0.005) as proxy:
        ctx = ssl.create_default_context(cafile=str(dovecot_server.cafile))
        client = IMAPClient("localhost", proxy.port, ssl_context=ctx, timeout=10)
        client.plain_login(imap_user.name, imap_user.password)
        assert client.list_folders()
        client.logout()
        assert proxy.wait_idle(5)
        assert (proxy.connections, proxy.cuts, proxy.errors) == (1, 0, [])


def test_reject_before_implicit_tls_is_a_tls_failure(dovecot_server: DovecotServer, imap_user: ImapUser) -> None:
    with Proxy(
        "127.0.0.1", dovecot_server.port, reject_first=1, reject_banner=b"* BYE Too many connections\r\n"
    ) as proxy:
        ctx = ssl.create_default_context(cafile=str(dovecot_server.cafile))
        with pytest.raises((ssl.SSLError, OSError, IMAPClientError)):
            IMAPClient("localhost", proxy.port, ssl_context=ctx, timeout=10)
        client = IMAPClient("localhost", proxy.port, ssl_context=ctx, timeout=10)
        client.plain_login(imap_user.name, imap_user.password)
        client.logout()
        assert proxy.connections == 2
