"""Compatibility suite: one scenario against real IMAP servers other than Dovecot.

Each server of scripts/compat_servers.py (Cyrus IMAP, GNU mailutils imap4d,
hoodiecrow-imap) runs once per module on a loopback port with a certificate of
the test CA; every test gets a fresh account with a Thai password.  Through
the CLI, as a user runs it: `folders`, a full backup to Maildir and to mbox,
server-side changes (new mail, a flag change, an expunge), an incremental
backup and `verify`, and a `restore` of a Dovecot-made archive into the
server, compared message by message on the server.

A server that is not installed (scripts/setup_compat.sh) is skipped with the
reason; what fails today because of a known server quirk that is being
handled in mailbackup/imap is a strict xfail naming the quirk (KNOWN_DEFECTS),
so the test turns red the day the handling lands and the mark must go.
docs/servers.md lists what each server does.  MAILBACKUP_SLOW=1 (the `slow`
tests) runs the scenario on a bigger mailbox.
"""

from __future__ import annotations

import hashlib
import imaplib
import itertools
import os
import re
import ssl
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sample_mail
from compat_servers import SERVERS, CompatAccount, CompatServer, missing
from conftest import new_user
from dovecot_server import DovecotServer
from helpers import archive_contents, backup, run_cli, server_args
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailbackup.restore.matching import crlf_normalized, line_stored

_numbers = itertools.count(1)
# The `slow` test's mailbox: a short run in CI, a big one with MAILBACKUP_SLOW=1.
BIG_MAILBOX = 1000 if os.environ.get("MAILBACKUP_SLOW") == "1" else 60
WHEN = datetime(2023, 1, 5, 9, 0, tzinfo=sample_mail.BKK)
# Folder path -> multiset of (SHA-256 of the message, flags, INTERNALDATE as an instant).
Mail = dict[str, Counter[tuple[str, tuple[str, ...], float]]]
# Servers that store mail as lines and serve it back with CRLF line ends and a final
# CRLF (docs/servers.md): what they hold after a restore is compared with that form.
LINE_STORES = {"courier"}

# (server, test) -> why it fails today; each one is a quirk seen on that server
# (docs/servers.md has the exact responses) whose handling belongs in mailbackup/imap.
# Its empty answer to UID SEARCH UID 1:* (issue 13 defect 2) is handled now (UID SEARCH ALL is asked
# next: test_live_mail_is_never_taken_for_gone); what remains is that imap4d serves messages with other
# bytes than it was given or held before.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {
    ("mailutils", "test_incremental_backup_then_verify"):
        "mailutils imap4d rewrites messages of a changed mbox folder (a flag set, a message expunged): the same "
        "UID is served with other bytes and size, so the archive's copy and verify's size check differ",
    ("mailutils", "test_restore_round_trip_from_dovecot"):
        "mailutils imap4d serves appended messages with another size (its own mbox headers) and without UIDPLUS, "
        "so restore's check can pair them neither by recorded UID nor by Message-ID and size",
}
# What a server changes in an APPENDed message that only the content check sees (issue 13
# defect 4): the restore must say so, per message, naming the server: (folder, how, server).
CONTENT_CHANGED: dict[str, tuple[str, str, str]] = {
    "cyrus": ("Drafts", "raw 8-bit header bytes replaced with 'X'", "Cyrus IMAP"),
}


