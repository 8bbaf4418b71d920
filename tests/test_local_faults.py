"""Local faults: a full disk, a read-only destination, permission denied, an
archive on a path with Thai characters and spaces, a damaged state file or
one from a newer mailbackup.

Each ends with one line naming the problem and exit code 7 (local storage),
never a traceback; no message is counted as saved unless it is whole on
disk; and once the fault is fixed, the same command completes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakeserver import Certs, Conn, FakeImapServer, Folder, Run, Script, letter, make_certs, quote, run_mailbackup
from helpers import run_cli_in_process, state_rows
from imapclient import imap_utf7

from mailbackup import archive as archive_module
from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode
from mailbackup.state.db import StateDB
from mailbackup.store.body import SpoolFile
from mailbackup.store.maildir import MaildirStore

ACCOUNT = "clerk@coj.go.th"
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


def big_letter(number: int, lines: int = 3000) -> bytes:
    return letter(number) + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * lines


@pytest.fixture
def server(certs: Certs) -> Iterator[FakeImapServer]:
    folders = [Folder.named("INBOX", [letter(n) for n in range(1, 31)]),
               Folder.named("งานคดี", [letter(n) for n in range(40, 70)])]
    with FakeImapServer(folders, certs=certs) as started:
        yield started


def backup(server: FakeImapServer, certs: Certs, dest: Path, *extra: str) -> Run:
    return run_mailbackup(server, certs.ca, dest, *extra)


def assert_whole(dest: Path, server: FakeImapServer) -> int:
    """Every message the state counts as saved (finished folder or not) reads
    back whole, as the server has it; a half-delivered file only ever goes
    with a pending batch.  Returns how many messages are saved."""
    by_wire = {folder.wire: {m.uid: m.body for m in folder.messages} for folder in server.folders}
    count = 0
    with open_archive(dest, ACCOUNT, lock=False, create=False) as archive:
        for folder in archive.state.folders():
            for message in archive.state.messages(folder.id):
                body = archive.store.read(folder.local_path, message)
                assert body == by_wire[imap_utf7.encode(folder.name)][message.uid], (folder.name, message.uid)
                count += 1
    pending = state_rows(dest, ACCOUNT, "SELECT count(*) FROM pending")[0][0]
    leftovers = [path for path in account_dir(dest, ACCOUNT).rglob("*") if path.is_file() and path.parent.name == "tmp"]
    assert not leftovers or pending, leftovers
    return count


def total(server: FakeImapServer) -> int:
    return sum(len(folder.messages) for folder in server.folders)


# -- a full disk ----------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """A 2 MB tmpfs at tmp_path/disk (root only); call it with a new size to grow it."""
    if not IS_ROOT or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (the in-process ENOSPC test covers the rest)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
@pytest.mark.parametrize("what_fills", ["mail", "state", "new state"])
def test_a_full_disk_ends_with_exit_7_and_the_rerun_completes(certs, tmp_path, small_disk, fmt, what_fills):
    dest = tmp_path / "disk" / "dest"
    room = {"mail": None, "state": 300_000, "new state": 4096}[what_fills]
    if what_fills == "mail":  # 4 MB of mail for a 2 MB disk: a message write fails
        folders = [Folder.named("INBOX", [big_letter(n) for n in range(20)])]
    else:  # small messages on a nearly full disk: the state's commit fails first, or its creation
        folders = [Folder.named(name, [letter(n) for n in range(60)]) for name in ("INBOX", "B")]
    if room is not None:
        (tmp_path / "disk" / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - room))
    with FakeImapServer(folders, certs=certs) as server:
        run = backup(server, certs, dest, "--format", fmt, "--batch-size", "20")

        assert run.code == ExitCode.STORAGE, run.stderr
        line = run.error_line()
        assert "No space left on device" in line or "database or disk is full" in line, line
        assert "damaged" not in line  # a full disk is not a damaged state file: nothing to move aside
        if what_fills != "new state":  # (a state that could not be created cannot be read either)
            assert assert_whole(dest, server) < total(server)

        if room is not None:
            (tmp_path / "disk" / "filler").unlink()
        small_disk("20m")
        again = backup(server, certs, dest)
        assert again.code == 0, again.stderr
        assert assert_whole(dest, server) == total(server)


class FullDiskMaildir(MaildirStore):
    """The second write finds the disk full, as a raw OSError from deep inside (no StorageError)."""

    writes = 0

    def write_many(self, writes):  # type: ignore[no-untyped-def]
        FullDiskMaildir.writes += 1
        if FullDiskMaildir.writes == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.resolve(writes[0].local_path) / "cur"))
        return super().write_many(writes)


def cli_backup(server: FakeImapServer, certs: Certs, dest: Path, *extra: str) -> tuple[int, str]:
    """The backup command in this process (so a store can be swapped): exit code and output."""
    return run_cli_in_process(["backup", server.user, "--server", server.address, "--cafile", str(certs.ca),
                               "--dest", str(dest), "--retry-delay", "0.01", *extra], server.password)


def test_an_enospc_from_the_store_is_exit_7_without_root(server, certs, tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    monkeypatch.setattr(archive_module, "MaildirStore", FullDiskMaildir)
    FullDiskMaildir.writes = 0

    # One connection: "the second write" is then the second batch (with several, the other
    # connections finish the folders in hand, each batch whole or not at all).
    code, output = cli_backup(server, certs, dest, "--batch-size", "10", "--connections", "1")

    assert code == ExitCode.STORAGE, output
    assert "mailbackup: error: cannot write" in output and "No space left on device" in output
    assert assert_whole(dest, server) == 10  # the first batch, and nothing of the second
    monkeypatch.undo()
    code, output = cli_backup(server, certs, dest)
    assert code == 0, output
    assert assert_whole(dest, server) == total(server)


class GoneAtTheFourthFolder(Script):
    """Tells folder sizes (STATUS=SIZE), so small folders come whole and are held
    (sync/commit.py); the connection ends at the fourth folder's EXAMINE."""

    capabilities = b"IMAP4rev1 AUTH=PLAIN STATUS=SIZE"

    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        conn.send(b"* STATUS " + quote(folder.wire) + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d SIZE %d)\r\n"
                  % (len(folder.messages), folder.uidnext, folder.uidvalidity,
                     sum(len(message.body) for message in folder.messages)))
        conn.send(tag + b" OK Status completed.\r\n")

    def examine(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        if folder.wire == b"F4":
            # Not at once: the client sends the next folders' openings before it reads this
            # one's answers, and a link gone while it still sends them (a loaded machine) ends
            # the run before F1-F3 are read and held.
            time.sleep(0.5)
            conn.close()
            return
        super().examine(conn, tag, folder)


class NoSpaceAtAll(MaildirStore):
    def write_many(self, writes):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.mail_root))


