"""The archive against a model, through random histories on a real Dovecot (issue 13).

A hypothesis `RuleBasedStateMachine` changes a fresh Dovecot mailbox at
random (append, byte-identical duplicates, messages without a final newline,
flag and unflag, expunge, rename, delete and recreate a folder with a new
UIDVALIDITY, nested Thai folders) and runs `mailbackup backup` and `verify`
as a user does, through the CLI: in this process (CliRunner) for speed, or in
a subprocess killed by a fault point (mailbackup/faults.py) and then resumed.

The model is what the archive promises, computed from what the test itself
reads from the server at each backup:

* every message the server held at a backup is in the archive, each copy
  exactly once per folder (a folder recreated with a new UIDVALIDITY claims
  each old copy of the same content once, and stores the rest anew);
* a message no longer on the server (or in a folder no longer on it) is kept
  and marked gone; the live ones carry the server's flags;
* `verify` exits 0, saying COMPLETE, exactly when every message the server
  holds now is in the archive under its current UIDVALIDITY and UID.

The archive is read as documented: state.sqlite3 and the store's files.  CI
runs a few examples; MAILBACKUP_SLOW=1 runs thousands.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import backup as subprocess_backup
from helpers import run_cli_in_process
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from imapclient import IMAPClient

from mailbackup.archive import account_dir, open_archive

SLOW = os.environ.get("MAILBACKUP_SLOW") == "1"

# Few and small, so duplicates are common: the last one has no final newline.
BODIES = [
    b"From: =?UTF-8?B?4Lio4Liy4Lil?= <court@coj.go.th>\r\nSubject: one\r\nMessage-ID: <1@coj.go.th>\r\n\r\n"
    b"\xe0\xb9\x80\xe0\xb8\xa3\xe0\xb8\xb5\xe0\xb8\xa2\xe0\xb8\x99\r\nFrom the desk\r\n",
    b"From: clerk@coj.go.th\r\nSubject: two\r\nMessage-ID: <2@coj.go.th>\r\n\r\n>From quoted\r\nline\r\n",
    b"From: clerk@coj.go.th\r\nSubject: three\r\n\r\nno Message-ID here\r\n",
    b"From: clerk@coj.go.th\r\nSubject: four\r\nMessage-ID: <4@coj.go.th>\r\n\r\nno final newline",
]
FLAGS = [b"\\Seen", b"\\Flagged", b"\\Answered", b"\\Draft"]
TOP_NAMES = ["งานคดี", "Archive", "ร่าง หนังสือ"]
CHILD_NAMES = ["2566", "ศาลฎีกา"]
FAULTS = ["after-pending", "after-write"]
# The Maildir standard's info letters, as README's "The archive" promises them in file names.
MAILDIR_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}
STATIC_ARGS = ["--no-verify", "--batch-size", "2", "--retry-delay", "0.01"]


@dataclass
class Row:
    """One copy the archive should hold."""

    uidvalidity: int
    uid: int
    body: bytes
    flags: frozenset[str]
    gone: bool = False
    letters: str | None = None  # Maildir: the info letters of the message's file name


@dataclass(frozen=True)
class ServerFolder:
    uidvalidity: int
    messages: dict[int, tuple[bytes, frozenset[str]]]


def flag_names(raw: Any) -> frozenset[str]:
    names = (flag.decode() if isinstance(flag, bytes) else str(flag) for flag in raw)
    return frozenset(name for name in names if name.lower() != "\\recent")


def maildir_names(cur: Path) -> dict[str, str]:
    """Base name → info letters of each file in a Maildir's cur/ (none for an mbox)."""
    if not cur.is_dir():
        return {}
    names = {}
    for path in cur.iterdir():
        base, *info = re.split(r"[:;!]2,", path.name, maxsplit=1)  # ";2," on Windows
        names[base] = info[0] if info else ""
    return names