def scenario_mailbox(extra: int = 0) -> dict[str, list[sample_mail.SampleMessage]]:
    """Every odd sample in folders that all servers can hold: a Thai name, a
    nested Thai folder, a name with a space.  (mailutils keeps folders as mbox
    files, which cannot have children, so no folder is both parent and mailbox.)"""
    msgs = sample_mail.sample_messages()
    box = {
        "INBOX": [
            sample_mail.SampleMessage(msgs["thai_qp"], ("\\Seen",), WHEN),
            sample_mail.SampleMessage(msgs["bare_lf"], (), WHEN + timedelta(days=1)),
            sample_mail.SampleMessage(msgs["no_final_newline"], ("\\Flagged",), WHEN + timedelta(days=2)),
        ],
        "งานคดี": [
            sample_mail.SampleMessage(msgs["tis620"], ("\\Answered", "\\Seen"), WHEN),
            sample_mail.SampleMessage(msgs["from_lines"], (), WHEN + timedelta(hours=3)),
        ],
        "กล่องขาเข้า/สำคัญ": [sample_mail.SampleMessage(msgs["thai_attachment"], ("\\Seen", "\\Flagged"), WHEN)],
        "Sent": [
            sample_mail.SampleMessage(msgs["thai_base64"], ("\\Seen",), WHEN),
            sample_mail.SampleMessage(sample_mail.thai_letter(1, WHEN), ("\\Seen",), WHEN + timedelta(hours=1)),
        ],
        "Drafts": [sample_mail.SampleMessage(msgs["raw_utf8_header"], ("\\Draft",), WHEN)],
        "Project Notes": [sample_mail.SampleMessage(sample_mail.thai_letter(2, WHEN), (), WHEN)],
    }
    for index in range(extra):
        when = WHEN + timedelta(days=index)
        box["INBOX"].append(sample_mail.SampleMessage(sample_mail.thai_letter(100 + index, when),
                                                      ("\\Seen",) if index % 3 else (), when))
    return box


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", params=sorted(SERVERS))
def compat_server(request: pytest.FixtureRequest) -> Iterator[CompatServer]:
    reason = missing(request.param)
    if reason:
        pytest.skip(reason)
    server = SERVERS[request.param]()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _known_defect(request: pytest.FixtureRequest) -> None:
    if "compat_server" in request.fixturenames:
        server_name = request.node.callspec.params["compat_server"]
        reason = KNOWN_DEFECTS.get((server_name, request.node.originalname))
        if reason:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture
def account(compat_server: CompatServer) -> CompatAccount:
    number = next(_numbers)
    return compat_server.add_user(compat_server.login_name(number), f"รหัสผ่านไทย{number}")


def connect(account: CompatAccount) -> IMAPClient:
    """A logged-in client for filling and checking the server (not the code under test)."""
    context = ssl.create_default_context(cafile=str(account.cafile))
    client = IMAPClient(account.host, port=account.port, ssl=True, ssl_context=context, timeout=30)
    try:
        client.plain_login(account.name, account.password)
    except LoginError as exc:
        if "unterminated line" not in str(exc):
            raise
        # mailutils' bare LF after AUTHENTICATE (see KNOWN_DEFECTS) breaks imaplib too; the
        # fixture logs in with LOGIN and a UTF-8 password instead, which imap4d accepts.
        client = IMAPClient(account.host, port=account.port, ssl=True, ssl_context=context, timeout=30)
        client._imap._encoding = "utf-8"
        client.login(account.name, account.password)
    return client


@pytest.fixture
def client(account: CompatAccount) -> Iterator[IMAPClient]:
    client = connect(account)
    yield client
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError):
        client.shutdown()


def namespace(client: IMAPClient) -> tuple[str, str]:
    """(prefix, separator) of the personal namespace."""
    if client.has_capability("NAMESPACE"):
        prefix, separator = client.namespace().personal[0]
        return prefix, separator or "/"
    return "", "/"


def fill(client: IMAPClient, box: dict[str, list[sample_mail.SampleMessage]]) -> None:
    prefix, separator = namespace(client)
    for folder in box:
        name = sample_mail.server_folder_name(folder, separator, prefix)
        if name != "INBOX":
            client.create_folder(name)
            client.subscribe_folder(name)
        for message in box[folder]:
            append(client, name, message)


def append(client: IMAPClient, folder: str, message: sample_mail.SampleMessage) -> None:
    if client.has_capability("MULTIAPPEND"):
        # multiappend sends the bytes as they are; imaplib's append rewrites bare LF to CRLF.
        item = {"msg": message.raw, "flags": message.flags, "date": message.internaldate}
        status, lines = client.multiappend(folder, [item])
        if status == "NO" and b"bare newlines" in b" ".join(lines):
            # Cyrus refuses bare LF (NO Message contains bare newlines): deliver it as an MTA would.
            item["msg"] = re.sub(rb"\r?\n", b"\r\n", message.raw)
            status, lines = client.multiappend(folder, [item])
        assert status == "OK", (folder, lines)
    else:
        client.append(folder, message.raw, message.flags, message.internaldate)