def test_small_folders_that_cannot_be_saved_after_a_lost_connection_do_not_hide_it(certs, tmp_path, monkeypatch):
    """The run ends because the connection is lost for good (--retries 0) while three small
    folders are held; storing them then finds the disk full.  The run's error stays the
    connection's (exit 4), the one line about the folders says why they are not saved,
    and the next run saves everything."""
    dest = tmp_path / "dest"
    folders = [Folder.named(f"F{number}", [letter(10 * number + i) for i in range(3)]) for number in range(1, 7)]
    monkeypatch.setattr(archive_module, "MaildirStore", NoSpaceAtAll)
    with FakeImapServer(folders, certs=certs, script=GoneAtTheFourthFolder()) as server:
        code, output = cli_backup(server, certs, dest, "--connections", "1", "--retries", "0")

        assert code == ExitCode.CONNECTION, output
        assert "could not be saved" in output and "No space left on device" in output, output
        assert assert_whole(dest, server) == 0
        monkeypatch.undo()
        server.script = Script()
        code, output = cli_backup(server, certs, dest)

        assert code == 0, output
        assert assert_whole(dest, server) == total(server) == 18


class StatusSaysSmall(GoneAtTheFourthFolder):
    """STATUS says INBOX holds 3 small messages; it holds 120 of 300 KB (a liar's STATUS).
    No connection ends here."""

    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        conn.send(b"* STATUS " + quote(folder.wire) + b" (MESSAGES 3 UIDNEXT %d UIDVALIDITY %d SIZE 3000)\r\n"
                  % (folder.uidnext, folder.uidvalidity))
        conn.send(tag + b" OK Status completed.\r\n")

    def examine(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        Script.examine(self, conn, tag, folder)


class CountingMaildir(MaildirStore):
    stored: list[int] = []  # the bytes of each write_many: what was held before it

    def write_many(self, writes):  # type: ignore[no-untyped-def]
        CountingMaildir.stored.append(sum(body.size for part in writes for _message, body in part.items))
        return super().write_many(writes)


def test_a_folder_held_as_small_that_is_not_is_stored_as_it_comes(certs, tmp_path, monkeypatch):
    """A new folder is held with others only when its status says it is small; a server
    that said so wrongly does not make the run hold the whole folder (36 MB) in memory:
    what is held is stored once it passes a batch's bytes, so at most one batch of a new
    folder (16 MB) is held, as without holding."""
    dest = tmp_path / "dest"
    bodies = [letter(n) + b"x" * 300_000 + b"\r\n" for n in range(120)]
    monkeypatch.setattr(archive_module, "MaildirStore", CountingMaildir)
    CountingMaildir.stored = []
    with FakeImapServer([Folder.named("INBOX", bodies)], certs=certs, script=StatusSaysSmall()) as server:
        code, output = cli_backup(server, certs, dest, "--connections", "1")

        assert code == 0, output
        assert assert_whole(dest, server) == 120
    assert sum(CountingMaildir.stored) == sum(len(body) for body in bodies)
    assert len(CountingMaildir.stored) >= 3, CountingMaildir.stored
    assert max(CountingMaildir.stored) <= 16 << 20, CountingMaildir.stored


def test_a_full_disk_while_spooling_a_large_message_is_not_a_connection_problem(certs, tmp_path, monkeypatch):
    """A message above 1 MB is spooled to a file on its way in; a full disk there is exit 7,
    not "connection failed" followed by the message recorded as one the server fails on."""
    dest = tmp_path / "dest"
    large = letter(1) + b"z" * (9 << 20)

    def no_space(self: SpoolFile, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(SpoolFile, "write", no_space)
    with FakeImapServer([Folder.named("INBOX", [letter(0), large])], certs=certs) as server:
        code, output = cli_backup(server, certs, dest)

        assert code == ExitCode.STORAGE, output
        assert "No space left on device" in output and "connection" not in output
        assert state_rows(dest, ACCOUNT, "SELECT count(*) FROM failures") == [(0,)]
        assert not list((account_dir(dest, ACCOUNT) / "tmp").glob("*.part"))
        monkeypatch.undo()
        code, output = cli_backup(server, certs, dest)
        assert code == 0, output
        assert assert_whole(dest, server) == 2


# -- read-only and permission denied --------------------------------------------
@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only: a read-only bind mount as root (root ignores
    permissions), chmod otherwise.  Undone after the test, or by calling `writable`."""
    undo: list[Callable[[], None]] = []

    def make(path: Path) -> None:
        if IS_ROOT:
            subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
            subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
            undo.append(lambda: subprocess.run(["umount", str(path)], check=True))
        else:
            mode = path.stat().st_mode
            path.chmod(0o500)
            undo.append(lambda: path.chmod(mode))

    yield make
    while undo:
        undo.pop()()


def test_a_read_only_destination(server, certs, tmp_path, read_only):
    dest = tmp_path / "dest"
    assert backup(server, certs, dest, "--include", "INBOX").code == 0
    before = {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()}
    read_only(dest)

    run = backup(server, certs, dest)

    assert run.code == ExitCode.STORAGE, run.stderr
    line = run.error_line()
    assert "Read-only file system" in line or "Permission denied" in line, line
    assert {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()} == before


def test_permission_denied_in_a_folder(server, certs, tmp_path):
    dest = tmp_path / "dest"
    assert backup(server, certs, dest, "--include", "INBOX").code == 0
    locked = account_dir(dest, ACCOUNT) / "mail" / "งานคดี" / "tmp"
    locked.mkdir(parents=True)
    # root ignores permissions: an immutable directory refuses even root (EPERM)
    lock, unlock = (["chattr", "+i", str(locked)], ["chattr", "-i", str(locked)]) if IS_ROOT else (None, None)
    if lock is not None:
        if shutil.which("chattr") is None or subprocess.run(lock, capture_output=True).returncode != 0:
            pytest.skip("no chattr +i on this file system")
    else:
        locked.chmod(0o500)
    try:
        run = backup(server, certs, dest)
        assert run.code == ExitCode.STORAGE, run.stderr
        line = run.error_line()
        assert "Operation not permitted" in line or "Permission denied" in line, line
        assert str(locked) in line
        assert assert_whole(dest, server) == 30
    finally:
        if unlock is not None:
            subprocess.run(unlock, check=True)
        else:
            locked.chmod(0o700)
    again = backup(server, certs, dest)
    assert again.code == 0, again.stderr
    assert assert_whole(dest, server) == total(server)


def test_an_archive_on_a_path_with_thai_characters_and_spaces(server, certs, tmp_path):
    dest = tmp_path / "ที่เก็บ เมล์ ศาล" / "สำเนา ชุด 1"
    for fmt_dest, fmt in ((dest / "maildir", "maildir"), (dest / "mbox", "mbox")):
        run = backup(server, certs, fmt_dest, "--format", fmt)
        assert run.code == 0, run.stderr
        assert assert_whole(fmt_dest, server) == total(server)
        verified = run_mailbackup(server, certs.ca, fmt_dest, "--offline", command="verify")
        assert verified.code == 0, verified.stdout + verified.stderr


# -- the state file ---------------------------------------------------------------
def damage(state: Path, how: str) -> None:
    data = state.read_bytes()
    if how == "garbage":
        state.write_bytes(b"this is not a database, it was overwritten by a copy tool\n" * 100)
    elif how == "header":
        state.write_bytes(b"\0" * 100 + data[100:])
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["garbage", "header"])
def test_a_damaged_state_file_is_refused_with_the_way_out(server, certs, tmp_path, how):
    dest = tmp_path / "dest"
    assert backup(server, certs, dest).code == 0
    root = account_dir(dest, ACCOUNT)
    for leftover in root.glob("state.sqlite3-*"):  # the WAL would mend what we break
        leftover.unlink()
    damage(root / "state.sqlite3", how)
    mail_before = {path: path.read_bytes() for path in (root / "mail").rglob("*") if path.is_file()}

    run = backup(server, certs, dest)

    assert run.code == ExitCode.STORAGE, run.stderr
    line = run.error_line()
    assert "is damaged" in line and f"rename the directory {root}" in line, line
    assert {path: path.read_bytes() for path in (root / "mail").rglob("*") if path.is_file()} == mail_before
    # the way out, as the message says: keep the old directory, back up again
    root.rename(root.with_name(root.name + ".damaged"))
    again = backup(server, certs, dest)
    assert again.code == 0, again.stderr
    assert assert_whole(dest, server) == total(server)


def test_a_state_file_from_a_newer_mailbackup_is_refused(server, certs, tmp_path):
    dest = tmp_path / "dest"
    assert backup(server, certs, dest).code == 0
    state = account_dir(dest, ACCOUNT) / "state.sqlite3"
    with sqlite3.connect(state) as db:
        db.execute("PRAGMA user_version=99")
    db.close()
    before = state.read_bytes()

    run = backup(server, certs, dest)

    assert run.code == ExitCode.STORAGE, run.stderr
    line = run.error_line()
    assert "written by a newer mailbackup (schema 99" in line and "upgrade mailbackup" in line, line
    assert state.read_bytes() == before


def test_an_mbox_is_never_cut_under_a_state_file_that_does_not_know_it(server, certs, tmp_path):
    """The state moved aside (or replaced by an older copy): the mbox holds mail
    the new state does not know of, some of it gone from the server.  Cutting
    the file back to the state's length would destroy that mail."""
    dest = tmp_path / "dest"
    assert backup(server, certs, dest, "--format", "mbox").code == 0
    inbox = next(folder for folder in server.folders if folder.wire == b"INBOX")
    del inbox.messages[:5]  # deleted on the server: the archive is now their only copy
    assert backup(server, certs, dest).code == 0
    root = account_dir(dest, ACCOUNT)
    mbox = root / "mail" / "INBOX.mbox"
    before = mbox.read_bytes()
    (root / "state.sqlite3").rename(root / "state.sqlite3.old")
    for leftover in root.glob("state.sqlite3-*"):
        leftover.unlink()

    run = backup(server, certs, dest, "--format", "mbox")

    assert run.code == ExitCode.STORAGE, run.stderr
    assert "bytes of mail its state file does not know of" in run.error_line()
    assert mbox.read_bytes() == before


def test_a_failed_commit_leaves_no_transaction_open_and_hides_no_error(tmp_path):
    """A COMMIT that fails (a full disk; here a deferred constraint) must not leave the
    transaction open for the next BEGIN to trip on, and a ROLLBACK that fails must
    not replace the error that caused it."""
    state = StateDB(tmp_path / "state.sqlite3")
    state.db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    state.db.execute("CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError), state.transaction():
        state.db.execute("INSERT INTO child VALUES (5)")  # only COMMIT finds the missing parent
    with state.transaction():  # "cannot start a transaction within a transaction" before the fix
        state.db.execute("INSERT INTO parent VALUES (5)")
    with pytest.raises(ValueError, match="the error that matters"), state.transaction():
        state.db.execute("ROLLBACK")  # as SQLite does by itself after some errors
        raise ValueError("the error that matters")
    state.close()


def test_a_sweep_names_a_full_disk_as_the_backup_command_does(server, certs, tmp_path, monkeypatch):
    """A raw ENOSPC from deep inside one account of a sweep: its row in the
    sweep's report names the path and the error, as `backup` does, with exit 7."""
    dest = tmp_path / "dest"
    config, password = tmp_path / "sweep.yaml", tmp_path / "password"
    password.write_text(server.password, encoding="utf-8")
    password.chmod(0o600)
    config.write_text(f"defaults:\n  server: {server.address}\n  cafile: {certs.ca}\n  dest: {dest}\n"
                      f"  connections: 1\n  password_file: {password}\naccounts:\n  - account: {server.user}\n",
                      encoding="utf-8")
    monkeypatch.setattr(archive_module, "MaildirStore", FullDiskMaildir)
    FullDiskMaildir.writes = 0

    code, output = run_cli_in_process(["sweep", str(config), "--quiet", "--no-verify"], server.password)

    assert code == ExitCode.STORAGE, output
    rows = json.loads((dest / "reports" / "sweep.json").read_text(encoding="utf-8"))["accounts"]
    error = rows[0]["error"]
    assert error.startswith("cannot write ") and "No space left on device" in error and "cur" in error, error
    assert "Errno" not in error, error
