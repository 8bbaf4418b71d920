"""What a sweep pays once per server, not once per account (issue 18,
hundreds of accounts), against a real Dovecot: the CA file is loaded into
one TLS context shared by every connection, and a CA file replaced on disk
is loaded again; the summary at the end does not open every archive
again.  The dispatcher's grace between one account's close and
the next account's connection is counted from the close (the dispatcher
alone, no server: it only sees times)."""

from __future__ import annotations

import itertools
import json
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ImapUser
from dovecot_server import DovecotServer
from netproxy import Proxy
from test_sweep import mailboxes, write_config

from mailbackup.config import AccountSettings, load_sweep
from mailbackup.errors import TLSError
from mailbackup.imap import connect
from mailbackup.imap.pushback import WaitBudget
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress
from mailbackup.sweep.dispatch import CLOSE_GRACE, GRACE_MARGIN, Again, Dispatcher, Job, close_grace_left, grace_after
from mailbackup.sweep.limits import ServerLimits
from mailbackup.sweep.options import SweepOptions
from mailbackup.sweep.progress import LogProgress
from mailbackup.sweep.reports import write_reports
from mailbackup.sweep.run import run_sweep
from mailbackup.verify import summary as summary_module
from mailbackup.verify.results import Staff


@pytest.fixture
def ca_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str | None]:
    """The loads of the test's CA file (tmp_path/ca.pem) into TLS contexts from now on (the real ones are built;
    `ssl` is patched process-wide, and the test's own clients load the server's CA file)."""
    loads: list[str | None] = []
    real = ssl.create_default_context

    def counting(*args: Any, cafile: str | None = None, **kwargs: Any) -> ssl.SSLContext:
        if cafile == str(tmp_path / "ca.pem"):
            loads.append(cafile)
        return real(*args, cafile=cafile, **kwargs)

    monkeypatch.setattr(connect.ssl, "create_default_context", counting)
    monkeypatch.setattr(connect, "_contexts", {}, raising=False)  # a fresh cache
    return loads


def test_a_sweep_loads_the_ca_file_once_for_all_its_accounts(dovecot_server: DovecotServer,
                                                            imap_client_factory: Callable[..., Any],
                                                            tmp_path: Path, ca_loads: list[str | None]) -> None:
    users = mailboxes(dovecot_server, 5, imap_client_factory)
    cafile = tmp_path / "ca.pem"
    shutil.copyfile(dovecot_server.cafile, cafile)
    config = write_config(tmp_path / "unit.yaml", users, server=dovecot_server.server_arg, cafile=cafile,
                          dest=tmp_path / "dest")
    passwords = {user.name: user.password for user in users}
    options = SweepOptions(jobs=3, password=lambda settings: passwords[settings.account])
    result = run_sweep(load_sweep(config), options)
    assert [(o.account, o.backup, o.verify, o.messages) for o in result.outcomes] == \
        [(user.name, "ok", "complete", 4) for user in users]
    assert ca_loads == [str(cafile)], "one TLS context for the five accounts of one server"

    # A renewed certificate authority (the file replaced on disk) is read again, once.
    cafile.write_bytes(dovecot_server.cafile.read_bytes() + b"\n")
    _log_in(users[0], cafile)
    _log_in(users[1], cafile)
    assert ca_loads == [str(cafile), str(cafile)]


def test_a_missing_ca_file_is_reported_every_time_not_remembered(dovecot_server: DovecotServer,
                                                                 imap_user_factory: Callable[..., ImapUser],
                                                                 tmp_path: Path, ca_loads: list[str | None]) -> None:
    user = imap_user_factory(dovecot_server)
    cafile = tmp_path / "ca.pem"
    for _attempt in range(2):
        with pytest.raises(TLSError, match="cannot load CA file"):
            _log_in(user, cafile)
    shutil.copyfile(dovecot_server.cafile, cafile)  # put in place: the next connection works
    _log_in(user, cafile)
    assert ca_loads == [str(cafile)] * 3


def _log_in(user: ImapUser, cafile: Path) -> None:
    host, _colon, port = user.server_arg.rpartition(":")
    settings = ConnectionSettings(ServerAddress(host, int(port)), cafile=str(cafile))
    with ImapSession(settings, user.name, user.password) as session:
        assert session.has_capability("IMAP4rev1")


def test_the_close_grace_is_counted_from_the_close() -> None:
    """An account's server slot is handed on CLOSE_GRACE after its last
    connection closed, not CLOSE_GRACE after its reports were written."""
    assert close_grace_left(None, 100.0) == CLOSE_GRACE  # not known when it closed: all of it
    assert close_grace_left(100.0, 100.0) == pytest.approx(CLOSE_GRACE)
    assert close_grace_left(100.0, 100.0 + CLOSE_GRACE / 2) == pytest.approx(CLOSE_GRACE / 2)
    assert close_grace_left(100.0, 100.0 + 2 * CLOSE_GRACE) == 0.0  # the local work after it took longer


