"""`--connections N`: folders synced on several connections at once, against
a real Dovecot that records every session (rawlog), so the tests see what
the server saw: how many connections, which folder on which, and that the
archive holds exactly the server's mail."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import sample_mail
from dovecot_server import DovecotServer, RawSession
from helpers import archive_contents, backup, run_cli, server_args, server_contents, server_folders, sessions_of
from netproxy import Proxy
from test_sweep import import_passwords, keyring_env, sweep_rows, write_config

from mailbackup.errors import AuthError, ExitCode
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress


def start(server: DovecotServer, *, max_userip: int | None = None) -> DovecotServer:
    server.start()
    if max_userip is not None:
        text = server.conf_path.read_text(encoding="utf-8")
        server.conf_path.write_text(re.sub(r"mail_max_userip_connections = \d+",
                                           f"mail_max_userip_connections = {max_userip}", text), encoding="utf-8")
        server.reload()
    return server


@pytest.fixture
def filled(rawlog_server, imap_user_factory, imap_client_factory):
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    sample_mail.fill_mailbox(client, sample_mail.sample_mailbox())
    return user, client


def examined(session: RawSession) -> list[str]:
    return [command.split(" ", 1)[1] for command in session.commands() if command.startswith("EXAMINE ")]


def assert_archive_is_server(dest: Path, user, client) -> None:
    stored = archive_contents(dest, user.name)
    selectable = [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]
    assert set(stored) == set(selectable)
    for name in selectable:
        assert {uid: (message.body, _flags(message.flags)) for uid, message in stored[name].items()} == \
            {uid: (body, _flags(flags)) for uid, (body, flags, _) in server_contents(client, name).items()}


def test_three_connections_share_the_folders_and_store_each_once(filled, tmp_path):
    user, client = filled
    folders = [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]

    sessions = sessions_of(lambda: _ok(backup(user, tmp_path, "--no-verify", "--connections", "3")),
                           user.server, user)

    assert 2 <= len(sessions) <= 3, f"{len(sessions)} connections for --connections 3"
    opened = [name for session in sessions for name in examined(session)]
    assert len(opened) == len(folders) == len(set(opened))  # every folder on exactly one connection
    assert sum(1 for session in sessions if examined(session)) >= 2  # and really shared
    assert_archive_is_server(tmp_path, user, client)
    verified = run_cli(["verify", user.name, *server_args(user), "--dest", str(tmp_path)], password=user.password)
    assert verified.returncode == 0 and "COMPLETE" in verified.stdout, verified.stdout + verified.stderr

    # Nothing changed: one connection, one LIST, no folder opened.
    (again,) = sessions_of(lambda: _ok(backup(user, tmp_path, "--no-verify", "--connections", "3")),
                           user.server, user)
    assert not examined(again)


def test_new_mail_in_two_folders_is_fetched_on_two_connections(filled, tmp_path):
    user, client = filled
    _ok(backup(user, tmp_path, "--no-verify"))
    letters = sample_mail.sample_messages()
    client.append("INBOX", letters["thai_qp"].replace(b"Subject:", b"Subject: (new)", 1))
    client.append("งานคดี", letters["thai_qp"].replace(b"Subject:", b"Subject: (new 2)", 1))

    sessions = sessions_of(lambda: _ok(backup(user, tmp_path, "--no-verify", "--connections", "4")),
                           user.server, user)

    # Two folders with work: one more connection, not three.
    assert len(sessions) == 2
    assert sorted(name for session in sessions for name in examined(session)) == \
        sorted(['"INBOX"', '"&DgcOMg4ZDgQOFA41-"'])
    assert_archive_is_server(tmp_path, user, client)


def test_a_folder_failing_on_one_connection_is_reported_and_the_rest_saved(filled, tmp_path):
    user, client = filled
    broken = user.server.folder_dir(user.name, "งานคดี")
    mode = broken.stat().st_mode
    broken.chmod(0)
    try:
        done = backup(user, tmp_path, "--no-verify", "--connections", "3")
    finally:
        broken.chmod(mode)
    assert done.returncode == ExitCode.WARNINGS, done.stderr
    assert "งานคดี" in done.stderr and "FAILED" in done.stderr
    stored = archive_contents(tmp_path, user.name)
    for name in server_folders(client):
        if name != "งานคดี" and name in stored:
            assert {uid: message.body for uid, message in stored[name].items()} == \
                {uid: body for uid, (body, _, _) in server_contents(client, name).items()}
    assert {"INBOX", "Sent"} <= set(stored)


def test_a_server_allowing_fewer_connections_gets_no_more_and_all_mail(imap_user_factory, imap_client_factory,
                                                                        tmp_path):
    """Dovecot here allows one connection per user and IP; --connections 4
    goes on with the one it gets, with no warning (nothing is wrong).  One,
    not two: Dovecot checks its limit at login against the connections it
    has counted, and connections logging in at the same instant do not see
    each other (seen here: with a limit of two, all four got in)."""
    server = start(DovecotServer(rawlog=True), max_userip=1)
    try:
        user = imap_user_factory(server)
        client = imap_client_factory(user)
        sample_mail.fill_mailbox(client, sample_mail.sample_mailbox())
        client.logout()  # the test's own connection would take the one
        before = server.log_path.stat().st_size
        sessions = sessions_of(lambda: _ok_quiet(backup(user, tmp_path, "--no-verify", "--connections", "4")),
                               server, user)
        with open(server.log_path, "rb") as log:
            log.seek(before)
            refused = log.read().count(b"Maximum number of connections from user+IP exceeded")
        # The server enforces its limit at login: the connections it refused never got a session
        # and the run went on without them.
        assert refused >= 1 and len(sessions) == 1, (refused, len(sessions))
        client = imap_client_factory(user)
        assert_archive_is_server(tmp_path, user, client)
    finally:
        server.stop()


def test_a_sweep_counts_extra_connections_against_its_cap(rawlog_server, imap_user_factory, imap_client_factory,
                                                          tmp_path):
    """One account at a time, at most two connections toward the server, each
    account allowed four: every account gets exactly the one extra connection
    the cap leaves, never more."""
    users = [imap_user_factory(rawlog_server) for _ in range(3)]
    for user in users:
        client = imap_client_factory(user)
        sample_mail.fill_mailbox(client, sample_mail.sample_mailbox())
        client.logout()
    env = keyring_env(tmp_path)
    dest = tmp_path / "dest"
    with Proxy("127.0.0.1", rawlog_server.port) as proxy:
        config = write_config(tmp_path / "unit.yaml", users, server=f"localhost:{proxy.port}",
                              cafile=rawlog_server.cafile, dest=dest,
                              defaults="max_connections_per_server: 2\nconnections: 4\njobs: 1")
        import_passwords(config, env, {user.name: user.password for user in users})
        before = {user.name: len(rawlog_server.rawlog_sessions(user.name)) for user in users}
        done = run_cli(["sweep", str(config)], env=env)
        peak = proxy.max_active
    assert done.returncode == 0, done.stdout + done.stderr
    assert peak <= 2, f"{peak} connections at once toward one server"
    rows = sweep_rows(dest / "reports")
    for user in users:
        assert (rows[user.name]["backup"], rows[user.name]["verify"]) == ("ok", "complete")
        assert len(rawlog_server.rawlog_sessions(user.name)) - before[user.name] == 2


def _ok(done) -> None:
    assert done.returncode == 0, done.stderr


def _ok_quiet(done) -> None:
    """Done, and nothing said about the connections that were refused: nothing is wrong."""
    _ok(done)
    assert "warning" not in done.stderr.lower(), done.stderr


def _flags(flags) -> set[str]:
    return {flag for flag in flags if flag.lower() != "\\recent"}


def test_a_folder_another_connection_added_is_found(tmp_path):
    """Each connection of a run has its own handle on the state database; a
    name the first did not hold when it looked must not stay unknown to it
    once another has added the folder (a sweep then verifies with the first
    handle: verify/check.py looks each folder up by name)."""
    from mailbackup.state.db import StateDB

    first, second = StateDB(tmp_path / "state.sqlite3"), StateDB(tmp_path / "state.sqlite3")
    try:
        assert first.folder("งานคดี") is None
        added = second.add_folder("งานคดี", "/", "งานคดี", "งานคดี")
        first.forget_folder_names()  # what a run's crew does once its connections are done
        found = first.folder("งานคดี")
        assert found is not None and found.id == added.id
    finally:
        first.close()
        second.close()


# -- channels opened ahead (imap/spares.py) ---------------------------------------------------------------------
# Through netproxy at 30 ms each way: a login takes several round trips, so whatever is opened beside it
# has been accepted by the proxy by the time it returns (the proxy accepts at once; only data is delayed).


def through(proxy: Proxy, user) -> ConnectionSettings:
    """The user's server reached through `proxy`."""
    return ConnectionSettings(server=ServerAddress("localhost", proxy.port), cafile=str(user.cafile))


