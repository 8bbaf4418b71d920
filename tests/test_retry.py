"""One retry policy (mailbackup/imap/retry.py) for backup, verify and restore:
a dropped connection is reconnected with backoff, a server saying "not now"
is waited out within a budget, a refusal for good is not waited for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeserver import Certs, Conn, FakeImapServer, Folder, Run, Script, letter, make_certs, run_mailbackup
from helpers import state_rows

from mailbackup.errors import ConnectError, ConnectionLost, ServerBusy, ServerError
from mailbackup.imap.pushback import WaitBudget
from mailbackup.imap.retry import Retrying, RetryPolicy, refusal_pushback

SERVER = "imap.example:993"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


class BusyOnAppend(Script):
    """A target that refuses its first APPENDs as busy (RFC 5530 UNAVAILABLE),
    as a loaded server does.  Scripted: Dovecot never answers APPEND so."""

    capabilities = b"IMAP4rev1 AUTH=PLAIN UIDPLUS"

    def __init__(self, refusals: int, answer: bytes = b"NO [UNAVAILABLE] Server busy, try again later") -> None:
        self.refusals = refusals
        self.answer = answer
        self.refused = 0

    def append(self, conn: Conn, tag: bytes, folder: Folder, line: bytes) -> None:
        if self.refused < self.refusals:
            self.refused += 1
            conn.send(tag + b" " + self.answer + b"\r\n")
            return
        super().append(conn, tag, folder, line)


@pytest.fixture
def servers(certs: Certs) -> Iterator[list[FakeImapServer]]:
    started: list[FakeImapServer] = []
    yield started
    for server in started:
        server.stop()
        assert not server.errors, server.errors


def restore_to(source: FakeImapServer, target: FakeImapServer, certs: Certs, dest: Path) -> Run:
    return Run(["restore", source.user, "--dest", str(dest), "--to", target.user, "--to-server", target.address,
                "--to-cafile", str(certs.ca), "--timeout", "5"], None,
               env={"MAILBACKUP_TARGET_PASSWORD": target.password})


def test_a_busy_restore_target_is_waited_out_not_a_failed_message(servers, certs, tmp_path):
    """Issue 13 defect 5: `NO [UNAVAILABLE] Server busy, try again later` to
    an APPEND is waited out as backup waits it out; every message arrives."""
    bodies = [letter(n) for n in range(1, 4)]
    source = FakeImapServer([Folder.named("INBOX", bodies)], certs=certs).start()
    script = BusyOnAppend(refusals=2)
    target = FakeImapServer([Folder.named("INBOX")], certs=certs, script=script).start()
    servers += [source, target]
    assert run_mailbackup(source, certs.ca, tmp_path).code == 0

    run = restore_to(source, target, certs, tmp_path)

    assert run.code == 0, run.stderr
    assert script.refused == 2
    assert [message.body for message in target.folders[0].messages] == bodies
    assert state_rows(tmp_path, source.user, "SELECT status, count(*) FROM uploads GROUP BY status") == [
        ("uploaded", 3)]


def test_a_full_target_is_still_a_refusal_for_good(servers, certs, tmp_path):
    """A quota refusal is not pushback: the message is recorded as failed at once."""
    source = FakeImapServer([Folder.named("INBOX", [letter(1)])], certs=certs).start()
    script = BusyOnAppend(refusals=10, answer=b"NO [OVERQUOTA] Quota exceeded (mailbox for user is full)")
    target = FakeImapServer([Folder.named("INBOX")], certs=certs, script=script).start()
    servers += [source, target]
    assert run_mailbackup(source, certs.ca, tmp_path).code == 0

    run = restore_to(source, target, certs, tmp_path)

    assert run.code != 0
    assert script.refused == 1 and not target.folders[0].messages
    assert state_rows(tmp_path, source.user, "SELECT status, error FROM uploads") == [
        ("failed", "the target mailbox is full: [OVERQUOTA] Quota exceeded (mailbox for user is full)")]


# -- the policy on its own ------------------------------------------------------
def test_pushback_is_waited_out_without_counting_a_try():
    budget = WaitBudget(limit=10)
    answers: list[Exception] = [ServerBusy("throttled", wait_seconds=0.05)] * 4
    retrying = Retrying(RetryPolicy(max_retries=1, retry_delay=0, busy_wait=budget), lambda: None, SERVER)

    def action() -> str:
        if answers:
            raise answers.pop()
        return "done"

    assert retrying.call(action) == "done"
    assert budget.spent == pytest.approx(4 * 0.05) and not answers


def test_a_busy_server_past_the_budget_raises_its_answer():
    retrying = Retrying(RetryPolicy(retry_delay=0, busy_wait=WaitBudget(limit=0.1)), lambda: None, SERVER)

    def action() -> None:
        raise ServerBusy("try again later", wait_seconds=1.0)

    with pytest.raises(ServerBusy):
        retrying.call(action)


def test_a_dropped_connection_is_reconnected_and_the_folder_reopened():
    events: list[str] = []
    drops = [ConnectionLost("BYE")] * 2
    retrying = Retrying(RetryPolicy(max_retries=3, retry_delay=0), lambda: events.append("reconnect"), SERVER)

    def action() -> str:
        events.append("action")
        if drops:
            raise drops.pop()
        return "ok"

    assert retrying.call(action, lambda: events.append("reopen")) == "ok"
    assert events == ["action", "reconnect", "reopen"] * 2 + ["action"]


def test_a_reconnection_that_never_comes_up_is_a_connect_error_naming_the_server():
    def refuse() -> None:
        raise ConnectError("connection refused")

    retrying = Retrying(RetryPolicy(max_retries=3, retry_delay=0), refuse, SERVER)
    with pytest.raises(ConnectError, match=r"imap\.example:993 after 3 tries"):
        retrying.call(lambda: (_ for _ in ()).throw(ConnectionLost("reset")))


def test_other_errors_are_not_retried():
    retrying = Retrying(RetryPolicy(retry_delay=0), lambda: None, SERVER)
    calls = []

    def action() -> None:
        calls.append(1)
        raise ServerError("NO [NONEXISTENT] no such folder")

    with pytest.raises(ServerError):
        retrying.call(action)
    assert len(calls) == 1


@pytest.mark.parametrize(("code", "text", "busy"), [
    ("UNAVAILABLE", "[UNAVAILABLE] Server busy, try again later", True),
    (None, "Request is throttled. Suggested Backoff Time: 200 milliseconds", True),
    ("OVERQUOTA", "[OVERQUOTA] Quota exceeded (mailbox for user is full)", False),
    ("TOOBIG", "[TOOBIG] Message too large", False),
    ("LIMIT", "[LIMIT] too many messages in the folder", False),
    (None, "Invalid message", False),
])
def test_append_refusals_that_mean_not_now(code, text, busy):
    found = refusal_pushback(SERVER, code, text)
    assert (found is not None) is busy