def server_mailbox(client: IMAPClient, served: Callable[[bytes], bytes] = lambda body: body) -> Mail:
    """Every selectable folder, by "/"-path without the namespace prefix: a
    multiset of (content hash, flags, INTERNALDATE as an instant); `served`
    turns each message into the form another server would serve it in."""
    prefix, separator = namespace(client)
    client.normalise_times = False
    result: Mail = {}
    for flags, _, name in client.list_folders():
        # Servers differ in case: mailutils answers \NoSelect.
        if {flag.lower() for flag in flags} & {b"\\noselect", b"\\nonexistent"}:
            continue
        path = name if name.upper() == "INBOX" else name.removeprefix(prefix).replace(separator, "/")
        client.select_folder(name, readonly=True)
        uids = client.search("ALL")
        data = client.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
        result[path] = Counter(
            (hashlib.sha256(served(values[b"BODY[]"])).hexdigest(), plain_flags(values[b"FLAGS"]),
             values[b"INTERNALDATE"].timestamp())
            for values in data.values()
        )
    return result


def plain_flags(flags: Any) -> tuple[str, ...]:
    names = (f.decode() if isinstance(f, bytes) else str(f) for f in flags)
    return tuple(sorted(name for name in names if name != "\\Recent"))


def archived_mailbox(dest: Path, account: str, separator: str, prefix: str) -> Mail:
    """The archive in server_mailbox's form (messages still on the server only)."""
    result: Mail = {}
    for folder, messages in archive_contents(dest, account).items():
        path = folder if folder.upper() == "INBOX" else folder.removeprefix(prefix).replace(separator, "/")
        result[path] = Counter((hashlib.sha256(m.body).hexdigest(), tuple(sorted(m.flags)), m.internaldate.timestamp())
                               for m in messages.values() if not m.gone)
    return result


# --------------------------------------------------------------------- tests
def test_folders_lists_every_folder(compat_server: CompatServer, account: CompatAccount, client: IMAPClient) -> None:
    fill(client, scenario_mailbox())

    done = run_cli(["folders", account.name, *server_args(account)], password=account.password)

    assert done.returncode == 0, done.stderr
    for name, count in (("INBOX", 3), ("งานคดี", 2), ("สำคัญ", 1), ("Sent", 2), ("Project Notes", 1)):
        line = next((line for line in done.stdout.splitlines() if name in line), "")
        assert f" {count} " in f" {line} ", (name, done.stdout)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_full_backup_matches_the_server(compat_server: CompatServer, account: CompatAccount, client: IMAPClient,
                                        tmp_path: Path, fmt: str) -> None:
    fill(client, scenario_mailbox())
    on_server = server_mailbox(client)
    prefix, separator = namespace(client)

    done = backup(account, tmp_path, "--format", fmt, "--no-verify")

    assert done.returncode == 0, done.stderr
    assert archived_mailbox(tmp_path, account.name, separator, prefix) == on_server


