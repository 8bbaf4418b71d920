"""A big folder's batches shared with connections that ran out of folders
(sync/sharing.py), against a real Dovecot recording every session (rawlog):
the tests see which connection fetched which message, and that the archive
holds exactly the server's mail, each message once.

The link goes through netproxy with a little latency so that the folder's
owner is still busy when the others finish the small folders (on loopback
it may be done before anybody could help)."""

from __future__ import annotations

import re
import threading
from collections import deque
from types import SimpleNamespace

import pytest
import sample_mail
from dovecot_server import RawSession
from helpers import archive_contents, run_cli, server_contents, sessions_of, state_rows
from netproxy import Proxy

from mailbackup.errors import ExitCode
from mailbackup.model import FolderResult, MessageMeta
from mailbackup.sync.sharing import BatchQueue, ShareHub

BIG = 60


def letters(count: int, start: int = 0) -> list[bytes]:
    return [sample_mail.thai_letter(start + i, sample_mail._DEFAULT_DATE) for i in range(count)]


@pytest.fixture
def big_inbox(rawlog_server, imap_user_factory, imap_client_factory):
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    uids = sample_mail.fill_mailbox(client, {"INBOX": letters(BIG), "งานคดี": letters(2, 500),
                                             "Sent": letters(2, 600)})["INBOX"]
    client.select_folder("INBOX")
    for step, keyword in enumerate(("$Label1", "Urgent", "Court_Case")):  # Maildir keeps keywords in a shared table
        client.add_flags(uids[step::4], [keyword])
    client.unselect_folder()
    return user, client


def uid_set(text: str) -> set[int]:
    uids: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition(":")
        uids.update(range(int(first), int(last or first) + 1))
    return uids


def bodies_fetched(session: RawSession, folder: str) -> set[int]:
    """The UIDs whose bodies `session` asked for while `folder` was open on it."""
    fetched: set[int] = set()
    selected = None
    for command in session.commands():
        if command.startswith(("EXAMINE ", "SELECT ")):
            selected = command.split(" ", 1)[1].strip('"')
        elif selected == folder and "BODY.PEEK[]" in command:
            match = re.match(r"UID FETCH ([\d:,]+) ", command)
            assert match, f"bodies asked by sequence number in a shared folder: {command}"
            fetched |= uid_set(match.group(1))
    return fetched


def backup_through(proxy: Proxy, user, dest, *extra: str):
    return run_cli(["backup", user.name, "--server", f"localhost:{proxy.port}", "--cafile", str(user.cafile),
                    "--dest", str(dest), "--no-verify", *extra], password=user.password)


def test_idle_connections_take_batches_of_the_big_folder_and_each_message_is_stored_once(big_inbox, tmp_path):
    user, client = big_inbox
    with Proxy("127.0.0.1", user.port, latency=0.02) as proxy:
        sessions = sessions_of(lambda: _ok(backup_through(proxy, user, tmp_path, "--connections", "3",
                                                          "--batch-size", "4", "--pipeline", "1")),
                               user.server, user)

    per_session = [bodies_fetched(session, "INBOX") for session in sessions]
    helped = [uids for uids in per_session if uids]
    assert len(helped) >= 2, f"INBOX fetched on {len(helped)} connection(s)"
    assert sum(len(uids) for uids in helped) == BIG == len(set().union(*helped))  # each message once
    stored = archive_contents(tmp_path, user.name)
    for name in ("INBOX", "งานคดี", "Sent"):
        assert {uid: (m.body, set(m.flags)) for uid, m in stored[name].items()} == \
            {uid: (body, set(flags)) for uid, (body, flags, _) in server_contents(client, name).items()}
    assert state_rows(tmp_path, user.name, "SELECT count(*) FROM pending") == [(0,)]
    verified = run_cli(["verify", user.name, "--server", user.server_arg, "--cafile", str(user.cafile),
                        "--dest", str(tmp_path)], password=user.password)
    assert verified.returncode == 0 and "COMPLETE" in verified.stdout, verified.stdout + verified.stderr


def test_a_mailbox_of_one_big_folder_uses_the_other_connections_too(rawlog_server, imap_user_factory,
                                                                    imap_client_factory, tmp_path):
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(BIG)})
    with Proxy("127.0.0.1", user.port, latency=0.02) as proxy:
        sessions = sessions_of(lambda: _ok(backup_through(proxy, user, tmp_path, "--connections", "3",
                                                          "--batch-size", "4", "--pipeline", "1")),
                               user.server, user)
    helped = [uids for uids in (bodies_fetched(session, "INBOX") for session in sessions) if uids]
    assert len(helped) >= 2 and sum(map(len, helped)) == BIG == len(set().union(*helped))
    assert len(archive_contents(tmp_path, user.name)["INBOX"]) == BIG


def test_a_connection_lost_while_sharing_loses_and_doubles_nothing(big_inbox, tmp_path):
    """Links cut mid-transfer, whichever connections they hit (owner or helper):
    batches a helper held go back, and every message is stored exactly once."""
    user, client = big_inbox
    with Proxy("127.0.0.1", user.port, latency=0.02, cut_after_bytes=40_000, max_cuts=3) as proxy:
        result = backup_through(proxy, user, tmp_path, "--connections", "3", "--batch-size", "4",
                                "--pipeline", "1", "--retry-delay", "0.05")
        cuts = proxy.cuts
    assert cuts >= 1
    assert result.returncode == ExitCode.OK, result.stderr
    stored = archive_contents(tmp_path, user.name)
    assert {uid: m.body for uid, m in stored["INBOX"].items()} == \
        {uid: body for uid, (body, _, _) in server_contents(client, "INBOX").items()}
    rows = state_rows(tmp_path, user.name, "SELECT count(*), count(DISTINCT uid) FROM messages m "
                      "JOIN folders f ON f.id = m.folder_id WHERE f.name = 'INBOX'")
    assert rows == [(BIG, BIG)]
    files = list((tmp_path / user.name / "mail").rglob("cur/*"))
    assert len(files) == BIG + 4  # no file written twice


