"""Incremental runs against a real Dovecot: only what is new is fetched,
flags follow the server, deletions never delete locally, a UIDVALIDITY change
does not duplicate the archive, and the archive lock holds."""

from __future__ import annotations

import sample_mail
from helpers import archive_contents, backup, run_cli, server_args, server_contents, state_rows

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress
from mailbackup.state.lock import ArchiveLock
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import BackupOptions


def letters(count: int, start: int = 0) -> list[bytes]:
    when = sample_mail._DEFAULT_DATE
    return [sample_mail.thai_letter(start + index, when) for index in range(count)]


def test_second_run_fetches_exactly_the_new_messages(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(5), "งานคดี": letters(3, 100)})
    assert backup(imap_user, tmp_path).returncode == 0
    for body in letters(2, 200):
        client.append("INBOX", body)

    again = backup(imap_user, tmp_path)

    assert again.returncode == 0, again.stderr
    assert "2 folders (1 changed), saved 2 messages" in again.stdout
    stored = archive_contents(tmp_path, imap_user.name)
    server = server_contents(client, "INBOX")
    assert {uid: message.body for uid, message in stored["INBOX"].items()} == {
        uid: body for uid, (body, _, _) in server.items()}


def test_flag_changes_reach_the_archive(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(4)})
    for fmt in ("maildir", "mbox"):
        assert backup(imap_user, tmp_path / fmt, "--format", fmt).returncode == 0
    client.select_folder("INBOX")
    uids = client.search("ALL")
    client.add_flags(uids[:2], [b"\\Flagged", b"\\Seen"])
    client.remove_flags(uids[3:], [b"\\Seen"])
    client.add_flags(uids[2:3], [b"$Important"])
    expected = {uid: flags for uid, (_, flags, _) in server_contents(client, "INBOX").items()}
    for fmt in ("maildir", "mbox"):
        again = backup(imap_user, tmp_path / fmt)
        assert again.returncode == 0, again.stderr
        assert "3 flag changes" in again.stdout
        stored = archive_contents(tmp_path / fmt, imap_user.name)["INBOX"]
        assert {uid: message.flags for uid, message in stored.items()} == expected
    cur = account_dir(tmp_path / "maildir", imap_user.name) / "mail" / "INBOX" / "cur"
    # $Important is keyword "a" of the folder's dovecot-keywords, after the system flags, as Dovecot names it
    assert sorted(path.name.rsplit(",", 1)[1] for path in cur.iterdir()) == ["", "FS", "FS", "a"]


def test_deleted_on_server_is_kept_and_marked(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(4), "Old": letters(2, 10)})
    assert backup(imap_user, tmp_path).returncode == 0
    client.select_folder("INBOX")
    first = client.search("ALL")[0]
    client.delete_messages([first])
    client.expunge()
    client.select_folder("Old")
    client.delete_messages(client.search("ALL"))
    client.expunge()

    again = backup(imap_user, tmp_path)

    assert again.returncode == 1, again.stderr  # an emptied folder is a warning to look at
    assert "EMPTY on the server but the archive holds 2 messages" in again.stderr
    assert "3 gone from server" in again.stdout
    stored = archive_contents(tmp_path, imap_user.name)
    assert len(stored["INBOX"]) == 4 and stored["INBOX"][first].gone
    assert all(message.gone for message in stored["Old"].values())
    (gone_at,) = state_rows(tmp_path, imap_user.name, "SELECT gone_at FROM messages WHERE uid=? AND folder_id="
                            "(SELECT id FROM folders WHERE name='INBOX')", (first,))[0:1]
    assert gone_at[0].startswith("20")


