#!/usr/bin/env python3
"""Benchmark: a sweep of many accounts over a slow link, one account at a
time against several at once.

    .venv/bin/python scripts/bench_sweep.py [--accounts 20] [--latency 0.02] [--jobs 1 8]

Starts a private Dovecot (scripts/dovecot_server.py), fills each account with
a few Thai letters in two folders, and puts the loopback proxy
(scripts/netproxy.py) in front of it adding `--latency` seconds in EACH
direction, as a WAN link to imap.mail.go.th would.  Every run backs up and
verifies every account into a fresh directory (mailbackup.sweep.run_sweep,
the code behind `mailbackup sweep`), and the table shows the wall time.

On a slow link a sweep is dominated by round trips (login, LIST, STATUS,
EXAMINE, FETCH, then the verification), so accounts run side by side
overlap their waiting: the speed-up grows with --jobs until the server or
`max_connections_per_server` is the limit.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS.parent))

import sample_mail  # noqa: E402
from dovecot_server import DovecotServer  # noqa: E402
from imapclient import IMAPClient  # noqa: E402
from netproxy import Proxy  # noqa: E402

from mailbackup.archive import private_umask  # noqa: E402
from mailbackup.config import AccountSettings, SweepSettings  # noqa: E402
from mailbackup.model import ConnectionSettings, ServerAddress  # noqa: E402
from mailbackup.sweep.options import SweepOptions  # noqa: E402
from mailbackup.sweep.run import run_sweep  # noqa: E402


def fill(server: DovecotServer, count: int, messages: int) -> dict[str, str]:
    passwords: dict[str, str] = {}
    context = ssl.create_default_context(cafile=str(server.cafile))
    for number in range(count):
        name, password = f"bench{number}@coj.go.th", f"รหัสผ่าน{number}"
        server.add_user(name, password)
        client = IMAPClient("localhost", server.port, ssl_context=context)
        client.plain_login(name, password)
        when = sample_mail._DEFAULT_DATE
        letters = [sample_mail.thai_letter(number * 100 + index, when) for index in range(messages)]
        sample_mail.fill_mailbox(client, {"INBOX": letters[: messages - 1], "งานคดี": letters[messages - 1:]})
        client.logout()
        passwords[name] = password
    return passwords


def one_run(passwords: dict[str, str], port: int, cafile: Path, jobs: int, work: Path) -> tuple[float, int, int]:
    dest = Path(tempfile.mkdtemp(prefix=f"jobs{jobs}-", dir=work))
    connection = ConnectionSettings(ServerAddress("localhost", port), cafile=str(cafile), timeout=30)
    accounts = tuple(AccountSettings(name, connection, dest=dest) for name in passwords)
    settings = SweepSettings(path=work / "bench.yaml", accounts=accounts, dest=dest)
    options = SweepOptions(jobs=jobs, max_connections_per_server=jobs,
                           password=lambda account: passwords[account.account])
    started = time.monotonic()
    result = run_sweep(settings, options, _Quiet())
    seconds = time.monotonic() - started
    bad = [outcome.account for outcome in result.outcomes if outcome.exit_code != 0]
    if bad:
        raise SystemExit(f"jobs {jobs}: accounts failed: {bad}")
    return seconds, sum(outcome.messages for outcome in result.outcomes), max(result.peak_connections.values())


class _Quiet:
    def sweep_start(self, accounts: int) -> None: ...
    def account_start(self, account: str, stage: str, attempt: int) -> None: ...
    def folder_start(self, account: str, folder: str, messages: int, size: int) -> None: ...
    def saved(self, account: str, messages: int, size: int) -> None: ...
    def warning(self, account: str, text: str) -> None: print(f"warning: {account}: {text}", file=sys.stderr)
    def account_waiting(self, account: str, seconds: float, reason: str) -> None: ...
    def account_done(self, account: str, exit_code: int, summary: str) -> None: ...


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5, help="per account (default 5)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added each way (default 0.02)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    private_umask()
    server = DovecotServer()
    server.start()
    try:
        passwords = fill(server, args.accounts, args.messages)
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch, \
                Proxy("127.0.0.1", server.port, latency=args.latency) as proxy:
            rows = [(jobs, *one_run(passwords, proxy.port, server.cafile, jobs, Path(scratch))) for jobs in args.jobs]
    finally:
        server.stop()
    base = rows[0][1]
    print(f"sweep (backup + verify) of {args.accounts} accounts x {args.messages} messages, "
          f"{args.latency * 1000:.0f} ms added each way")
    print(f"{'jobs':>4}  {'seconds':>8}  {'speed-up':>8}  {'accounts/min':>12}  {'messages':>8}  {'peak conns':>10}")
    for jobs, seconds, messages, peak in rows:
        print(f"{jobs:>4}  {seconds:>8.2f}  {base / seconds:>7.1f}x  {args.accounts / seconds * 60:>12.0f}  "
              f"{messages:>8}  {peak:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
