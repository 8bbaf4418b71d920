"""A real server that fails: a message Dovecot cannot read (it disconnects on
it every time), a link that drops, a server that stalls.  The backup saves
everything it can, names what it could not, and completes when it can."""

from __future__ import annotations

import re

import sample_mail
from helpers import archive_contents, backup, server_contents

from mailbackup.errors import ExitCode


def letters(count: int, start: int = 0) -> list[bytes]:
    return [sample_mail.thai_letter(start + i, sample_mail._DEFAULT_DATE) for i in range(count)]


def test_a_message_the_server_cannot_read_is_isolated(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    uids = sample_mail.fill_mailbox(client, {"INBOX": letters(30), "Other": letters(3, 100)})["INBOX"]
    expected = server_contents(client, "INBOX")
    bad_uid = uids[17]
    needle = re.search(rb"Message-ID: (<[^>]+>)", letters(18)[17], re.I).group(1)  # type: ignore[union-attr]
    broken = imap_user.server.find_message_file(imap_user.name, needle)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # Dovecot now disconnects on every FETCH of it

    result = backup(imap_user, tmp_path, "--batch-size", "10", "--retry-delay", "0.05")

    assert result.returncode == ExitCode.WARNINGS, result.stderr
    assert f"PARTIAL INBOX: UIDs not saved: {bad_uid}" in result.stderr
    stored = archive_contents(tmp_path, imap_user.name)
    assert set(stored["INBOX"]) == set(uids) - {bad_uid}
    for uid, message in stored["INBOX"].items():
        assert message.body == expected[uid][0]
    assert len(stored["Other"]) == 3
    # the failure is remembered and retried next time, not silently forgotten
    again = backup(imap_user, tmp_path, "--retry-delay", "0.05")
    assert again.returncode == ExitCode.WARNINGS and str(bad_uid) in again.stderr
    broken.write_bytes(data)  # the administrator repairs the file
    healed = backup(imap_user, tmp_path, "--retry-delay", "0.05")
    assert healed.returncode == 0, healed.stderr
    assert set(archive_contents(tmp_path, imap_user.name)["INBOX"]) == set(uids)
