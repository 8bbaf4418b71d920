"""A real server that fails: a message Dovecot cannot read (it disconnects on
it every time), a link that drops, a server that stalls.  The backup saves
everything it can, names what it could not, and completes when it can."""

from __future__ import annotations

import re
import threading
import time

import sample_mail
from helpers import archive_contents, backup, run_cli, server_contents

from mailbackup.errors import ExitCode


def letters(count: int, start: int = 0) -> list[bytes]:
    return [sample_mail.thai_letter(start + i, sample_mail._DEFAULT_DATE) for i in range(count)]


def test_a_message_the_server_cannot_read_is_isolated(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    uids = sample_mail.fill_mailbox(client, {"INBOX": letters(30), "Other": letters(3, 100)})["INBOX"]
    expected = server_contents(client, "INBOX")
    bad_uid = uids[17]
    needle = re.search(rb"Message-ID: (<[^>]+>)", letters(18)[17], re.I).group(1)  # type: ignore[union-attr]
    broken = imap_user.server.find_message_file(imap_user.name, needle)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # Dovecot now disconnects on every FETCH of it

    result = backup(imap_user, tmp_path, "--batch-size", "10", "--retry-delay", "0.05")

    assert result.returncode == ExitCode.WARNINGS, result.stderr
    assert f"PARTIAL INBOX: UIDs not saved: {bad_uid}" in result.stderr
    stored = archive_contents(tmp_path, imap_user.name)
    assert set(stored["INBOX"]) == set(uids) - {bad_uid}
    for uid, message in stored["INBOX"].items():
        assert message.body == expected[uid][0]
    assert len(stored["Other"]) == 3
    # the failure is remembered and retried next time, not silently forgotten
    again = backup(imap_user, tmp_path, "--retry-delay", "0.05")
    assert again.returncode == ExitCode.WARNINGS and str(bad_uid) in again.stderr
    broken.write_bytes(data)  # the administrator repairs the file
    healed = backup(imap_user, tmp_path, "--retry-delay", "0.05")
    assert healed.returncode == 0, healed.stderr
    assert set(archive_contents(tmp_path, imap_user.name)["INBOX"]) == set(uids)


def through(proxy, user) -> list[str]:
    return ["--server", f"localhost:{proxy.port}", "--cafile", str(user.cafile)]


def test_dropped_connections_are_resumed(imap_user, imap_client_factory, tmp_path):
    from netproxy import Proxy

    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(120), "งานคดี": letters(40, 500)})
    expected = server_contents(client, "INBOX")
    with Proxy("127.0.0.1", imap_user.port, cut_after_bytes=60_000, max_cuts=4) as proxy:
        result = run_cli(["backup", imap_user.name, *through(proxy, imap_user), "--dest", str(tmp_path),
                          "--batch-size", "15", "--retry-delay", "0.05"], password=imap_user.password)
        cuts = proxy.cuts
    assert cuts == 4  # the link really dropped, four times, mid-transfer
    assert result.returncode == 0, result.stderr
    stored = archive_contents(tmp_path, imap_user.name)
    assert {uid: m.body for uid, m in stored["INBOX"].items()} == {uid: b for uid, (b, _, _) in expected.items()}
    assert len(stored["งานคดี"]) == 40


def test_a_stalled_server_is_abandoned_and_reconnected(imap_user, imap_client_factory, tmp_path):
    from netproxy import Proxy

    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(60)})
    with Proxy("127.0.0.1", imap_user.port, stall_after_bytes=40_000, max_cuts=1) as proxy:
        result = run_cli(["backup", imap_user.name, *through(proxy, imap_user), "--dest", str(tmp_path),
                          "--timeout", "2", "--retry-delay", "0.05"], password=imap_user.password)
        stalls = proxy.cuts
    assert stalls == 1
    assert result.returncode == 0, result.stderr
    assert len(archive_contents(tmp_path, imap_user.name)["INBOX"]) == 60


def test_a_link_that_drops_every_connection_early_is_a_connection_error(imap_user, imap_client_factory, tmp_path):
    from netproxy import Proxy

    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(5)})
    with Proxy("127.0.0.1", imap_user.port, cut_after_bytes=1500) as proxy:  # dies inside the TLS handshake
        result = run_cli(["backup", imap_user.name, *through(proxy, imap_user), "--dest", str(tmp_path),
                          "--retries", "1", "--retry-delay", "0.05"], password=imap_user.password)
    assert result.returncode == ExitCode.CONNECTION, result.stderr
    assert "connection" in result.stderr and "lost" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_a_flaky_link_still_completes(imap_user, imap_client_factory, tmp_path):
    """Every connection dies after 30 kB: the batches shrink until they fit, and all mail arrives."""
    from netproxy import Proxy

    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(40)})
    with Proxy("127.0.0.1", imap_user.port, cut_after_bytes=30_000) as proxy:
        result = run_cli(["backup", imap_user.name, *through(proxy, imap_user), "--dest", str(tmp_path),
                          "--retry-delay", "0.01"], password=imap_user.password)
        assert proxy.cuts >= 3
    assert result.returncode == 0, result.stderr
    assert len(archive_contents(tmp_path, imap_user.name)["INBOX"]) == 40


def test_a_run_that_dies_is_recorded_as_failed_not_ok(imap_user, imap_client_factory, tmp_path):
    """Reports read the runs table for the last good backup: a failed run must not look like one."""
    from helpers import state_rows
    from netproxy import Proxy

    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(30)})
    assert backup(imap_user, tmp_path).returncode == 0
    for body in letters(10, 900):
        client.append("INBOX", body)
    proxy = Proxy("127.0.0.1", imap_user.port, cut_after_bytes=12_000).start()

    def take_the_server_away() -> None:  # after the first drop, the server is gone for good
        while proxy.cuts == 0 and not stopped.is_set():
            time.sleep(0.01)
        proxy.stop()

    stopped = threading.Event()
    watcher = threading.Thread(target=take_the_server_away, daemon=True)
    watcher.start()
    try:
        result = run_cli(["backup", imap_user.name, *through(proxy, imap_user), "--dest", str(tmp_path),
                          "--retries", "1", "--retry-delay", "0.3"], password=imap_user.password)
    finally:
        stopped.set()
        watcher.join()
        proxy.stop()
    assert result.returncode == ExitCode.CONNECTION, result.stderr
    statuses = [row[0] for row in state_rows(tmp_path, imap_user.name, "SELECT status FROM runs ORDER BY id")]
    assert statuses == ["ok", "failed"]
