"""Round trips a backup costs, read from what a real Dovecot recorded of each
session (its rawlog: every line with the time it was received or sent).  On
a 50 ms government link every round trip is 50 ms, and a sweep pays them per
folder and per account; these tests keep the count from creeping back up."""

from __future__ import annotations

import itertools

import pytest
import sample_mail
from dovecot_server import RawSession
from helpers import archive_contents, backup, server_contents, sessions_of

from mailbackup.errors import FolderError
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress

LIST_FIRST = "UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE)"


@pytest.fixture
def filled(rawlog_server, imap_user_factory, imap_client_factory):
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    sample_mail.fill_mailbox(client, sample_mail.sample_mailbox())
    client.create_folder('Quote"d \\ folder')  # sent back as a quoted string with escapes
    return user, client


def selectable(client) -> list[str]:
    return [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]


def verbs(session: RawSession) -> list[str]:
    return [command.split(" ", 2)[1] if command.startswith("UID ") else command.split(" ", 1)[0]
            for command in session.commands()]


def test_first_backup_lists_statuses_at_once_and_examines_each_folder_with_its_listing(filled, tmp_path):
    user, client = filled
    folders = selectable(client)

    def run():
        result = backup(user, tmp_path, "--no-verify")
        assert result.returncode == 0, result.stderr

    sessions = sessions_of(run, user.server, user)
    assert 1 < len(sessions) <= 4  # --connections' default: folders synced four at once
    lists = [command for session in sessions for command in session.commands() if command.startswith("LIST ")]
    assert len(lists) == 1 and "RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY" in lists[0]
    examined = 0
    for session in sessions:
        commands = session.commands()
        assert "STATUS" not in verbs(session) and "SEARCH" not in verbs(session)
        here = [index for index, command in enumerate(commands) if command.startswith("EXAMINE ")]
        assert all(commands[index + 1] == LIST_FIRST for index in here)  # the same round trip
        examined += len(here)
        # Each of these small folders comes whole with it: its bodies by sequence number, sent
        # right behind the listing, and never asked for again by UID.
        for index in here:
            if commands[index + 2:index + 3] and commands[index + 2].startswith("FETCH 1:"):
                assert commands[index + 2].endswith("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        assert not [command for command in commands if command.startswith("UID FETCH") and "BODY.PEEK[]" in command]
    assert examined == len(folders)  # each folder once, on one of the connections
    fetched_whole = [command for session in sessions for command in session.commands()
                     if command.startswith("FETCH 1:") and "BODY.PEEK[]" in command]
    assert len(fetched_whole) == sum(1 for name in folders if server_contents(client, name))
    stored = archive_contents(tmp_path, user.name)
    for name in folders:
        assert {uid: message.body for uid, message in stored[name].items()} == \
            {uid: body for uid, (body, _, _) in server_contents(client, name).items()}


def test_noop_rerun_is_one_list_and_nothing_per_folder(filled, tmp_path):
    user, _client = filled
    assert backup(user, tmp_path, "--no-verify").returncode == 0

    (session,) = sessions_of(lambda: backup(user, tmp_path, "--no-verify"), user.server, user)

    assert verbs(session).count("LIST") == 1
    assert not {"STATUS", "EXAMINE", "SELECT", "FETCH", "SEARCH"} & set(verbs(session))


def test_new_mail_opens_only_its_folder(filled, tmp_path):
    user, client = filled
    assert backup(user, tmp_path, "--no-verify").returncode == 0
    new_message = sample_mail.sample_messages()["thai_qp"].replace(b"Subject:", b"Subject: (2)", 1)
    client.append("งานคดี", new_message)

    (session,) = sessions_of(lambda: backup(user, tmp_path, "--no-verify"), user.server, user)

    assert [command for command in session.commands() if command.startswith("EXAMINE ")] == \
        ['EXAMINE "&DgcOMg4ZDgQOFA41-"']  # งานคดี
    assert {uid: message.body for uid, message in archive_contents(tmp_path, user.name)["งานคดี"].items()} == \
        {uid: body for uid, (body, _, _) in server_contents(client, "งานคดี").items()}


def test_include_asks_status_of_the_chosen_folders_only(filled, tmp_path):
    user, client = filled

    sessions = sessions_of(lambda: backup(user, tmp_path, "--no-verify", "--include", "งานคดี*"),
                           user.server, user)

    commands = [command for session in sessions for command in session.commands()]
    assert all("RETURN" not in command for command in commands if command.startswith("LIST "))
    chosen = {name for name in selectable(client) if name.startswith("งานคดี")}
    assert len(chosen) >= 2 and sum(verbs(session).count("STATUS") for session in sessions) == len(chosen)
    assert set(archive_contents(tmp_path, user.name)) == chosen


def test_one_message_per_round_trip_when_asked(filled, tmp_path):
    """--pipeline 1 --batch-size 1: the baseline the benchmark compares
    pipelining with.  Each FETCH reaches the server only after the answer to
    the one before it left."""
    user, client = filled

    (session,) = sessions_of(lambda: backup(user, tmp_path, "--no-verify", "--pipeline", "1", "--batch-size", "1",
                                            "--connections", "1"), user.server, user)

    fetches = [(when, line.split(" ", 1)[0]) for when, line in session.received if "BODY.PEEK[]" in line]
    total = sum(len(server_contents(client, name)) for name in selectable(client))
    assert len(fetches) == total
    for (_, earlier), (received, _) in itertools.pairwise(fetches):
        assert session.when_sent(f"{earlier} OK") <= received


def session_for(user) -> ImapSession:
    settings = ConnectionSettings(server=ServerAddress.parse(user.server_arg), cafile=str(user.cafile))
    return ImapSession(settings, user.name, user.password).connect()


def test_listed_statuses_are_the_folders_own(filled):
    user, client = filled
    session = session_for(user)
    try:
        folders, statuses = session.list_with_status()
        names = {folder.name for folder in folders}
        assert set(selectable(client)) <= names and 'Quote"d \\ folder' in statuses
        for name in selectable(client):
            assert statuses[name] == session.status(name)
    finally:
        session.close()


def test_failed_examine_with_its_listing_leaves_no_folder_selected(filled):
    """The listing is sent before EXAMINE is answered: when EXAMINE fails, what
    comes back must not be the folder selected before, and the connection
    goes on working."""
    user, client = filled
    session = session_for(user)
    try:
        session.examine("INBOX")
        with pytest.raises(FolderError, match="no such folder"):
            session.examine_listing("no such folder")
        assert session.selected is None
        selected, listed = session.examine_listing("งานคดี")
        assert selected.exists == len(listed) == len(server_contents(client, "งานคดี"))
        assert [meta.uid for meta in listed] == sorted(server_contents(client, "งานคดี"))
    finally:
        session.close()


def test_a_new_folder_of_ten_mb_comes_whole_and_new_mail_in_batches_of_four(rawlog_server, imap_user_factory,
                                                                            imap_client_factory, tmp_path):
    """Issue 18: the bodies of the batches in flight are what new mail adds to
    a run's memory, so they share 4 MB: one FETCH at a time fetches 4 MB, three
    at a time (the default) 1.3 MB each; a new folder up to 16 MB still comes
    whole with its listing (its bodies are in memory then anyway), and is not
    asked again."""
    user = imap_user_factory(rawlog_server)
    client = imap_client_factory(user)
    megabyte = 1 << 20
    scans = [sample_mail.big_message(megabyte, seed=seed) for seed in range(24)]
    sample_mail.fill_mailbox(client, {"Scans": scans[:10]})

    (first,) = sessions_of(lambda: backup(user, tmp_path, "--no-verify", "--connections", "1"), user.server, user)
    bodies = [command for command in first.commands() if "BODY.PEEK[]" in command]
    assert len(bodies) == 1 and bodies[0].startswith("FETCH 1:10 "), first.commands()

    sample_mail.fill_mailbox(client, {"Scans": scans[10:20]})
    # One connection: others would share the folder's batches (sharing.py), and the batches are what is counted.
    (second,) = sessions_of(lambda: backup(user, tmp_path, "--no-verify", "--pipeline", "1", "--connections", "1"),
                            user.server, user)
    batches = [command for command in second.commands() if command.startswith("UID FETCH") and "BODY.PEEK[]" in command]
    assert len(batches) == 3, second.commands()  # 3 + 3 + 4 messages of 1 MB, each batch at most 4 MB

    sample_mail.fill_mailbox(client, {"Scans": scans[20:]})
    (third,) = sessions_of(lambda: backup(user, tmp_path, "--no-verify"), user.server, user)
    batches = [command for command in third.commands() if command.startswith("UID FETCH") and "BODY.PEEK[]" in command]
    assert [command.split()[2] for command in batches] == ["21", "22", "23", "24"], third.commands()

    assert {uid: message.body for uid, message in archive_contents(tmp_path, user.name)["Scans"].items()} == \
        {uid: body for uid, (body, _, _) in server_contents(client, "Scans").items()}
