"""What a server was seen to do that later runs should start from, kept in
the account's state (`meta` table), keyed by the server's address.

Today one habit: it mishandles pipelined commands (imap/pipeline.py), so a
later run keeps one command in flight from its first FETCH instead of
finding out again at the cost of a dropped connection or refused batches.
"""

from __future__ import annotations

from mailbackup.imap.session import ImapSession
from mailbackup.state.db import StateDB
from mailbackup.state.rows import now_iso

ONE_COMMAND_AT_A_TIME = "one command at a time: {server}"


def recall(state: StateDB, session: ImapSession) -> None:
    if state.get_meta(ONE_COMMAND_AT_A_TIME.format(server=session.settings.server)) is not None:
        session.one_command_at_a_time = True


def remember(state: StateDB, session: ImapSession) -> None:
    key = ONE_COMMAND_AT_A_TIME.format(server=session.settings.server)
    if session.one_command_at_a_time and state.get_meta(key) is None:
        state.set_meta(key, now_iso())  # when it was first seen
