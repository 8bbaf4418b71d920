"""--max-time / max_time (issue 14 item 4): a run ends cleanly at its time
limit; what it saved is kept and consistent, it says so, exits 1, and the
next run completes the archive.  Real Dovecot behind a loopback proxy whose
latency makes each FETCH round trip cost 0.2 s, so a run takes long enough
to be cut."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sample_mail
from helpers import archive_contents, assert_state_matches_disk, keyring_env, run_cli, server_contents, state_rows
from netproxy import Proxy
from test_sweep import import_passwords, write_config

from mailbackup.config import load_account
from mailbackup.errors import ConfigError, ExitCode, UsageError
from mailbackup.text import parse_duration

MESSAGES = 60


def letters(count: int) -> list[sample_mail.SampleMessage]:
    when = sample_mail._DEFAULT_DATE
    return [sample_mail.SampleMessage(sample_mail.thai_letter(i, when), (), when) for i in range(count)]


def slow_backup(user, proxy: Proxy, dest: Path, *extra: str):
    """One message per FETCH, no pipelining and one connection (others would share the
    folder's batches): about 0.2 s a message through the proxy."""
    return run_cli(["backup", user.name, "--server", f"localhost:{proxy.port}", "--cafile", str(user.cafile),
                    "--dest", str(dest), "--batch-size", "1", "--pipeline", "1", "--connections", "1",
                    "--no-verify", *extra],
                   password=user.password)


def test_max_time_ends_a_backup_cleanly_and_the_next_run_completes_it(dovecot_server, imap_user,
                                                                      imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(MESSAGES)})
    with Proxy("127.0.0.1", dovecot_server.port, latency=0.1) as proxy:
        started = time.monotonic()
        cut = slow_backup(imap_user, proxy, tmp_path, "--max-time", "6s")
        seconds = time.monotonic() - started

        assert cut.returncode == ExitCode.WARNINGS, cut.stderr
        assert "stopped at the time limit" in cut.stderr and "Traceback" not in cut.stderr
        assert seconds < 6 + 8  # the limit, one batch, start-up and the last commit
        # (the folder's UIDVALIDITY is recorded when it is finished: count the saved rows)
        [(saved,)] = state_rows(tmp_path, imap_user.name, "SELECT count(*) FROM messages")
        assert 0 < saved < MESSAGES, cut.stdout + cut.stderr
        assert f"saved {saved} messages" in cut.stdout
        assert_state_matches_disk(tmp_path, imap_user.name)

        done = slow_backup(imap_user, proxy, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_state_matches_disk(tmp_path, imap_user.name)
    stored = archive_contents(tmp_path, imap_user.name)["INBOX"]
    assert {uid: m.body for uid, m in stored.items()} == {
        uid: body for uid, (body, _, _) in server_contents(client, "INBOX").items()}


def test_a_sweep_applies_max_time_to_each_account(dovecot_server, imap_user_factory, imap_client_factory,
                                                  tmp_path):
    users = [imap_user_factory(dovecot_server) for _ in range(2)]
    for user in users:
        sample_mail.fill_mailbox(imap_client_factory(user), {"INBOX": letters(3 * MESSAGES)})
    dest = tmp_path / "dest"
    with Proxy("127.0.0.1", dovecot_server.port, latency=0.1) as proxy:
        config = write_config(tmp_path / "unit.yaml", users, server=f"localhost:{proxy.port}",
                              cafile=dovecot_server.cafile, dest=dest, defaults="max_time: 5s")
        env = keyring_env(tmp_path)
        import_passwords(config, env, {user.name: user.password for user in users})
        command = ["sweep", str(config), "--jobs", "2", "--batch-size", "1"]
        done = run_cli(command, env=env)
    assert done.returncode == ExitCode.WARNINGS, done.stdout + done.stderr
    rows = {row["account"]: row for row in
            json.loads((dest / "reports" / "sweep.json").read_text(encoding="utf-8"))["accounts"]}
    for user in users:
        assert rows[user.name]["backup"] == "out of time"
        assert any("stopped at the time limit" in problem for problem in rows[user.name]["problems"])
        assert 0 < state_rows(dest, user.name, "SELECT count(*) FROM messages")[0][0] < 3 * MESSAGES
        assert_state_matches_disk(dest, user.name)


@pytest.mark.parametrize("text,seconds", [("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45)])
def test_max_time_reads_durations(text, seconds, tmp_path):
    assert parse_duration(text).total_seconds() == seconds
    config = tmp_path / "c.yaml"
    config.write_text(f"defaults:\n  max_time: {text}\naccounts:\n  - a@coj.go.th\n", encoding="utf-8")
    settings = load_account(config, "a@coj.go.th", {})
    assert settings.max_time is not None and settings.max_time.total_seconds() == seconds


def test_a_max_time_that_is_no_duration_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("defaults:\n  max_time: soon\naccounts:\n  - a@coj.go.th\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="max_time"):
        load_account(config, "a@coj.go.th", {})
    with pytest.raises(UsageError):
        load_account(None, "a@coj.go.th", {"max_time": "two hours"})
