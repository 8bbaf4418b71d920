"""IMAP flag names are case-insensitive (RFC 3501 2.3.2): the session-only
\\Recent is never stored, however a server spells it (issue 13 defect 6).
A scripted server (tests/fakeserver.py) sends the spellings Dovecot never
uses; model.message_flags is the one place that decides."""

from __future__ import annotations

import pytest
from fakeserver import Certs, FakeImapServer, Folder, Message, letter, make_certs, run_mailbackup
from helpers import state_rows

from mailbackup.model import message_flags


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


@pytest.mark.parametrize("recent", ["\\Recent", "\\RECENT", "\\recent", "\\rEcEnT"])
def test_recent_in_any_case_is_dropped_and_the_rest_sorted(recent):
    assert message_flags(["\\Seen", recent, "$Label1", "\\Answered"]) == ("$Label1", "\\Answered", "\\Seen")


def test_a_server_spelling_recent_in_capitals_never_gets_it_stored(certs, tmp_path):
    folder = Folder(b"INBOX", [Message(1, letter(1), ("\\RECENT", "\\Seen")), Message(2, letter(2), ("\\recent",))])
    with FakeImapServer([folder], certs=certs) as server:
        assert run_mailbackup(server, certs.ca, tmp_path).code == 0
        first = state_rows(tmp_path, server.user, "SELECT uid, flags FROM messages ORDER BY uid")
        folder.messages[1].flags = ("\\Flagged", "\\RECENT")  # then the flags are read again on their own
        again = run_mailbackup(server, certs.ca, tmp_path, "--refresh-flags")
        assert again.code == 0, again.stderr
        second = state_rows(tmp_path, server.user, "SELECT uid, flags FROM messages ORDER BY uid")

    assert first == [(1, "\\Seen"), (2, "")]
    assert second == [(1, "\\Seen"), (2, "\\Flagged")]
