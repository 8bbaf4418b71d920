"""Bounded memory: a large message is fetched in ranges and streamed to disk,
so peak memory does not grow with the size of a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sample_mail
from helpers import REPO, archive_contents, backup, server_args, server_contents, state_rows
from make_corpus import make_corpus

MEASURE = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode\n"
    "print(json.dumps({'code': code, 'kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)
BIG_FOLDER = 20_000
NEW_MAIL = 200


def peak_kib(user, dest, fmt: str, *options: str) -> int:
    command = [sys.executable, "-m", "mailbackup", "backup", user.name, *server_args(user), "--dest", str(dest),
               "--format", fmt, *options]
    env = {**os.environ, "MAILBACKUP_PASSWORD": user.password}
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env,
                         cwd=REPO, check=True).stdout
    result = json.loads(out)
    assert result["code"] == 0
    return int(result["kib"])


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_peak_memory_does_not_grow_with_message_size(imap_user_factory, dovecot_server, imap_client_factory,
                                                     tmp_path, fmt):
    small_user = imap_user_factory(dovecot_server)
    big_user = imap_user_factory(dovecot_server)
    sample_mail.fill_mailbox(imap_client_factory(small_user), {"INBOX": [sample_mail.big_message(2 << 20)]})
    big = sample_mail.big_message(50 << 20, seed=3)
    sample_mail.fill_mailbox(imap_client_factory(big_user), {"INBOX": [big]})

    baseline = peak_kib(small_user, tmp_path / "small", fmt)
    with_big = peak_kib(big_user, tmp_path / "big", fmt)

    print(f"{fmt}: peak RSS {baseline // 1024} MB with a 2 MB message, {with_big // 1024} MB with 50 MB")
    assert with_big - baseline < 30 * 1024, (baseline, with_big)  # far less than the 50 MB message
    (stored,) = archive_contents(tmp_path / "big", big_user.name)["INBOX"].values()
    assert stored.body == big


def test_new_mail_in_a_big_folder_keeps_memory_flat(imap_user_factory, dovecot_server, tmp_path):
    """Issue 18: an incremental run of a big folder with new mail holds its UID
    lists as arrays, not sets of Python ints, and reads the server's UID SEARCH
    answer without an object per UID: its peak does not grow with the folder.
    The same 200 new messages arrive in a folder of 200 and in one of 20,000
    (old code: 10 MB more for the big one; 72 MB more at 100,000)."""
    small = incremental_peak_kib(imap_user_factory(dovecot_server), dovecot_server, tmp_path / "small", 200)
    big = incremental_peak_kib(imap_user_factory(dovecot_server), dovecot_server, tmp_path / "big", BIG_FOLDER)

    print(f"peak RSS with 200 new messages: {small} KiB in a folder of 200, {big} KiB in one of {BIG_FOLDER}")
    assert big - small < 4 * 1024, (small, big)  # SQLite's page cache (512 KB at most) fills reading the big one


def test_fetches_in_flight_share_the_batch_budget(imap_user_factory, dovecot_server, tmp_path):
    """Issue 18: Dovecot answers pipelined FETCHes as fast as it can, so the
    bodies of every batch in flight arrive before the first is written: with
    4 MB per batch, eight in flight (`--pipeline 8`, where the read-ahead
    shows most) and 24 MB of new mail, the peak rose by 11 MB over the
    no-op's (6.5 MB with the default three).  Now the batches in flight share
    the 4 MB."""
    user = imap_user_factory(dovecot_server)
    make_corpus(dovecot_server, user.name, messages=50, folders=1, single_folder=True, profile="small", processes=1)
    dest = tmp_path / "archive"
    peak_kib(user, dest, "maildir")
    no_op = peak_kib(user, dest, "maildir")
    make_corpus(dovecot_server, user.name, messages=600, folders=1, single_folder=True, append=True, seed=2,
                target_bytes=24 << 20, processes=1)

    # One connection: with more, each would hold its own share of the folder's batches (sharing.py).
    with_new = peak_kib(user, dest, "maildir", "--pipeline", "8", "--connections", "1")

    print(f"peak RSS: no-op {no_op} KiB, with 24 MB of new mail {with_new} KiB")
    assert state_rows(dest, user.name, "SELECT count(*) FROM messages") == [(650,)]
    assert with_new - no_op < 6 * 1024, (no_op, with_new)


def incremental_peak_kib(user, server, dest, messages: int) -> int:
    """Back up a folder of `messages`, deliver 200 more, and measure the run that fetches them."""
    make_corpus(server, user.name, messages=messages, folders=1, single_folder=True, profile="small", processes=1)
    peak_kib(user, dest, "maildir")
    make_corpus(server, user.name, messages=NEW_MAIL, folders=1, single_folder=True, profile="small",
                append=True, seed=1, processes=1)
    peak = peak_kib(user, dest, "maildir")
    assert state_rows(dest, user.name, "SELECT count(*) FROM messages") == [(messages + NEW_MAIL,)]
    return peak


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_messages_above_a_megabyte_are_spooled_and_stored_whole(imap_user_factory, dovecot_server,
                                                                imap_client_factory, tmp_path, fmt):
    """Bodies above 1 MB go to a spool file on their way in (memory holds no
    big message); in a Maildir the spool file becomes the message's file
    (a hard link, no copy), in an mbox it is copied; no spool name is left."""
    user = imap_user_factory(dovecot_server)
    client = imap_client_factory(user)
    bodies = [sample_mail.big_message((1 << 20) + 4096 * seed, seed=seed) for seed in range(3)]
    sample_mail.fill_mailbox(client, {"INBOX": [*bodies, sample_mail.big_message(20_000, seed=9)]})

    result = backup(user, tmp_path, "--no-verify", "--format", fmt)

    assert result.returncode == 0, result.stderr
    stored = archive_contents(tmp_path, user.name)["INBOX"]
    assert {uid: message.body for uid, message in stored.items()} == \
        {uid: body for uid, (body, _, _) in server_contents(client, "INBOX").items()}
    account = next(path for path in tmp_path.iterdir() if path.is_dir())
    assert not [path for path in (account / "tmp").rglob("*") if path.is_file()]
    if fmt == "maildir":
        files = [path for path in (account / "mail").rglob("*") if path.is_file() and path.parent.name == "cur"]
        assert len(files) == 4 and all(path.stat().st_nlink == 1 for path in files)