def test_mbox_folders_are_not_shared(big_inbox, tmp_path):
    """One mbox file per folder: one writer."""
    user, _client = big_inbox
    with Proxy("127.0.0.1", user.port, latency=0.02) as proxy:
        sessions = sessions_of(lambda: _ok(backup_through(proxy, user, tmp_path, "--format", "mbox",
                                                          "--connections", "3", "--batch-size", "4",
                                                          "--pipeline", "1")),
                               user.server, user)
    assert sum(1 for session in sessions if bodies_fetched(session, "INBOX")) == 1
    assert len(archive_contents(tmp_path, user.name)["INBOX"]) == BIG


def _new_mail_run(user, client, dest, server_port: int) -> list[RawSession]:
    """A first backup of a small INBOX, then BIG new messages: the sessions of the second run."""
    def backup(*extra: str):
        return run_cli(["backup", user.name, "--server", f"localhost:{server_port}", "--cafile", str(user.cafile),
                        "--dest", str(dest), "--no-verify", "--connections", "3", *extra], password=user.password)

    _ok(backup())
    sample_mail.fill_mailbox(client, {"INBOX": letters(BIG, 100)})
    sessions = sessions_of(lambda: _ok(backup("--batch-size", "4", "--pipeline", "1")), user.server, user)
    assert len(archive_contents(dest, user.name)["INBOX"]) == BIG + 2
    return sessions


def test_new_mail_of_one_folder_near_the_server_comes_on_one_connection(rawlog_server, imap_user_factory,
                                                                        imap_client_factory, tmp_path):
    """On loopback one connection keeps up: no other is opened just to share the
    folder (each costs the server a login, and memory here)."""
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(2)})
    sessions = _new_mail_run(user, client, tmp_path, user.port)
    assert len(sessions) == 1, f"{len(sessions)} connections for one folder's new mail on loopback"


def test_new_mail_of_one_folder_over_a_far_link_is_shared(rawlog_server, imap_user_factory, imap_client_factory,
                                                          tmp_path):
    """Through a link of 40 ms each way (a login of 80 ms or more) the other connections help."""
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(2)})
    with Proxy("127.0.0.1", user.port, latency=0.04) as proxy:
        sessions = _new_mail_run(user, client, tmp_path, proxy.port)
    helped = [uids for uids in (bodies_fetched(session, "INBOX") for session in sessions) if uids]
    assert len(helped) >= 2, f"INBOX's new mail fetched on {len(helped)} connection(s)"
    assert sum(map(len, helped)) == BIG == len(set().union(*helped))  # each new message once


# -- the queue and the hub, without a server -------------------------------------------------------------


def batch(*uids: int) -> list[MessageMeta]:
    return [MessageMeta(uid=uid, size=1, flags=(), internaldate=None) for uid in uids]  # type: ignore[arg-type]


def test_helpers_take_from_the_back_and_never_the_owners_next_batch():
    queue = BatchQueue([batch(1), batch(2), batch(3), batch(4)])
    assert [b[0].uid for b in queue.take_last(2)] == [3, 4]
    assert [b[0].uid for b in queue.take_last(5)] == [2]
    assert queue.take_last(5) == []
    queue.give_back([batch(3), batch(4)])
    sent: deque[list[MessageMeta]] = deque()
    assert list(queue.sending(sent)) == [[3], [4], [1]]
    assert [b[0].uid for b in sent] == [3, 4, 1]


def test_a_helper_takes_nothing_more_once_the_owner_has_closed_the_offer():
    """An owner that stopped on an error waits for its helpers: they must not go on with the whole folder."""
    hub = ShareHub()
    owner = SimpleNamespace(result=FolderResult(name="INBOX"))
    share = hub.offer(owner, BatchQueue([batch(1), batch(2), batch(3), batch(4)]), {})  # type: ignore[arg-type]
    taken = share.join(1)
    assert [b[0].uid for b in taken] == [4]
    closing = threading.Thread(target=share.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive()  # waits for the helper at work
    assert share.more(2) == []  # closed: nothing more for it
    share.leave(FolderResult(name="INBOX", fetched=1, fetched_bytes=10))
    closing.join(5)
    assert not closing.is_alive()
    assert (owner.result.fetched, owner.result.fetched_bytes) == (1, 10)  # its work counts as the folder's


def test_idle_workers_are_let_go_once_every_worker_is_idle():
    hub = ShareHub()
    hub.expect(2)
    found: list[object] = []
    waiter = threading.Thread(target=lambda: found.append(hub.next_share(lambda: False, 3)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # one worker still has a folder: an offer may come
    hub.worker_idle(0)
    hub.worker_idle(0)  # counted once per worker
    waiter.join(0.2)
    assert waiter.is_alive()
    hub.worker_idle(1)
    waiter.join(5)
    assert not waiter.is_alive() and found == [None]


def _ok(done) -> None:
    assert done.returncode == 0, done.stderr