def test_the_other_channels_open_while_the_first_logs_in_and_are_used(filled):
    user, _client = filled
    with Proxy("127.0.0.1", user.port, latency=0.03) as proxy:
        settings = through(proxy, user)
        session = ImapSession(settings, user.name, user.password).connect(spares=2)
        try:
            assert proxy.connections == 3  # opened beside the login, not after it
            other = session.sibling().connect()
            try:
                assert proxy.connections == 3  # the sibling logged in on a channel opened ahead
                assert "INBOX" in {folder.name for folder in other.list_folders()}
            finally:
                other.close()
            session.release_spares()  # the one nobody took is closed
            deadline = time.monotonic() + 5
            while proxy.active > 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proxy.active == 1
            assert session.sibling().connect().list_folders()  # none left: a new channel, as before
            assert proxy.connections == 4
        finally:
            session.close()


def test_the_other_channels_begin_once_the_first_is_accepted_not_once_it_is_secure(filled):
    """TLS and the greeting take a round trip and a half (0.3 s at 100 ms each
    way): the channels opened ahead do not wait for them, only for the server
    to accept the run's own connection."""
    user, _client = filled
    with Proxy("127.0.0.1", user.port, latency=0.1) as proxy:
        settings = through(proxy, user)
        session = ImapSession(settings, user.name, user.password).connect(spares=2)
        try:
            first, *others = proxy.accepted_at
            assert len(others) == 2 and max(others) - first < 0.15, [when - first for when in others]
            assert session.sibling().connect().list_folders()  # and they work
            assert proxy.connections == 3
        finally:
            session.close()