def test_the_grace_is_half_the_login_round_trip(dovecot_server: DovecotServer,
                                                 imap_user_factory: Callable[..., ImapUser]) -> None:
    """The close of a connection reaches the server half a round trip after it
    is sent: on loopback the grace is a few milliseconds, not 50; through a
    link of 50 ms each way it is more than 50 (the old fixed grace was less
    than the link needed)."""
    assert grace_after(None) == CLOSE_GRACE  # no login measured: the fixed grace
    assert grace_after(0.2) == pytest.approx(0.1 + GRACE_MARGIN)
    assert close_grace_left(100.0, 100.01, grace=0.03) == pytest.approx(0.02)
    user = imap_user_factory(dovecot_server)
    host, _colon, port = user.server_arg.rpartition(":")
    cafile = str(dovecot_server.cafile)
    with ImapSession(ConnectionSettings(ServerAddress(host, int(port)), cafile=cafile), user.name,
                     user.password) as session:
        assert session.login_seconds is not None and grace_after(session.login_seconds) < CLOSE_GRACE
    with Proxy("127.0.0.1", int(port), latency=0.05) as proxy, \
            ImapSession(ConnectionSettings(ServerAddress("localhost", proxy.port), cafile=cafile), user.name,
                        user.password) as session:
        assert session.login_seconds is not None and session.login_seconds >= 0.1  # one round trip at least
        assert grace_after(session.login_seconds) >= 0.05 + GRACE_MARGIN


def test_the_next_account_of_a_server_connects_only_after_the_grace() -> None:
    """One connection allowed toward the server: each account starts at
    least CLOSE_GRACE after the one before closed; one that hung up early and
    then worked locally for longer than the grace is followed at once."""
    limits = ServerLimits(1)
    events: list[tuple[str, str, float]] = []

    def work(job: Job) -> Again | None:
        name = job.settings.account
        events.append((name, "start", time.monotonic()))
        if name.startswith("early"):
            job.closed_at = time.monotonic()
            events.append((name, "closed", job.closed_at))
            time.sleep(3 * CLOSE_GRACE)  # reports, the state file: no connection
        else:
            events.append((name, "closed", time.monotonic()))  # the dispatcher is not told: all the grace
        events.append((name, "end", time.monotonic()))
        return None

    names = ["late0", "late1", "early0", "early1", "late2"]
    jobs = [Job(AccountSettings(name, ConnectionSettings(ServerAddress("one", 993))), WaitBudget(), "backup")
            for name in names]
    Dispatcher(4, limits, threading.Event(), LogProgress()).run(jobs, work, lambda job: None)
    at = {(name, what): when for name, what, when in events}
    for before, after in itertools.pairwise(names):
        assert at[after, "start"] - at[before, "closed"] >= CLOSE_GRACE, (before, after)
    # early0 ended 3 graces after it closed: early1 did not wait a grace more.
    assert at["early1", "start"] - at["early0", "end"] < at["late1", "start"] - at["late0", "end"]
    assert limits.peak == {"one": 1}


def test_the_sweep_summary_is_read_while_each_archive_is_open(dovecot_server: DovecotServer,
                                                             imap_client_factory: Callable[..., Any],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary at the end of a sweep does not open every account's state
    again (twice, one account after another): each worker read its account's
    part before letting go of the archive.  It says what reading the archives
    afresh says (`mailbackup report`), the account nobody could log in to too."""
    users = mailboxes(dovecot_server, 4, imap_client_factory)
    config = write_config(tmp_path / "unit.yaml", users, server=dovecot_server.server_arg,
                          cafile=dovecot_server.cafile, dest=tmp_path / "dest")
    passwords = {user.name: user.password for user in users} | {users[2].name: "wrong"}
    settings = load_sweep(config)
    result = run_sweep(settings, SweepOptions(jobs=2, password=lambda account: passwords[account.account]))
    assert [outcome.summary is not None for outcome in result.outcomes] == [True, True, False, True]

    read_again: list[Path] = []
    real_read = summary_module._read_account_summary
    monkeypatch.setattr(summary_module, "_read_account_summary",
                        lambda dest, directory: read_again.append(directory) or real_read(dest, directory))
    generated_at = datetime.now().astimezone()
    write_reports(result, tmp_path / "reports", as_of=date.today(), generated_at=generated_at)
    assert read_again == []
    swept = json.loads((tmp_path / "reports" / "summary.json").read_text(encoding="utf-8"))

    afresh = summary_module.collect_accounts(
        settings.dest, staff_for=lambda name: Staff.from_mapping(
            next(a.metadata for a in settings.accounts if a.account == name)),
        expected=[user.name for user in users])
    assert len(read_again) == 3  # every archive there is (the wrong password made none)
    assert swept == summary_module.summary_to_dict(afresh, date.today(), generated_at)
    assert [row["status"] for row in swept["accounts"]].count("complete") == 3
