"""Servers we cannot run here, played two ways.

* A real Dovecot that advertises less (`imap_capability`): one full backup,
  incremental, verify and restore per extension it leaves out.  Dovecot may
  still understand the command; what matters is that mailbackup never sends
  what the server did not offer and still ends with the same mail.
* The scripted fake server (tests/fakeserver.py) with the quirk profiles of
  Exchange/Office 365 and Gmail, and unsolicited data in the middle of a
  FETCH: what no real server here does (sources in docs/servers.md).

Each test goes through the command line; none may end in a false COMPLETE, a
lost message or a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sample_mail
from conftest import ImapUser, new_user, tls_context
from dovecot_server import DovecotServer
from fakeserver import Certs, FakeImapServer, Folder, Message, Run, Script, letter, make_certs, run_mailbackup
from helpers import archive_contents, backup, run_cli, server_args, state_rows
from imapclient import IMAPClient, imap_utf7
from serverprofiles import (
    DropsAppendFlags,
    Exchange,
    Gmail,
    NewUidvalidityEachSession,
    Unsolicited,
    exchange_mailbox,
    gmail_mailbox,
)

from mailbackup.errors import ExitCode

# What Dovecot 2.3 advertises after login here (COMPRESS=DEFLATE comes from its plugin).
DOVECOT_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED "
    "I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)
WITHOUT = ("CONDSTORE", "ESEARCH", "LIST-STATUS", "LITERAL+", "UIDPLUS", "UNSELECT", "ENABLE", "ID", "NAMESPACE",
           "MULTIAPPEND", "STATUS=SIZE")
# Extensions that come with another: a server without CONDSTORE has no QRESYNC (RFC 7162).
GOES_WITH = {"CONDSTORE": ("QRESYNC",), "ESEARCH": ("ESORT", "CONTEXT=SEARCH", "SEARCHRES"),
             "LITERAL+": ("LITERAL-",)}


def advertised_without(extension: str) -> str:
    dropped = {extension, *GOES_WITH.get(extension, ())}
    return " ".join(name for name in DOVECOT_CAPABILITIES.split() if name not in dropped)


def client_for(user: ImapUser) -> IMAPClient:
    client = IMAPClient(user.host, port=user.port, ssl=True, ssl_context=tls_context(user.cafile), timeout=30)
    client.plain_login(user.name, user.password)
    return client


def server_mail(user: ImapUser) -> dict[str, set[tuple[bytes, frozenset[str]]]]:
    """Every message of every selectable folder: its bytes and flags (no \\Recent)."""
    with client_for(user) as client:
        found = {}
        for flags, _, name in client.list_folders():
            if b"\\Noselect" in flags:
                continue
            client.select_folder(name, readonly=True)
            uids = client.search("ALL")
            data = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
            found[name] = {(item[b"BODY[]"], frozenset(flag.decode() for flag in item[b"FLAGS"]
                                                       if flag != b"\\Recent")) for item in data.values()}
        return found


@pytest.fixture(scope="module", params=WITHOUT)
def lesser_dovecot(request: pytest.FixtureRequest) -> Iterator[tuple[str, DovecotServer]]:
    server = DovecotServer(capabilities=advertised_without(request.param))
    server.start()
    try:
        yield request.param, server
    finally:
        server.stop()


def test_a_server_without_an_extension_is_backed_up_verified_and_restored(lesser_dovecot, tmp_path):
    extension, server = lesser_dovecot
    source = new_user(server)
    with client_for(source) as client:
        assert not client.has_capability(extension)  # the server really hides it
        # The fixture fills the account with one APPEND per message, which imapclient sends
        # as MULTIAPPEND (byte for byte); Dovecot still takes it when it does not say so.
        client._cached_capabilities = (*client.capabilities(), b"MULTIAPPEND")
        sample_mail.fill_mailbox(client, sample_mail.sample_mailbox())
    dest = tmp_path / "archive"

    listed = run_cli(["folders", source.name, *server_args(source), "--lang", "en"], password=source.password)
    assert listed.returncode == 0, listed.stderr
    total = listed.stdout.splitlines()[-1].split()
    # Without STATUS=SIZE nobody knows the size: "unknown", not a false "0 B"
    assert total[0] == "Total" and total[1] == "9"
    assert (total[2:] == ["unknown"]) == (extension == "STATUS=SIZE"), listed.stdout
    first = backup(source, dest, "--no-verify")
    assert first.returncode == 0, first.stderr
    with client_for(source) as client:  # new mail, a flag changed, one message gone
        client.append("INBOX", sample_mail.thai_letter(900, sample_mail._DEFAULT_DATE), flags=("\\Flagged",))
        client.select_folder("INBOX")
        uids = client.search("ALL")
        client.add_flags(uids[:1], ["\\Answered"])
        client.delete_messages(uids[1:2])
        client.expunge()
    second = backup(source, dest, "--no-verify", "--refresh-flags")
    assert second.returncode == 0, second.stderr
    verified = run_cli(["verify", source.name, *server_args(source), "--dest", str(dest)], password=source.password)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    expected = server_mail(source)
    stored = archive_contents(dest, source.name)
    for name, messages in expected.items():
        kept = {copy.body for copy in stored[name].values() if not copy.gone}
        assert {body for body, _flags in messages} == kept, name

    target = new_user(server)
    restored = run_cli(["restore", source.name, "--dest", str(dest), "--to", target.name,
                        "--to-server", target.server_arg, "--to-cafile", str(target.cafile)],
                       env={"MAILBACKUP_TARGET_PASSWORD": target.password}, password=source.password)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    on_target = server_mail(target)
    for name, messages in expected.items():
        assert messages <= on_target[name], (name, messages - on_target[name])


# -- scripted profiles -----------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


@pytest.fixture
def serve(certs: Certs) -> Iterator[Callable[..., FakeImapServer]]:
    started: list[FakeImapServer] = []

    def start(folders: list[Folder], script: Script) -> FakeImapServer:
        server = FakeImapServer(folders, certs=certs, script=script)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()
        assert not server.errors, server.errors  # a broken profile, not mailbackup


def held(server: FakeImapServer) -> dict[str, set[bytes]]:
    return {imap_utf7.decode(folder.wire): {message.body for message in folder.messages}
            for folder in server.folders if folder.messages}


def archived(dest: Path, account: str) -> dict[str, set[bytes]]:
    return {name: {copy.body for copy in copies.values()} for name, copies in archive_contents(dest, account).items()
            if copies}


def test_exchange_estimated_sizes_and_pipelining_refused(serve, certs, tmp_path):
    script = Exchange()
    server = serve(exchange_mailbox([letter(n) for n in range(1, 10)]), script)
    dest = tmp_path / "archive"

    first = run_mailbackup(server, certs.ca, dest, "--batch-size", "1", "--pipeline", "3", "--no-verify")

    assert first.code == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert archived(dest, server.user) == held(server)  # byte for byte, folder names with spaces and "/"
    assert script.refused >= 1  # it did refuse a pipelined FETCH, and nothing was lost to it
    key = f"one command at a time: {server.address}"
    assert state_rows(dest, server.user, "SELECT count(*) FROM meta WHERE key=?", (key,)) == [(1,)]

    verified = run_mailbackup(server, certs.ca, dest, command="verify")
    assert verified.code == 0, verified.stdout + verified.stderr
    # which check was used, said per folder
    assert "note INBOX: 4 messages compared by content" in verified.stdout, verified.stdout
    assert "size mismatch" not in verified.stdout
    repaired = run_mailbackup(server, certs.ca, dest, "--repair", "--verify")
    assert repaired.code == 0, repaired.stdout + repaired.stderr

    # New mail; the next run starts with one command in flight: nothing refused any more
    server.folders[0].messages.append(Message(5, letter(50)))
    refused_before = script.refused
    again = run_mailbackup(server, certs.ca, dest, "--batch-size", "1", "--pipeline", "3", "--no-verify")
    assert again.code == 0, again.stderr
    assert script.refused == refused_before
    assert archived(dest, server.user) == held(server)


def test_exchange_a_copy_that_really_differs_is_still_a_mismatch(serve, certs, tmp_path):
    server = serve(exchange_mailbox([letter(n) for n in range(1, 10)]), Exchange(pipelining=True))
    dest = tmp_path / "archive"
    assert run_mailbackup(server, certs.ca, dest, "--no-verify").code == 0
    server.folders[2].messages[0].body = letter(7).replace(b"case", b"CASE")  # same length, other bytes

    verified = run_mailbackup(server, certs.ca, dest, command="verify")

    assert verified.code != 0, verified.stdout
    assert "1 size mismatch" in verified.stdout and "SHA-256 differs" in verified.stdout, verified.stdout


@pytest.mark.parametrize("exact_sizes", [True, False], ids=["exact-sizes", "estimated-sizes"])
def test_restore_into_exchange_without_uidplus(serve, certs, tmp_path, exact_sizes):
    bodies = [letter(n) for n in range(1, 10)]
    source = serve(exchange_mailbox(bodies), Exchange(pipelining=True))
    dest = tmp_path / "archive"
    assert run_mailbackup(source, certs.ca, dest, "--no-verify").code == 0
    target_script = Exchange(exact_sizes=exact_sizes, uidplus=False)
    target = serve([Folder.named("INBOX")], target_script)
    args = ["restore", source.user, "--dest", str(dest), "--to", target.user, "--to-server", target.address,
            "--to-cafile", str(certs.ca)]

    done = Run(args, source.password, env={"MAILBACKUP_TARGET_PASSWORD": target.password})

    assert done.code == 0, done.stdout + done.stderr
    assert "Check: all 9 messages" in done.stdout, done.stdout
    assert held(target) == held(source)
    again = Run(args, source.password, env={"MAILBACKUP_TARGET_PASSWORD": target.password})
    assert again.code == 0, again.stdout + again.stderr
    assert "uploaded 0 messages" in again.stdout  # found again by Message-ID: nothing sent twice
    assert held(target) == held(source)


def test_gmail_throttled_fetches_are_waited_out(serve, certs, tmp_path):
    script = Gmail(throttle=2, slowed=True)
    server = serve(gmail_mailbox([letter(n) for n in range(1, 6)]), script)
    dest = tmp_path / "archive"

    done = run_mailbackup(server, certs.ca, dest, "--batch-size", "1", "--no-verify")

    assert done.code == 0, done.stderr
    assert script.throttle == 0  # both refusals were met, and waited out
    assert archived(dest, server.user) == held(server)


def test_gmail_daily_download_cap_stops_cleanly_and_the_next_run_completes(serve, certs, tmp_path):
    script = Gmail(daily_cap=True, allowed=1)
    server = serve(gmail_mailbox([letter(n) for n in range(1, 6)]), script)
    dest = tmp_path / "archive"

    # One connection, so that "the folders after" are well defined (with several, the folders
    # already in hand on the others meet the same cap).
    capped = run_mailbackup(server, certs.ca, dest, "--batch-size", "1", "--no-verify", "--connections", "1")

    assert capped.code == ExitCode.PROTOCOL, capped.stderr
    line = capped.error_line()  # one line, no traceback
    assert "[ALERT] Account exceeded download bandwidth limits" in line and "run it again later" in line
    # Not blamed on the messages: nothing recorded as failed, the folders after were not tried
    assert state_rows(dest, server.user, "SELECT count(*) FROM failures") == [(0,)]
    assert server.commands().count(b"EXAMINE") + server.commands().count(b"SELECT") <= 2
    # What came before the cap is kept (its folder is finished by the next run)
    assert state_rows(dest, server.user, "SELECT count(*) FROM messages") == [(1,)]
    verified = run_mailbackup(server, certs.ca, dest, command="verify")
    assert verified.code == ExitCode.WARNINGS and "INCOMPLETE" in verified.stdout  # no false COMPLETE

    script.daily_cap = False  # the next day
    again = run_mailbackup(server, certs.ca, dest, "--no-verify")
    assert again.code == 0, again.stderr
    assert archived(dest, server.user) == held(server)


def test_gmail_labels_copies_are_counted_and_all_mail_can_be_left_out(serve, certs, tmp_path):
    server = serve(gmail_mailbox([letter(n) for n in range(1, 6)]), Gmail())
    whole, lean = tmp_path / "whole", tmp_path / "lean"

    listed = run_mailbackup(server, certs.ca, whole, "--lang", "en", command="folders")
    assert listed.code == 0, listed.stderr
    assert "[Gmail]  " in listed.stdout and "-" in listed.stdout.split("[Gmail]  ")[1].split("\n")[0]  # \Noselect
    done = run_mailbackup(server, certs.ca, whole, "--no-verify")
    assert done.code == 0, done.stderr
    assert archived(whole, server.user) == held(server)
    verified = run_mailbackup(server, certs.ca, whole, "--lang", "en", command="verify")
    assert verified.code == 0, verified.stdout
    # 11 copies of 5 messages: each folder says how many of its copies another folder holds too
    assert "note [Gmail]/All Mail: 5 of its messages are also in other folders" in verified.stdout, verified.stdout
    assert "note INBOX: 3 of its messages are also in other folders" in verified.stdout

    # All Mail left out by its special use (\All), whatever its name in the user's language
    skipped = run_mailbackup(server, certs.ca, lean, "--exclude", "\\All", "--no-verify")
    assert skipped.code == 0, skipped.stderr
    assert "[Gmail]/All Mail" not in archived(lean, server.user)
    assert archived(lean, server.user) == {name: bodies for name, bodies in held(server).items()
                                           if name != "[Gmail]/All Mail"}

    # A message archived in Gmail (no label left) is only in All Mail: leaving it out is said, not silent
    server.folder(b"[Gmail]/All Mail").messages.append(Message(6, letter(6)))
    warned = run_mailbackup(server, certs.ca, lean, "--exclude", "\\All", "--no-verify")
    assert warned.code == ExitCode.WARNINGS, warned.stderr
    assert "at least 1 messages that are in no other folder" in warned.stderr, warned.stderr


def test_unsolicited_data_in_the_middle_of_a_fetch(serve, certs, tmp_path):
    script = Unsolicited(letter(99))
    server = serve([Folder.named("INBOX", [letter(n) for n in range(1, 6)])], script)
    dest = tmp_path / "archive"

    first = run_mailbackup(server, certs.ca, dest, "--no-verify")

    assert script.done and "Traceback" not in first.stderr
    # The message expunged before its body was sent is named, not silently passed over
    assert first.code == ExitCode.WARNINGS and "UID 3 skipped" in first.stderr, first.stderr
    expunged = letter(3)
    # Every other message, in whatever order it came, byte for byte; INTERNALDATE NIL costs nothing
    assert archived(dest, server.user)["INBOX"] == {letter(1), letter(2), letter(4), letter(5)}

    second = run_mailbackup(server, certs.ca, dest, "--no-verify")  # the next run catches up: new mail, flags
    assert second.code == 0, second.stderr
    assert archived(dest, server.user)["INBOX"] - {expunged} == held(server)["INBOX"]
    verified = run_mailbackup(server, certs.ca, dest, command="verify")
    assert verified.code == 0, verified.stdout
    copies = archive_contents(dest, server.user)["INBOX"]
    assert "\\Flagged" in copies[1].flags


def test_a_uidvalidity_new_in_every_session_is_paired_by_content(serve, certs, tmp_path):
    server = serve([Folder.named("INBOX", [letter(n) for n in range(1, 6)])], NewUidvalidityEachSession())
    dest = tmp_path / "archive"
    assert run_mailbackup(server, certs.ca, dest, "--no-verify").code == 0

    second = run_mailbackup(server, certs.ca, dest, "--no-verify")
    assert second.code == 0, second.stderr
    assert "UIDVALIDITY changed" in second.stderr  # said, and the copies kept: nothing stored twice
    assert state_rows(dest, server.user, "SELECT count(*) FROM messages") == [(5,)]
    verified = run_mailbackup(server, certs.ca, dest, command="verify")
    assert verified.code == 0, verified.stdout
    assert "5 messages paired by content (SHA-256) instead of UID" in verified.stdout

    server.folders[0].messages.append(Message(6, letter(6)))  # new mail not yet backed up: not a false COMPLETE
    behind = run_mailbackup(server, certs.ca, dest, command="verify")
    assert behind.code == ExitCode.WARNINGS and "INBOX: 1 missing" in behind.stdout, behind.stdout


def test_a_target_dropping_append_flags_gets_them_set_afterwards(serve, certs, tmp_path):
    source = serve([Folder.named("INBOX", [letter(n) for n in range(1, 4)])], Script())
    for message, flags in zip(source.folders[0].messages, [("\\Seen",), ("\\Seen", "\\Flagged"), ()], strict=True):
        message.flags = flags
    dest = tmp_path / "archive"
    assert run_mailbackup(source, certs.ca, dest, "--no-verify").code == 0
    target = serve([Folder.named("INBOX")], DropsAppendFlags())

    done = Run(["restore", source.user, "--dest", str(dest), "--to", target.user, "--to-server", target.address,
                "--to-cafile", str(certs.ca)], source.password, env={"MAILBACKUP_TARGET_PASSWORD": target.password})

    assert done.code == 0, done.stdout + done.stderr
    assert "did not keep the flags sent with APPEND for 2 messages" in done.stdout + done.stderr
    assert "Check: all 3 messages" in done.stdout, done.stdout
    assert {message.body: set(message.flags) for message in target.folders[0].messages} == \
        {message.body: set(message.flags) for message in source.folders[0].messages}