def test_a_refused_login_closes_the_channels_opened_beside_it(filled):
    """A sweep lives on after one account's wrong password: the channels
    opened for that account's other connections must not stay open."""
    user, _client = filled
    with Proxy("127.0.0.1", user.port, latency=0.03) as proxy:
        settings = through(proxy, user)
        session = ImapSession(settings, user.name, "not-the-password")  # kept, as a traceback would keep it
        with pytest.raises(AuthError):
            session.connect(spares=2)
        assert proxy.connections == 3
        deadline = time.monotonic() + 5
        while proxy.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.active == 0


def test_a_first_backup_on_three_connections_opens_three_and_an_incremental_one(filled, tmp_path):
    user, client = filled
    with Proxy("127.0.0.1", user.port, latency=0.03) as proxy:
        _ok(run_cli(["backup", user.name, "--server", f"localhost:{proxy.port}", "--cafile", str(user.cafile),
                     "--dest", str(tmp_path), "--no-verify", "--connections", "3"], password=user.password))
        first = proxy.connections
        _ok(run_cli(["backup", user.name, "--server", f"localhost:{proxy.port}", "--cafile", str(user.cafile),
                     "--dest", str(tmp_path), "--no-verify", "--connections", "3"], password=user.password))
        assert (first, proxy.connections - first) == (3, 1)  # nothing changed: nothing opened ahead
    assert_archive_is_server(tmp_path, user, client)


def test_a_wrong_password_is_tried_once_however_many_connections(imap_user, tmp_path):
    """Servers count failed logins against an account: the channels opened
    ahead never send the password before the first login succeeded."""
    server = imap_user.server
    before = server.log_path.stat().st_size
    result = run_cli(["backup", imap_user.name, *server_args(imap_user), "--dest", str(tmp_path), "--no-verify",
                      "--connections", "4"], password="not-the-password")
    assert result.returncode == ExitCode.AUTH, result.stderr
    deadline = time.monotonic() + 5
    while "auth failed" not in server.log_tail(200, since=before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.log_tail(200, since=before).count("auth failed") == 1, server.log_tail(200, since=before)
    assert not (tmp_path / imap_user.name).exists()
