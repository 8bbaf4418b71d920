"""The backup's progress at a terminal: the overall total is known before the
first download (from the folders' STATUS) and the bar never goes backwards."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import sample_mail
from conftest import new_filled_user
from dovecot_server import DovecotServer
from helpers import server_args
from test_first_run import run_in_terminal, terminal_env

from mailbackup.sync.plan import expected_new


def test_the_overall_bar_knows_its_total_from_the_start(dovecot_server: DovecotServer, tmp_path: Path) -> None:
    user = new_filled_user(dovecot_server, sample_mail.sample_mailbox())
    env = terminal_env(tmp_path, MAILBACKUP_PASSWORD=user.password)
    code, screen = run_in_terminal(["backup", user.name, *server_args(user), "--dest", str(tmp_path / "d"),
                                    "--no-verify"], env, [])
    assert code == 0, screen
    bars = re.findall(r"all folders:\s+(\d+)%\|[^|]*\|\s*([\d.]+k?)/([\d.]+k?)", screen)
    assert bars, screen
    percents = [int(percent) for percent, _, _ in bars]
    assert percents == sorted(percents) and percents[-1] == 100
    assert len({total for _, _, total in bars}) == 1  # the first total drawn is the last one
    counts = re.findall(r"(\d+) of (\d+) messages", screen)
    messages = sum(len(folder) for folder in sample_mail.sample_mailbox().values())
    assert {int(total) for _, total in counts} == {messages}
    assert int(counts[-1][0]) == messages


def test_the_expected_work_is_an_upper_bound_from_status() -> None:
    from mailbackup.model import FolderStatus
    from mailbackup.state.db import FolderRecord

    status = FolderStatus(name="INBOX", messages=10, uidnext=21, uidvalidity=7, size=1000)
    record = FolderRecord(id=1, name="INBOX", delimiter="/", local_path="INBOX", uidvalidity=7, uidnext=18,
                          highestmodseq=None, server_messages=8, generation=1, mbox_committed=0, last_sync=None,
                          gone_at=None)
    assert expected_new(None, status) == (10, 1000)  # never backed up: everything
    assert expected_new(record, status) == (3, 300)  # UIDs 18, 19, 20 at most
    assert expected_new(replace(record, uidvalidity=6), status) == (10, 1000)
    unchanged = replace(record, uidnext=21, server_messages=10)
    assert expected_new(unchanged, status) == (0, 0)
