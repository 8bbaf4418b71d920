"""The next folder's opening sent before this one's answers are read
(imap/opening.py), against a real Dovecot: the round trip between a
connection's folders is gone, and whatever asks the server something else
first still gets answers about the folder it selected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sample_mail
from helpers import archive_contents, run_cli, server_contents, sessions_of, state_rows

from mailbackup.errors import FolderError
from mailbackup.imap.opening import FirstBodies
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress

FOLDERS = {"INBOX": 3, "งานคดี": 2, "Sent": 4, "ประชุม": 1, "Archive/2566": 2, "Drafts": 1}


def letters(folder: str, count: int) -> list[bytes]:
    return [(f"From: a@coj.go.th\r\nTo: b@coj.go.th\r\nSubject: {folder} {n}\r\n"
             f"Message-ID: <{n}.{abs(hash(folder))}@coj.go.th>\r\n\r\n{folder} letter {n}\r\n").encode()
            for n in range(count)]


@pytest.fixture
def filled(rawlog_server, imap_user_factory, imap_client_factory):
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    sample_mail.fill_mailbox(client, {name: letters(name, count) for name, count in FOLDERS.items()})
    return user, client


@pytest.fixture
def connected(filled):
    """A session of the filled account's, and a client of the test's own."""
    user, client = filled
    settings = ConnectionSettings(server=ServerAddress.parse(user.server_arg), cafile=str(user.cafile))
    session = ImapSession(settings, user.name, user.password).connect()
    try:
        yield session, client
    finally:
        session.close()


def whole(count: int, tmp_path: Path) -> FirstBodies:
    return FirstBodies(count=count, spool_dir=tmp_path, spool_above=1 << 20)


def bodies_of(session: ImapSession, uids: list[int], tmp_path: Path) -> dict[int, bytes]:
    (result,) = list(session.stream_bodies([uids], spool_dir=tmp_path, spool_above=1 << 20))
    return {message.uid: b"".join(message.body.chunks()) for message in result.messages}


def on_server(client, folder: str) -> dict[int, bytes]:
    return {uid: body for uid, (body, _, _) in server_contents(client, folder).items()}


def test_one_connection_sends_the_next_folders_openings_before_the_first_is_answered(filled, tmp_path):
    """Through a 50 ms link: a command sent in answer to the first folder's
    bodies reaches the server at least 100 ms after they were sent; the next
    three folders' (the pipeline depth) came with the first folder's."""
    from netproxy import Proxy

    user, client = filled
    latency = 0.05

    def run():
        with Proxy("127.0.0.1", user.server.port, latency=latency) as proxy:
            result = run_cli(["backup", user.name, "--server", f"localhost:{proxy.port}", "--cafile",
                              str(user.cafile), "--dest", str(tmp_path), "--connections", "1", "--no-verify"],
                             password=user.password)
        assert result.returncode == 0, result.stdout + result.stderr

    (session,) = sessions_of(run, user.server, user)
    examined = [line for _, line in session.received if " EXAMINE " in line]
    assert len(examined) == len(FOLDERS)  # each folder once: none opened ahead was let go
    bodies = next(line.split(" ", 1)[0] for _, line in session.received if "BODY.PEEK[]" in line)
    answered = next(when for when, line in session.sent if line.startswith(bodies + " OK"))
    assert [session.when_received(command) < answered + latency for command in examined] == [True] * 4 + [False] * 2
    assert_archived(user, client, tmp_path)


def assert_archived(user, client, dest: Path) -> None:
    stored = archive_contents(dest, user.name)
    for name in FOLDERS:
        assert {uid: copy.body for uid, copy in stored[name].items()} == on_server(client, name)
    verified = run_cli(["verify", user.name, "--server", user.server_arg, "--cafile", str(user.cafile),
                        "--dest", str(dest)], password=user.password)
    assert verified.returncode == 0 and "COMPLETE" in verified.stdout, verified.stdout + verified.stderr


def comes_whole(session: ImapSession, client, name: str, tmp_path: Path, then=()) -> None:
    """`name` opened with its whole messages: the server's, as the server has them."""
    selected, listed = session.examine_listing(name, whole(FOLDERS[name], tmp_path), then=then)
    assert session.selected == name and selected.exists == len(listed) == FOLDERS[name]
    assert session.holds_first_bodies
    assert bodies_of(session, [meta.uid for meta in listed], tmp_path) == on_server(client, name)


def test_another_question_first_gets_answers_about_the_folder_selected_before(connected, tmp_path):
    session, client = connected
    selected, listed = session.examine_listing("Sent", whole(4, tmp_path), then=[("งานคดี", whole(2, tmp_path))])
    assert len(listed) == selected.exists == 4
    # A question about Sent before งานคดี was asked for: not answered from งานคดี.
    assert list(session.search_uids(1)) == sorted(on_server(client, "Sent"))
    assert session.selected == "Sent"
    assert bodies_of(session, [meta.uid for meta in listed], tmp_path) == on_server(client, "Sent")
    comes_whole(session, client, "งานคดี", tmp_path)  # asked for afresh


