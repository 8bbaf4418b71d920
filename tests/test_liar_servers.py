"""Servers that contradict themselves (issue 13): what mailbackup does with them.

Dovecot never lies like this, so these run against the scripted fake server
(tests/fakeserver.py), each lie taken from a real server: an empty
`UID SEARCH UID 1:*` while EXISTS > 0 (GNU mailutils imap4d 3.15), a FETCH
that answers for fewer messages than asked, UIDVALIDITY and UIDs that change
every session (imap4d), RFC822.SIZE estimates (Exchange).

The rule for each: backup, folders and verify, run as a user runs them
(through the CLI), either get it right or say they cannot be sure (non-zero
exit, the numbers they saw); none ends in a false COMPLETE (verify exit 0
saying "complete" while the server holds mail the archive lacks) and none
marks a message the server still holds as gone.  Where one way of listing a
folder lies, mailbackup asks the others (imap/listing.py) and the test asserts
the right result; where every way disagrees with EXISTS, verify says
INCONCLUSIVE (exit 10) with the numbers and backup keeps everything (exit 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeserver import (
    Certs,
    EmptyUidRangeSearch,
    FakeImapServer,
    FetchOmits,
    Folder,
    Message,
    NewUidsEverySession,
    Script,
    SearchesEmpty,
    SizeEstimates,
    letter,
    make_certs,
)
from helpers import run_cli_in_process, state_rows

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


def inbox(count: int = 3) -> Folder:
    return Folder.named("INBOX", [letter(number) for number in range(1, count + 1)])


def mailbackup(command: str, server: FakeImapServer, certs: Certs, dest: Path, *extra: str) -> tuple[int, str]:
    args = [command, server.user, "--server", server.address, "--cafile", str(certs.ca), "--timeout", "5"]
    if command != "folders":
        args += ["--dest", str(dest)]
    if command == "backup":
        args += ["--no-verify", "--retry-delay", "0.01"]
    return run_cli_in_process([*args, *extra], server.password)


def archived_bodies(dest: Path, account: str) -> list[bytes]:
    """Every copy in the archive, live or gone, read through its store."""
    with open_archive(dest, account, lock=False, create=False) as archive:
        return [archive.store.read(folder.local_path, message) for folder in archive.state.folders()
                for message in archive.state.messages(folder.id)]


def live_bodies(dest: Path, account: str) -> list[bytes]:
    """The copies the archive says the server still holds."""
    with open_archive(dest, account, lock=False, create=False) as archive:
        return [archive.store.read(folder.local_path, message) for folder in archive.state.folders()
                for message in archive.state.messages(folder.id) if message.gone_at is None]


def assert_no_false_complete(code: int, output: str, dest: Path, account: str, on_server: list[bytes]) -> None:
    """Verify said COMPLETE (exit 0) only if the server's count is right and the archive holds all of it;
    otherwise it must exit non-zero and say what it saw."""
    report = json.loads((account_dir(dest, account) / "reports" / "verify.json").read_text(encoding="utf-8"))
    if code == 0 or report["status"] == "complete":
        assert (code, report["status"]) == (0, "complete"), output
        assert report["totals"]["server_messages"] == len(on_server), output
        stored = archived_bodies(dest, account)
        assert all(body in stored for body in on_server), output
    else:
        assert code != 0, output
        assert "messages on the server" in output, output  # the numbers seen


def assert_live_mail_not_gone(dest: Path, account: str, on_server: list[bytes]) -> None:
    live = live_bodies(dest, account)
    assert [body for body in on_server if body not in live] == [], "live mail marked gone"


# -- (a) UID SEARCH UID 1:* empty while EXISTS > 0 --------------------------------------------


def verify_report(dest: Path, account: str) -> dict:
    return json.loads((account_dir(dest, account) / "reports" / "verify.json").read_text(encoding="utf-8"))


def test_verify_with_an_empty_uid_search_is_not_complete(certs, tmp_path):
    """`UID SEARCH ALL` tells the truth there (as on imap4d): asked next, it agrees with EXISTS."""
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=EmptyUidRangeSearch()) as server:
        code, output = mailbackup("backup", server, certs, tmp_path)
        assert code in (0, 1), output
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert_no_false_complete(code, output, tmp_path, server.user, [m.body for m in folder.messages])
    assert code == 0 and "3 messages on the server" in output, output


def test_backup_with_an_empty_uid_search_marks_no_live_mail_gone(certs, tmp_path):
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=EmptyUidRangeSearch()) as server:
        first, output = mailbackup("backup", server, certs, tmp_path)
        assert first == 0, output
        folder.messages.append(Message(4, letter(4)))  # new mail: the next run must list the folder again
        second, output = mailbackup("backup", server, certs, tmp_path)
    on_server = [m.body for m in folder.messages]
    assert_live_mail_not_gone(tmp_path, server.user, on_server)
    assert second != 0 or letter(4) in archived_bodies(tmp_path, server.user), output
    assert second == 0 and letter(4) in archived_bodies(tmp_path, server.user), output  # UID SEARCH ALL listed it


def test_every_search_empty_is_listed_by_a_sequence_fetch(certs, tmp_path):
    """Both SEARCH forms answer nothing; `FETCH 1:*` by sequence numbers agrees with EXISTS and is used."""
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=SearchesEmpty()) as server:
        assert mailbackup("backup", server, certs, tmp_path)[0] == 0
        folder.messages.append(Message(4, letter(4)))
        second, output = mailbackup("backup", server, certs, tmp_path)
        assert second == 0, output
        code, output = mailbackup("verify", server, certs, tmp_path)
    on_server = [m.body for m in folder.messages]
    assert_live_mail_not_gone(tmp_path, server.user, on_server)
    assert sorted(archived_bodies(tmp_path, server.user)) == sorted(on_server)
    assert code == 0 and "4 messages on the server" in output, output
    assert_no_false_complete(code, output, tmp_path, server.user, on_server)


class LiesAfterTheFirstSession(SearchesEmpty):
    """Honest in the first session; after it every SEARCH is empty and no FETCH
    describes a message, while EXAMINE still counts them all: no answer agrees."""

    def do_uid(self, conn, tag, args):
        if conn.number == 0:
            Script.do_uid(self, conn, tag, args)
        else:
            super().do_uid(conn, tag, args)

    def fetch_response(self, conn, sequence, message, items):
        if conn.number > 0 and b"BODY" not in items.upper():
            return b""
        return super().fetch_response(conn, sequence, message, items)


def test_no_answer_agreeing_keeps_every_message_and_verify_is_inconclusive(certs, tmp_path):
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=LiesAfterTheFirstSession()) as server:
        first, output = mailbackup("backup", server, certs, tmp_path)
        assert first == 0, output
        folder.messages.append(Message(4, letter(4)))  # changed: the next run lists the folder
        second, backup_output = mailbackup("backup", server, certs, tmp_path)
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert second == ExitCode.WARNINGS, backup_output
    assert "EXISTS 4, UID SEARCH UID 1:* 0, UID SEARCH ALL 0, FETCH 1:* 0" in backup_output, backup_output
    assert_live_mail_not_gone(tmp_path, server.user, [letter(1), letter(2), letter(3)])
    assert code == ExitCode.INCONCLUSIVE, output
    report = verify_report(tmp_path, server.user)
    assert report["status"] == report["folders"][0]["status"] == "inconclusive"
    assert report["folders"][0]["contradiction"].startswith("EXISTS 4, UID SEARCH UID 1:* 0"), report
    assert "INCONCLUSIVE" in output and "EXISTS 4" in output, output
    assert_no_false_complete(code, output, tmp_path, server.user, [m.body for m in folder.messages])


def test_a_backup_verified_on_a_self_contradicting_server_says_it_is_not_proven(certs, tmp_path):
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=LiesAfterTheFirstSession()) as server:
        assert mailbackup("backup", server, certs, tmp_path)[0] == 0
        folder.messages.append(Message(4, letter(4)))
        args = ["backup", server.user, "--server", server.address, "--cafile", str(certs.ca), "--timeout", "5",
                "--dest", str(tmp_path), "--verify", "--retry-delay", "0.01"]
        code, output = run_cli_in_process(args, server.password)
    assert code == ExitCode.INCONCLUSIVE, output  # the worse of the backup's 1 and verify's 10
    assert "Not proven" in output and "Done:" not in output, output


def test_folders_with_an_empty_uid_search_counts_from_exists(certs, tmp_path):
    with FakeImapServer([inbox()], certs=certs, script=EmptyUidRangeSearch()) as server:
        code, output = mailbackup("folders", server, certs, tmp_path)
    assert code == 0, output
    assert [line for line in output.splitlines() if line.split()[:2] == ["INBOX", "3"]], output


# -- (b) a FETCH answering fewer messages than asked ------------------------------------------


def test_backup_names_a_message_the_body_fetch_left_out_and_verify_misses_it(certs, tmp_path):
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=FetchOmits({2}, "body")) as server:
        code, output = mailbackup("backup", server, certs, tmp_path)
        assert code == 1 and "UIDs not saved: 2" in output, output
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert code == 1 and "1 missing" in output, output
    assert_no_false_complete(code, output, tmp_path, server.user, [m.body for m in folder.messages])


def test_verify_with_a_listing_fetch_that_leaves_a_message_out_is_not_complete(certs, tmp_path):
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=FetchOmits({2}, "meta")) as server:
        code, output = mailbackup("backup", server, certs, tmp_path)
        assert code == 1 and "UIDs not saved: 2" in output, output  # SEARCH listed it, FETCH did not describe it
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert_no_false_complete(code, output, tmp_path, server.user, [m.body for m in folder.messages])
    assert code == ExitCode.INCONCLUSIVE, output  # SEARCH says 3, every FETCH describes 2
    assert verify_report(tmp_path, server.user)["status"] == "inconclusive"


# -- (c) UIDVALIDITY and UIDs that change every session ---------------------------------------


def test_uids_changing_every_session_keep_each_message_once_and_live(certs, tmp_path):
    folder = inbox()
    on_server = [m.body for m in folder.messages]
    with FakeImapServer([folder], certs=certs, script=NewUidsEverySession()) as server:
        for _ in range(3):
            code, output = mailbackup("backup", server, certs, tmp_path)
            assert code == 0, output
            assert sorted(archived_bodies(tmp_path, server.user)) == sorted(on_server)  # matched, not copied again
            assert_live_mail_not_gone(tmp_path, server.user, on_server)
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert_no_false_complete(code, output, tmp_path, server.user, on_server)


# -- (d) RFC822.SIZE estimates -----------------------------------------------------------------


def test_size_estimates_store_the_real_bytes_and_verify_is_not_falsely_complete(certs, tmp_path):
    folder = inbox()
    on_server = [m.body for m in folder.messages]
    with FakeImapServer([folder], certs=certs, script=SizeEstimates(extra=17)) as server:
        code, output = mailbackup("backup", server, certs, tmp_path)
        assert code == 0, output
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert sorted(archived_bodies(tmp_path, server.user)) == sorted(on_server)  # byte for byte, not padded
    sizes = state_rows(tmp_path, server.user, "SELECT size FROM messages ORDER BY uid")
    assert [size for (size,) in sizes] == [len(body) for body in on_server]
    assert_no_false_complete(code, output, tmp_path, server.user, on_server)


def test_an_honest_script_is_complete(certs, tmp_path):
    """The checks above can pass: the same mailbox from an honest server verifies COMPLETE."""
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=Script()) as server:
        assert mailbackup("backup", server, certs, tmp_path)[0] == 0
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert code == 0, output
    assert_no_false_complete(code, output, tmp_path, server.user, [m.body for m in folder.messages])


# -- (e) a count that changes while the folder is listed ---------------------------------------


class CountOffByOneEveryOtherExamine(Script):
    """Every other EXAMINE counts one message more than the folder holds, as if mail arrived
    (or was expunged) between EXAMINE and the listing: asked again, the answers agree."""

    def __init__(self) -> None:
        self.examines = 0

    def examine(self, conn, tag, folder):
        self.examines += 1
        if self.examines % 2:
            folder = Folder(folder.wire, [*folder.messages, Message(folder.uidnext + 50, b"x")], folder.uidvalidity,
                            folder.delimiter, folder.flags)
        super().examine(conn, tag, folder)
        conn.selected = conn.server.folder(folder.wire)  # what SEARCH and FETCH answer from


def test_a_count_that_changes_during_the_listing_is_asked_again_not_inconclusive(certs, tmp_path):
    folder = inbox()
    with FakeImapServer([folder], certs=certs, script=CountOffByOneEveryOtherExamine()) as server:
        first, output = mailbackup("backup", server, certs, tmp_path)
        assert first == 0, output
        code, output = mailbackup("verify", server, certs, tmp_path)
    assert code == 0 and "3 messages on the server" in output, output
    assert_no_false_complete(code, output, tmp_path, server.user, [m.body for m in folder.messages])