def test_incremental_backup_then_verify(compat_server: CompatServer, account: CompatAccount, client: IMAPClient,
                                        tmp_path: Path) -> None:
    fill(client, scenario_mailbox())
    prefix, separator = namespace(client)
    assert backup(account, tmp_path, "--no-verify").returncode == 0
    # Server-side changes: new mail, a flag set, a message expunged.
    append(client, "INBOX", sample_mail.SampleMessage(sample_mail.thai_letter(7, WHEN), (), WHEN))
    case_folder = sample_mail.server_folder_name("งานคดี", separator, prefix)
    client.select_folder(case_folder)
    client.add_flags(client.search("ALL")[-1:], ["\\Flagged"])
    client.select_folder(sample_mail.server_folder_name("Sent", separator, prefix))
    client.delete_messages(client.search("ALL")[:1])
    client.expunge()
    client.unselect_folder() if client.has_capability("UNSELECT") else client.close_folder()
    on_server = server_mailbox(client)
    assert sum(on_server["INBOX"].values()) == 4 and sum(on_server["Sent"].values()) == 1

    again = backup(account, tmp_path, "--no-verify")
    verified = run_cli(["verify", account.name, *server_args(account), "--dest", str(tmp_path)],
                       password=account.password)

    assert again.returncode == 0, again.stderr
    assert archived_mailbox(tmp_path, account.name, separator, prefix) == on_server
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_restore_round_trip_from_dovecot(compat_server: CompatServer, account: CompatAccount, client: IMAPClient,
                                         dovecot_server: DovecotServer, tmp_path: Path) -> None:
    source = new_user(dovecot_server)
    with connect_dovecot(source) as source_client:
        fill(source_client, scenario_mailbox())
        before = server_mailbox(source_client, served=(lambda body: line_stored(crlf_normalized(body)))
                                if compat_server.name in LINE_STORES else (lambda body: body))
    assert backup(source, tmp_path, "--no-verify").returncode == 0

    done = run_cli(["restore", source.name, "--dest", str(tmp_path), "--to", account.name,
                    "--to-server", account.server_arg, "--to-cafile", str(account.cafile)],
                   env={"MAILBACKUP_TARGET_PASSWORD": account.password})

    after = server_mailbox(client)
    changed = CONTENT_CHANGED.get(compat_server.name)
    if changed is None:
        assert done.returncode == 0, done.stdout + done.stderr
    else:  # detected, not hidden: exit 1 and the message named
        folder, how, product = changed
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert re.search(rf"{folder} UID \d+: the target \({product}[^)]*\) changed the message's bytes "
                         rf"\(\d+ {re.escape(how)}\)", output), output
        assert after[folder] != before[folder]  # the server did change it
        after, before = ({path: mail for path, mail in box.items() if path != folder} for box in (after, before))
    # A server may make an implied parent (กล่องขาเข้า) a real, empty folder: compare the mail.
    assert set(before) <= set(after)
    assert {path: mail for path, mail in after.items() if mail} == {path: mail for path, mail in before.items() if mail}


def test_live_mail_is_never_taken_for_gone(compat_server: CompatServer, account: CompatAccount, client: IMAPClient,
                                          tmp_path: Path) -> None:
    """Issue 13 defect 2: imap4d answers UID SEARCH UID 1:* with nothing while EXISTS counts its mail.
    Backup and verify ask another way (UID SEARCH ALL) and never take live mail for gone."""
    fill(client, scenario_mailbox())
    assert backup(account, tmp_path, "--no-verify").returncode == 0
    append(client, "INBOX", sample_mail.SampleMessage(sample_mail.thai_letter(8, WHEN), (), WHEN))
    on_server = server_mailbox(client)

    again = backup(account, tmp_path, "--no-verify")
    verified = run_cli(["verify", account.name, *server_args(account), "--dest", str(tmp_path)],
                       password=account.password)

    assert again.returncode == 0, again.stdout + again.stderr
    archived = archive_contents(tmp_path, account.name)
    assert [uid for messages in archived.values() for uid, message in messages.items() if message.gone] == []
    assert sum(not message.gone for message in archived["INBOX"].values()) == 4
    total = sum(sum(mail.values()) for mail in on_server.values())
    assert f"{total} messages on the server" in verified.stdout, verified.stdout + verified.stderr


def connect_dovecot(user: Any) -> IMAPClient:
    client = IMAPClient(user.host, port=user.port, ssl=True,
                        ssl_context=ssl.create_default_context(cafile=str(user.cafile)), timeout=30)
    client.plain_login(user.name, user.password)
    return client


@pytest.mark.slow
def test_big_mailbox_backup_then_verify(compat_server: CompatServer, account: CompatAccount, client: IMAPClient,
                                        tmp_path: Path) -> None:
    fill(client, scenario_mailbox(extra=BIG_MAILBOX))
    prefix, separator = namespace(client)

    done = backup(account, tmp_path, "--no-verify", "--batch-size", "100")
    verified = run_cli(["verify", account.name, *server_args(account), "--dest", str(tmp_path)],
                       password=account.password)

    assert done.returncode == 0, done.stderr
    assert archived_mailbox(tmp_path, account.name, separator, prefix) == server_mailbox(client)
    assert verified.returncode == 0, verified.stdout + verified.stderr