class Model:
    """What the archive must hold, updated from the server as each backup saw it."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {}
        self.folders_gone: set[str] = set()
        self.validity: dict[str, int] = {}  # each folder's UIDVALIDITY at its last backup

    def backed_up(self, server: dict[str, ServerFolder]) -> None:
        for name in self.rows:
            if name not in server:
                self.folders_gone.add(name)
        for name, folder in server.items():
            self.folders_gone.discard(name)
            self._sync_folder(self.rows.setdefault(name, []), folder)
            self.validity[name] = folder.uidvalidity

    @staticmethod
    def _sync_folder(rows: list[Row], folder: ServerFolder) -> None:
        validity = folder.uidvalidity
        new_generation = any(row.uidvalidity != validity and not row.gone for row in rows)
        held = {row.uid: row for row in rows if row.uidvalidity == validity}
        for uid, (body, flags) in sorted(folder.messages.items()):
            row = held.get(uid)
            if row is None and new_generation:  # an old copy of the same content, claimed once
                row = next((old for old in rows if old.uidvalidity != validity and old.body == body), None)
            if row is None:
                row = Row(validity, uid, body, flags)
                rows.append(row)
            row.uidvalidity, row.uid, row.flags, row.gone = validity, uid, flags, False
        for row in rows:
            if row.uidvalidity != validity or row.uid not in folder.messages:
                row.gone = True

    def backup_exit_code(self, server: dict[str, ServerFolder]) -> int:
        """1 (warnings) when a folder whose mail the archive holds as live is empty on the
        server: the backup says so (a wiped folder is worth a look); 0 otherwise."""
        emptied = any(not folder.messages and any(not row.gone for row in self.rows.get(name, []))
                      for name, folder in server.items())
        return 1 if emptied else 0

    def complete(self, server: dict[str, ServerFolder]) -> bool:
        """Every message on the server now is archived under its UIDVALIDITY and UID; or, where
        the server changed the folder's UIDVALIDITY since its last backup, each message has a
        copy of its own with the same content in the generation that backup saw (verify pairs
        them one to one by SHA-256, as a backup's new generation does)."""
        for name, folder in server.items():
            rows = self.rows.get(name, [])
            then = self.validity.get(name)
            if then is not None and then != folder.uidvalidity:
                copies = Counter(row.body for row in rows if row.uidvalidity == then)
                wanted = Counter(body for body, _flags in folder.messages.values())
                if any(copies[body] < count for body, count in wanted.items()):
                    return False
                continue
            archived = {(row.uidvalidity, row.uid) for row in rows}
            if any((folder.uidvalidity, uid) not in archived for uid in folder.messages):
                return False
        return True


class ArchiveMachine(RuleBasedStateMachine):
    # Set by the test function before it runs the machine.
    server: Any = None
    directory: Path = Path()
    examples = 0

    def __init__(self) -> None:
        super().__init__()
        from conftest import new_user, tls_context

        ArchiveMachine.examples += 1
        self.user = new_user(self.server)
        self.dest = self.directory / f"example-{ArchiveMachine.examples}"
        self.client = IMAPClient(self.user.host, port=self.user.port, ssl=True,
                                 ssl_context=tls_context(self.user.cafile), timeout=30)
        self.client.plain_login(self.user.name, self.user.password)
        self.client.normalise_times = False
        self.folders: list[str] = ["INBOX"]  # the server's, as the rules made them
        self.model = Model()
        self.format = "maildir"
        self.history: list[str] = []

    def teardown(self) -> None:
        try:
            self.client.logout()
        except (OSError, ssl.SSLError, IMAPClient.Error):
            pass

    def note(self, text: str) -> None:
        self.history.append(text)

    # -- the server ---------------------------------------------------
    def snapshot(self) -> dict[str, ServerFolder]:
        result = {}
        for name in self.folders:
            selected = self.client.select_folder(name, readonly=True)
            uids = self.client.search("ALL")
            data = self.client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
            result[name] = ServerFolder(int(selected[b"UIDVALIDITY"]), {
                uid: (values[b"BODY[]"], flag_names(values[b"FLAGS"])) for uid, values in data.items()})
        self.client.close_folder()  # read-only: CLOSE expunges nothing
        return result

    def leaves(self) -> list[str]:
        return [name for name in self.folders
                if name != "INBOX" and not any(other.startswith(name + "/") for other in self.folders)]

    @initialize(fmt=st.sampled_from(["maildir", "mbox"]),
                inbox=st.lists(st.sampled_from(range(len(BODIES))), max_size=4),
                cases=st.lists(st.sampled_from(range(len(BODIES))), max_size=4))
    def start(self, fmt: str, inbox: list[int], cases: list[int]) -> None:
        """The format of this example's archive, and a few messages to begin with (duplicates
        likely) in INBOX and in a folder the rules may rename or recreate."""
        self.format = fmt
        self.create_folder(TOP_NAMES[0])
        for folder, bodies in (("INBOX", inbox), (TOP_NAMES[0], cases)):
            for body in bodies:
                self.client.append(folder, BODIES[body])
        self.note(f"format {fmt}, INBOX starts with bodies {inbox}, {TOP_NAMES[0]} with {cases}")

    @rule(data=st.data(), body=st.sampled_from(range(len(BODIES))), flags=st.sets(st.sampled_from(FLAGS)))
    def append(self, data: st.DataObject, body: int, flags: set[bytes]) -> None:
        self.append_message(data.draw(st.sampled_from(self.folders), label="folder"), body, sorted(flags))

    @rule(data=st.data(), index=st.integers(0, 5), flag=st.sampled_from(FLAGS), add=st.booleans())
    def flag(self, data: st.DataObject, index: int, flag: bytes, add: bool) -> None:
        self.set_flag(data.draw(st.sampled_from(self.folders), label="folder"), index, flag, add)

    @rule(data=st.data(), index=st.integers(0, 5))
    def expunge(self, data: st.DataObject, index: int) -> None:
        self.expunge_message(data.draw(st.sampled_from(self.folders), label="folder"), index)

    @rule(data=st.data(), top=st.booleans())
    def create(self, data: st.DataObject, top: bool) -> None:
        parents = [folder for folder in self.folders if folder != "INBOX" and folder.count("/") < 2]
        if top or not parents:
            name = data.draw(st.sampled_from(TOP_NAMES), label="name")
        else:
            name = data.draw(st.sampled_from(parents), label="parent") + "/" + data.draw(
                st.sampled_from(CHILD_NAMES), label="child")
        if name not in self.folders:
            self.create_folder(name)

    @precondition(lambda self: bool(self.leaves()))
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(self.leaves()), label="folder")
        free = [name for name in [*TOP_NAMES, old + "-ใหม่"] if name not in self.folders]
        if free:
            self.rename_folder(old, data.draw(st.sampled_from(free), label="new name"))

    @precondition(lambda self: bool(self.leaves()))
    @rule(data=st.data())
    def recreate(self, data: st.DataObject) -> None:
        self.recreate_folder(data.draw(st.sampled_from(self.leaves()), label="folder"))

    # The changes themselves, also called by the example tests below.
    def append_message(self, folder: str, body: int, flags: list[bytes] | None = None) -> None:
        self.client.append(folder, BODIES[body], flags=flags or ())
        self.note(f"append body {body} flags {flags or []} to {folder}")

    def set_flag(self, folder: str, index: int, flag: bytes, add: bool) -> None:
        self.client.select_folder(folder)
        uids = self.client.search("ALL")
        if uids:
            uid = uids[index % len(uids)]
            (self.client.add_flags if add else self.client.remove_flags)([uid], [flag])
            self.note(f"{'add' if add else 'remove'} {flag.decode()} on UID {uid} of {folder}")
        self.client.close_folder()

    def expunge_message(self, folder: str, index: int) -> None:
        self.client.select_folder(folder)
        uids = self.client.search("ALL")
        if uids:
            uid = uids[index % len(uids)]
            self.client.delete_messages([uid])
            self.client.uid_expunge([uid])
            self.note(f"expunge UID {uid} of {folder}")
        self.client.close_folder()

    def create_folder(self, name: str) -> None:
        self.client.create_folder(name)
        self.folders.append(name)
        self.note(f"create {name}")

    def rename_folder(self, old: str, new: str) -> None:
        self.client.rename_folder(old, new)
        self.folders[self.folders.index(old)] = new
        self.note(f"rename {old} to {new}")

    def recreate_folder(self, folder: str) -> None:
        """Delete the folder and create it again with the same messages: a new UIDVALIDITY."""
        before = self.snapshot()[folder]
        self.client.delete_folder(folder)
        self.client.create_folder(folder)
        for _uid, (body, flags) in sorted(before.messages.items()):
            self.client.append(folder, body, flags=sorted(flags))
        self.note(f"delete and recreate {folder} with its {len(before.messages)} messages")

    # -- mailbackup ---------------------------------------------------
    def cli_args(self, command: str) -> list[str]:
        return [command, self.user.name, "--server", self.user.server_arg, "--cafile", str(self.user.cafile),
                "--dest", str(self.dest)]

    @rule()
    def backup(self) -> None:
        server = self.snapshot()
        expected = self.model.backup_exit_code(server)
        code, output = run_cli_in_process([*self.cli_args("backup"), "--format", self.format, *STATIC_ARGS],
                                          self.user.password)
        self.note(f"backup (exit {code})")
        assert code == expected, self.explain(output)
        self.model.backed_up(server)

    @rule(fault=st.sampled_from(FAULTS), hit=st.integers(1, 3))
    def backup_killed_then_resumed(self, fault: str, hit: int) -> None:
        server = self.snapshot()
        expected = self.model.backup_exit_code(server)
        killed = subprocess_backup(self.user, self.dest, "--format", self.format, *STATIC_ARGS,
                                   env={"MAILBACKUP_FAULTS": f"{fault}={hit}"}, timeout=120)
        self.note(f"backup killed at {fault}={hit} (exit {killed.returncode}), then resumed")
        assert killed.returncode in (expected, -signal.SIGKILL), self.explain(killed.stdout + killed.stderr)
        code, output = run_cli_in_process([*self.cli_args("backup"), *STATIC_ARGS], self.user.password)
        # The warning about an emptied folder is given once, by whichever run marked its mail gone.
        assert code in ((0, expected) if killed.returncode < 0 else (0,)), self.explain(output)
        self.model.backed_up(server)

    @precondition(lambda self: bool(self.model.rows))
    @rule()
    def verify(self) -> None:
        server = self.snapshot()
        code, output = run_cli_in_process(self.cli_args("verify"), self.user.password)
        expected = self.model.complete(server)
        self.note(f"verify (exit {code})")
        report = json.loads((account_dir(self.dest, self.user.name) / "reports" / "verify.json").read_text("utf-8"))
        assert (code == 0) == expected, self.explain(f"the model says complete={expected}\n{output}")
        assert (report["status"] == "complete") == expected, self.explain(output)

    # -- the archive against the model ---------------------------------
    @invariant()
    def archive_matches_model(self) -> None:
        if not self.model.rows:
            return
        archived = self.read_archive()
        for name, rows in self.model.rows.items():
            got = archived.get(name, [])
            assert Counter(row.body for row in got) == Counter(row.body for row in rows), self.explain(
                f"folder {name}: copies by content differ\n archive {self.describe(got)}\n model   "
                f"{self.describe(rows)}")
            live = {(row.uidvalidity, row.uid): (row.body, row.flags) for row in got if not row.gone}
            expected = {(row.uidvalidity, row.uid): (row.body, row.flags) for row in rows if not row.gone}
            if name in self.model.folders_gone:
                expected = {}
            assert live == expected, self.explain(f"folder {name}: live messages or their flags differ\n archive "
                                                  f"{self.describe(got)}\n model   {self.describe(rows)}")
        assert set(archived) <= set(self.model.rows), self.explain(f"unexpected folders {set(archived)}")
        if self.format == "maildir":
            for name, rows in archived.items():
                for row in rows:
                    if not row.gone:
                        wanted = "".join(sorted(MAILDIR_LETTERS[flag] for flag in row.flags if flag in MAILDIR_LETTERS))
                        assert row.letters == wanted, self.explain(f"folder {name} UID {row.uid}: file name says "
                                                                   f"{row.letters!r}, flags {sorted(row.flags)}")

    def read_archive(self) -> dict[str, list[Row]]:
        result: dict[str, list[Row]] = {}
        with open_archive(self.dest, self.user.name, lock=False, create=False) as archive:
            for folder in archive.state.folders():
                rows = result.setdefault(folder.name, [])
                names = maildir_names(archive.root / "mail" / folder.local_path / "cur")
                for message in archive.state.messages(folder.id):
                    body = archive.store.read(folder.local_path, message)
                    rows.append(Row(message.uidvalidity, message.uid, body, frozenset(message.flags),
                                    gone=message.gone_at is not None or folder.gone_at is not None,
                                    letters=names.get(message.location or "")))
        return result

    @staticmethod
    def describe(rows: list[Row]) -> str:
        return ", ".join(f"{r.uidvalidity}/{r.uid}:body{BODIES.index(r.body) if r.body in BODIES else '?'}"
                         f"{'(gone)' if r.gone else ''}{''.join(sorted(f[1] for f in r.flags))}"
                         for r in sorted(rows, key=lambda r: (r.uidvalidity, r.uid)))

    def explain(self, text: str) -> str:
        return text + "\nhistory:\n  " + "\n  ".join(self.history)


