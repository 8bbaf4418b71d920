"""A sweep's accounts in worker processes (issue 18, hundreds of accounts),
against a real Dovecot: a worker killed in the middle of an account fails
that account with one clear line while the others finish, and its archive
is free again; the password reaches a worker through its pipe, never its
command line or environment; log records of the workers reach the parent's
logging; the config's `workers` key.  (The CLI tests of test_sweep.py
run the representative sweeps, full with verification, pushback, the
per-server cap, the bandwidth cap and SIGTERM, through both paths.)"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dovecot_server import DovecotServer
from test_sweep import mailboxes, write_config

from mailbackup.archive import account_dir
from mailbackup.config import load_sweep
from mailbackup.errors import ConfigError
from mailbackup.state.lock import ArchiveLock
from mailbackup.sweep import workers
from mailbackup.sweep.options import SweepOptions
from mailbackup.sweep.run import run_sweep


def relayed(monkeypatch: pytest.MonkeyPatch, on_message: Callable[[Any, tuple[Any, ...]], None]) -> None:
    """Call `on_message(relay, message)` in the parent for every message a worker sends, before it is handled."""
    real = workers._Relay._handle

    def handle(relay: Any, message: tuple[Any, ...]) -> None:
        on_message(relay, message)
        real(relay, message)

    monkeypatch.setattr(workers._Relay, "_handle", handle)


def test_a_killed_worker_fails_its_account_and_the_others_finish(dovecot_server: DovecotServer,
                                                                 imap_client_factory: Callable[..., Any],
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    users = mailboxes(dovecot_server, 5, imap_client_factory)
    victim = users[1]
    config = write_config(tmp_path / "unit.yaml", users, server=dovecot_server.server_arg,
                          cafile=dovecot_server.cafile, dest=tmp_path / "dest")
    passwords = {user.name: user.password for user in users}
    killed: list[int] = []

    def kill_the_victims_worker(relay: Any, message: tuple[Any, ...]) -> None:
        if message[:2] == ("progress", "folder_start") and message[2][0] == victim.name and not killed:
            killed.append(relay.worker.process.pid)
            os.kill(relay.worker.process.pid, signal.SIGKILL)

    relayed(monkeypatch, kill_the_victims_worker)
    options = SweepOptions(jobs=2, workers="processes", password=lambda account: passwords[account.account])
    result = run_sweep(load_sweep(config), options)
    outcomes = {outcome.account: outcome for outcome in result.outcomes}
    assert killed
    assert outcomes[victim.name].backup == "failed"
    assert outcomes[victim.name].error == f"worker process ended unexpectedly (signal {int(signal.SIGKILL)})"
    assert all((outcome.backup, outcome.verify) == ("ok", "complete")
               for name, outcome in outcomes.items() if name != victim.name)
    # The kernel let go of the dead worker's archive lock: the next sweep backs the account up.
    ArchiveLock(account_dir(tmp_path / "dest", victim.name)).acquire().release()
    monkeypatch.undo()
    again = run_sweep(load_sweep(config), SweepOptions(jobs=2, workers="processes",
                                                       password=lambda account: passwords[account.account]))
    assert all(outcome.verify == "complete" for outcome in again.outcomes)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_password_never_reaches_a_workers_command_line_or_environment(
        dovecot_server: DovecotServer, imap_client_factory: Callable[..., Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    users = mailboxes(dovecot_server, 2, imap_client_factory)
    config = write_config(tmp_path / "unit.yaml", users, server=dovecot_server.server_arg,
                          cafile=dovecot_server.cafile, dest=tmp_path / "dest")
    passwords = {user.name: user.password for user in users}
    seen: dict[int, bytes] = {}

    def read_the_worker(relay: Any, message: tuple[Any, ...]) -> None:
        if message[:2] == ("progress", "folder_start"):
            worker = relay.worker.process.pid
            starter = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the fork server
            for pid in (worker, starter):
                proc = Path(f"/proc/{pid}")
                seen[pid] = (proc / "cmdline").read_bytes() + b"\n" + (proc / "environ").read_bytes()

    relayed(monkeypatch, read_the_worker)
    caplog.set_level(logging.DEBUG)
    result = run_sweep(load_sweep(config), SweepOptions(jobs=2, workers="processes",
                                                        password=lambda account: passwords[account.account]))
    assert [outcome.verify for outcome in result.outcomes] == ["complete", "complete"]
    assert len(seen) >= 2 and all(seen.values())
    assert not any(user.password.encode() in text for text in seen.values() for user in users)
    # The workers' own log lines reach the parent's logging (here pytest's), at the parent's level.
    from_workers = [record for record in caplog.records if record.process != os.getpid()]
    assert any("archived files" in record.getMessage() for record in from_workers)
    assert not any(user.password in record.getMessage() for record in caplog.records for user in users)


def test_workers_is_a_sweep_setting_of_the_config(tmp_path: Path) -> None:
    config = tmp_path / "unit.yaml"
    config.write_text("defaults:\n  server: imap.example.org\n  workers: processes\naccounts:\n  - a@example.org\n",
                      encoding="utf-8")
    assert SweepOptions.from_settings(load_sweep(config)).workers == "processes"
    assert SweepOptions.from_settings(load_sweep(config), workers="threads").workers == "threads"
    config.write_text("defaults:\n  server: imap.example.org\naccounts:\n  - a@example.org\n", encoding="utf-8")
    assert SweepOptions.from_settings(load_sweep(config)).workers == "threads"
    config.write_text("defaults:\n  server: imap.example.org\n  workers: many\naccounts:\n  - a@example.org\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=r"workers.*threads or processes"):
        load_sweep(config)