def test_uidvalidity_change_does_not_duplicate(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    bodies = letters(6)
    sample_mail.fill_mailbox(client, {"Cases": bodies})
    for fmt in ("maildir", "mbox"):
        assert backup(imap_user, tmp_path / fmt, "--format", fmt).returncode == 0
    client.delete_folder("Cases")  # recreated: a new UIDVALIDITY, the same mail plus one
    sample_mail.fill_mailbox(client, {"Cases": [*bodies, *letters(1, 50)]})

    for fmt in ("maildir", "mbox"):
        again = backup(imap_user, tmp_path / fmt)
        assert again.returncode == 0, again.stderr
        assert "UIDVALIDITY changed" in again.stderr
        assert "saved 1 message," in again.stdout and "6 matched after UIDVALIDITY change" in again.stdout
        stored = archive_contents(tmp_path / fmt, imap_user.name)["Cases"]
        assert sorted(message.body for message in stored.values()) == sorted(
            body for body, _, _ in server_contents(client, "Cases").values())
        total = state_rows(tmp_path / fmt, imap_user.name, "SELECT count(*) FROM messages")[0][0]
        assert total == 7  # one copy each
    cur = account_dir(tmp_path / "maildir", imap_user.name) / "mail" / "Cases" / "cur"
    assert len(list(cur.iterdir())) == 7


def test_identical_copies_each_keep_their_row_after_uidvalidity_change(imap_user, imap_client_factory, tmp_path):
    """Issue 13 defect 1: [A, A, B], folder deleted and recreated with the same
    three: each old row is claimed by one new UID, none is lost or marked gone."""
    client = imap_client_factory(imap_user)
    same, other = letters(2)
    sample_mail.fill_mailbox(client, {"Cases": [same, same, other]})
    for fmt in ("maildir", "mbox"):
        assert backup(imap_user, tmp_path / fmt, "--format", fmt).returncode == 0
    client.delete_folder("Cases")
    sample_mail.fill_mailbox(client, {"Cases": [same, same, other]})
    uidvalidity = client.folder_status("Cases", ["UIDVALIDITY"])[b"UIDVALIDITY"]

    for fmt in ("maildir", "mbox"):
        again = backup(imap_user, tmp_path / fmt)
        assert again.returncode == 0, again.stderr
        assert "3 matched after UIDVALIDITY change" in again.stdout
        rows = state_rows(tmp_path / fmt, imap_user.name, "SELECT uidvalidity, uid, gone_at FROM messages "
                          "ORDER BY uid")
        assert rows == [(uidvalidity, 1, None), (uidvalidity, 2, None), (uidvalidity, 3, None)], fmt
        stored = archive_contents(tmp_path / fmt, imap_user.name)["Cases"]
        assert sorted(message.body for message in stored.values()) == sorted([same, same, other])
        verify = run_cli(["verify", imap_user.name, *server_args(imap_user), "--dest", str(tmp_path / fmt)],
                         password=imap_user.password)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_unchanged_folders_cost_no_command_of_their_own(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(3), "A": letters(2, 10), "B": letters(1, 20)})
    assert backup(imap_user, tmp_path).returncode == 0

    class CountingSession(ImapSession):  # a real session that counts the commands it sends
        calls: list[str] = []

        def list_with_status(self):  # type: ignore[no-untyped-def]
            self.calls.append("LIST-STATUS")
            return super().list_with_status()

        def status(self, name):  # type: ignore[no-untyped-def]
            self.calls.append("STATUS")
            return super().status(name)

        def examine(self, name):  # type: ignore[no-untyped-def]
            self.calls.append("EXAMINE")
            return super().examine(name)

    settings = ConnectionSettings(ServerAddress.parse(imap_user.server_arg), cafile=str(imap_user.cafile))
    with open_archive(tmp_path, imap_user.name) as archive, \
            CountingSession(settings, imap_user.name, imap_user.password) as session:
        stats = BackupEngine(session, archive, BackupOptions()).run()
    assert stats.messages == 0
    # Each folder's status came with the folder list (LIST-STATUS): nothing more was asked.
    assert CountingSession.calls == ["LIST-STATUS"]


def test_second_backup_of_the_same_archive_is_refused(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(1)})
    assert backup(imap_user, tmp_path).returncode == 0
    root = account_dir(tmp_path, imap_user.name)
    with ArchiveLock(root):
        refused = backup(imap_user, tmp_path)
    assert refused.returncode == ExitCode.LOCKED
    assert "is in use by mailbackup pid" in refused.stderr
    # a lock file left behind by a killed run (no process holds it) is simply taken over
    assert (root / ".lock").exists()
    assert backup(imap_user, tmp_path).returncode == 0


def test_dry_run_writes_nothing(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    sample_mail.fill_mailbox(client, {"INBOX": letters(3), "งานคดี": letters(2, 10)})
    result = backup(imap_user, tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would fetch 5 messages" in result.stdout and "งานคดี: 2 messages" in result.stdout
    assert f"into {tmp_path.resolve() / imap_user.name}; nothing is written" in result.stderr  # not a scratch dir
    assert "mailbackup-dry-" not in result.stdout + result.stderr
    assert not tmp_path.joinpath(imap_user.name).exists()
    assert backup(imap_user, tmp_path).returncode == 0
    client.append("INBOX", letters(1, 99)[0])
    result = backup(imap_user, tmp_path, "--dry-run")
    assert "would fetch 1 message," in result.stdout
    assert len(archive_contents(tmp_path, imap_user.name)["INBOX"]) == 3