def run_machine(dovecot_server: Any, tmp_path_factory: pytest.TempPathFactory, examples: int, steps: int) -> None:
    ArchiveMachine.server = dovecot_server
    ArchiveMachine.directory = tmp_path_factory.mktemp("model")
    ArchiveMachine.examples = 0
    started = time.monotonic()
    run_state_machine_as_test(ArchiveMachine, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=not SLOW,
        database=None, suppress_health_check=list(HealthCheck), print_blob=True))
    seconds = time.monotonic() - started
    print(f"state machine: {ArchiveMachine.examples} examples in {seconds:.0f} s "
          f"({seconds / max(1, ArchiveMachine.examples):.2f} s each)")


@pytest.mark.slow
def test_archive_follows_the_model(dovecot_server, tmp_path_factory):
    """CI: 20 examples; MAILBACKUP_SLOW=1: 2,000 (MAILBACKUP_SM_EXAMPLES to choose)."""
    examples = int(os.environ.get("MAILBACKUP_SM_EXAMPLES", "2000")) if SLOW else 20
    run_machine(dovecot_server, tmp_path_factory, examples=examples, steps=25 if SLOW else 15)


# -- histories worth keeping: found by the machine, or reported from the field --------------


@pytest.fixture
def machine(dovecot_server, tmp_path):
    ArchiveMachine.server, ArchiveMachine.directory = dovecot_server, tmp_path
    made = ArchiveMachine()
    yield made
    made.teardown()


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_a_recreated_folder_keeps_both_identical_copies(machine, fmt):
    """The field report: [A, A, B] backed up, the folder recreated; the second A was marked gone."""
    machine.start(fmt, [], [0, 0, 1])  # งานคดี holds [A, A, B]
    machine.backup()
    machine.recreate_folder("งานคดี")
    machine.backup()
    machine.archive_matches_model()
    machine.verify()


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_a_copy_never_backed_up_is_stored_after_the_folder_is_recreated(machine, fmt):
    """Found by the machine (shortest history): A backed up, a second A arrives, the folder is
    recreated; both new UIDs claimed the one old copy, so the second A was never stored at all."""
    machine.start(fmt, [], [1])
    machine.backup()
    machine.append_message("งานคดี", 1)
    machine.recreate_folder("งานคดี")
    machine.backup()
    machine.archive_matches_model()
    machine.verify()
