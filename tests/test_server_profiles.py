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

from collections.abc import Iterator

import pytest
import sample_mail
from conftest import ImapUser, new_user, tls_context
from dovecot_server import DovecotServer
from helpers import archive_contents, backup, run_cli, server_args
from imapclient import IMAPClient

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