def test_a_folder_other_than_the_one_opened_ahead_is_opened_as_asked(connected, tmp_path):
    session, client = connected
    session.examine_listing("INBOX", whole(3, tmp_path), then=[("Sent", whole(4, tmp_path))])
    assert session.holds_first_bodies  # INBOX's bodies: nobody asks for them here
    comes_whole(session, client, "Drafts", tmp_path, then=[("ประชุม", whole(1, tmp_path))])
    comes_whole(session, client, "ประชุม", tmp_path)


def test_a_folder_that_cannot_be_opened_leaves_the_one_behind_it_intact(connected, tmp_path):
    session, client = connected
    with pytest.raises(FolderError, match="no such folder"):
        session.examine_listing("no such folder", whole(1, tmp_path), then=[("Sent", whole(4, tmp_path))])
    assert session.selected is None
    comes_whole(session, client, "Sent", tmp_path)


def test_a_folder_opened_ahead_that_cannot_be_opened_fails_alone(connected, tmp_path):
    """Gone between LIST and its turn: its EXAMINE fails where it was sent,
    and the folder opened ahead behind it is answered as its own."""
    session, client = connected
    comes_whole(session, client, "Sent", tmp_path,
                then=[("no such folder", whole(1, tmp_path)), ("Drafts", whole(1, tmp_path))])
    with pytest.raises(FolderError, match="no such folder"):
        session.examine_listing("no such folder", whole(1, tmp_path))
    assert session.selected is None
    comes_whole(session, client, "Drafts", tmp_path)


def test_a_folder_replaced_meanwhile_is_not_read_by_its_old_uids(connected, tmp_path):
    """Selecting the folder again after the one opened ahead: if it is another
    folder by now (a new UIDVALIDITY), UIDs asked for would name other mail."""
    session, client = connected
    session.examine_listing("Drafts", whole(1, tmp_path), then=[("Sent", whole(4, tmp_path))])
    client.delete_folder("Drafts")
    sample_mail.fill_mailbox(client, {"Drafts": letters("new Drafts", 2)})
    with pytest.raises(FolderError, match="replaced"):
        session.search_uids(1)
    assert session.selected is None


def test_first_backup_through_a_slow_link_is_complete_and_verified(filled, tmp_path):
    """The whole run, several connections, through a 30 ms link: the archive
    is the server's, message by message, and verify says so."""
    from netproxy import Proxy

    user, client = filled
    with Proxy("127.0.0.1", user.server.port, latency=0.03) as proxy:
        result = run_cli(["backup", user.name, "--server", f"localhost:{proxy.port}", "--cafile", str(user.cafile),
                          "--dest", str(tmp_path), "--connections", "2", "--no-verify"], password=user.password)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_archived(user, client, tmp_path)


def test_a_server_that_answers_an_examine_sent_ahead_out_of_order_gets_one_command_at_a_time(
        filled, tmp_path):
    """A front that throttles EXAMINE and answers at once, ahead of the answers
    Dovecot still owes to the commands before it (no server we can run does
    this; Exchange is known to mishandle pipelined commands).  Which answer is
    whose can no longer be told: the connection is dropped, pipelining given
    up for this server, and nothing is stored from the wrong folder."""
    from test_sweep import ThrottlingFront

    user, client = filled
    front = ThrottlingFront(user.server, 2, in_order=False)
    try:
        result = run_cli(["backup", user.name, "--server", f"localhost:{front.port}", "--cafile",
                          str(user.cafile), "--dest", str(tmp_path), "--connections", "1", "--no-verify",
                          "--retry-delay", "0.05"], password=user.password)
    finally:
        front.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert front.throttled == 2
    key = f"one command at a time: localhost:{front.port}"
    assert state_rows(tmp_path, user.name, "SELECT count(*) FROM meta WHERE key=?", (key,)) == [(1,)]
    assert_archived(user, client, tmp_path)



def test_a_not_now_to_a_folder_opened_ahead_is_waited_out(filled, tmp_path):
    """Throttled (Office 365's words, scripted in front of Dovecot, answered in
    order): the folder asked for, then two of the folders opened behind it.
    Both times the run waits as told before it asks again, and stores all."""
    from test_sweep import ThrottlingFront

    user, client = filled
    front = ThrottlingFront(user.server, 3)
    try:
        result = run_cli(["backup", user.name, "-v", "--server", f"localhost:{front.port}", "--cafile",
                          str(user.cafile), "--dest", str(tmp_path), "--connections", "1", "--no-verify"],
                         password=user.password)
    finally:
        front.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert front.throttled == 3
    waits = re.findall(r"server busy .*Suggested Backoff Time: 200 milliseconds\); waiting 0.2 s", result.stderr)
    assert len(waits) == 2, result.stderr  # the first folder's, then the two opened behind it together
    assert_archived(user, client, tmp_path)
