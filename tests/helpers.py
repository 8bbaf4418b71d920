"""Test helpers: run the real CLI, read an archive back, read a mailbox
from the server.  What a user would check, with nothing mocked."""

from __future__ import annotations

import logging
import mailbox
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner
from imapclient import IMAPClient
from untranslated import check_thai_output

from mailbackup.archive import open_archive
from mailbackup.store import mboxrd
from mailbackup.store.mboxrd import unquote

REPO = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], *, password: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m mailbackup ARGS` in a subprocess, as a user runs it."""
    environment = dict(os.environ)
    environment.pop("MAILBACKUP_PASSWORD", None)
    if password is not None:
        environment["MAILBACKUP_PASSWORD"] = password
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-m", "mailbackup", *args], capture_output=True, text=True,
                          env=environment, timeout=timeout, input=input, cwd=REPO)
    check_thai_output(args, environment, done.stdout, done.stderr)
    return done


def keyring_env(directory: Path) -> dict[str, str]:
    """A keyring of the test's own (tests/testkeyring.py), in `directory`, for the processes it starts."""
    return {"PYTHON_KEYRING_BACKEND": "testkeyring.SandboxKeyring", "PYTHONPATH": str(REPO / "tests"),
            "MAILBACKUP_TEST_KEYRING": str(directory / "keyring.json")}


def server_args(user: Any) -> list[str]:
    return ["--server", user.server_arg, "--cafile", str(user.cafile)]


def backup(user: Any, dest: Path, *extra: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run_cli(["backup", user.name, *server_args(user), "--dest", str(dest), *extra],
                   password=user.password, **kwargs)


@dataclass(frozen=True)
class Stored:
    uid: int
    body: bytes
    flags: tuple[str, ...]
    internaldate: datetime
    gone: bool


def sessions_of(run: Callable[[], object], server: Any, user: Any, settle: float = 3.0) -> list[Any]:
    """The sessions `run()` opened on a rawlog server (tests/conftest.py `rawlog_server`).
    mailbackup does not wait for LOGOUT's answer, so a session may still be
    open, its rawlog not yet written out, when `run()` returns: wait up to
    `settle` seconds for every session to have logged out."""
    before = len(server.rawlog_sessions(user.name))
    run()
    deadline = time.monotonic() + settle
    while True:
        sessions = list(server.rawlog_sessions(user.name)[before:])
        if time.monotonic() >= deadline or all(
                any(command.upper().startswith("LOGOUT") for command in session.commands()) for session in sessions):
            return sessions
        time.sleep(0.05)


def archive_contents(dest: Path, account: str) -> dict[str, dict[int, Stored]]:
    """Every stored message, by folder name and UID, read through the stores."""
    result: dict[str, dict[int, Stored]] = {}
    with open_archive(dest, account, lock=False, create=False) as archive:
        for folder in archive.state.folders():
            messages = result.setdefault(folder.name, {})
            for message in archive.state.messages(folder.id):
                if message.uidvalidity != folder.uidvalidity:
                    continue
                body = archive.store.read(folder.local_path, message)
                messages[message.uid] = Stored(message.uid, body, message.flags, message.internaldate,
                                               message.gone_at is not None)
    return result


def state_rows(dest: Path, account: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    from mailbackup.archive import account_dir

    db = sqlite3.connect(account_dir(dest, account) / "state.sqlite3")
    try:
        return list(db.execute(sql, params))
    finally:
        db.close()


def server_contents(client: IMAPClient, folder: str) -> dict[int, tuple[bytes, tuple[str, ...], datetime]]:
    client.normalise_times = False
    client.select_folder(folder, readonly=True)
    uids = client.search("ALL")
    if not uids:
        return {}
    data = client.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
    return {
        uid: (values[b"BODY[]"], tuple(sorted(f.decode() for f in values[b"FLAGS"] if f != b"\\Recent")),
              values[b"INTERNALDATE"])
        for uid, values in data.items()
    }


def server_folders(client: IMAPClient) -> list[str]:
    return [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]


def mbox_bodies(path: Path) -> list[bytes]:
    """Read an mbox with Python's own reader, undoing mboxrd quoting."""
    box = mailbox.mbox(str(path), create=False)
    try:
        return [unquote(box.get_bytes(key)) for key in box.keys()]  # noqa: SIM118 - a Mailbox iterates messages
    finally:
        box.close()


def maildir_bodies(path: Path) -> list[bytes]:
    box = mailbox.Maildir(str(path), create=False)
    return [box.get_bytes(key) for key in box.keys()]  # noqa: SIM118 - a Mailbox iterates messages


def subcommands(group: object) -> dict[str, object]:
    """A group's commands, loading lazily registered ones (cli/lazy.py)."""
    if not isinstance(group, click.Group):
        return {}
    context = click.Context(group)
    return {name: group.get_command(context, name) for name in group.list_commands(context)}


def run_cli_in_process(args: list[str], password: str) -> tuple[int, str]:
    """A mailbackup command in this process (fast; lets a test swap a part): exit code and
    output.  The process-wide things a command sets (umask, logging) are put back afterwards."""
    from mailbackup.cli import cli

    umask = os.umask(0o022)
    os.umask(umask)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli, args, env={"MAILBACKUP_PASSWORD": password}, catch_exceptions=True)
    finally:
        os.umask(umask)
        root.handlers[:], root.level = handlers, level
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback: {result.exception!r}\n{result.output}")
    return result.exit_code, result.output


def assert_state_matches_disk(dest: Path, account: str) -> None:
    """What the state says is exactly what is on disk: no orphan, no torn write."""
    with open_archive(dest, account, lock=False, create=False) as archive:
        for folder in archive.state.folders():
            rows = list(archive.state.messages(folder.id))
            if archive.store.format == "maildir":
                base = archive.store.resolve(folder.local_path)
                files = {path.name.split(":2,")[0] for sub in ("cur", "new") for path in (base / sub).iterdir()}
                committed = {row.location for row in rows}
                pending = {row.location for row in archive.state.pending(folder.id)}
                assert committed <= files
                assert files - committed <= pending  # only a recoverable write may be unrecorded
            else:
                path = archive.store.mbox_path(folder.local_path)  # type: ignore[attr-defined]
                with open(path, "rb") as handle:
                    spans = list(mboxrd.iter_entries(handle))
                committed = [span for span in spans if span.offset < folder.mbox_committed]
                assert [(s.offset, s.length) for s in committed] == sorted(
                    (row.mbox_offset, row.mbox_length) for row in rows)
            for row in rows:  # every committed message is whole
                assert len(archive.store.read(folder.local_path, row)) == row.size
