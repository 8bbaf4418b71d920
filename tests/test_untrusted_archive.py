"""The archive is untrusted input (issue 14, items 1 and 2): an archive on a
share others can write to must not make `restore`, `export`, `verify` or
`backup --repair` read, upload or delete anything outside it.  Real Dovecot:
the archive is backed up from one user and restored into a second one."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import sample_mail
from helpers import backup, run_cli, server_contents

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode
from mailbackup.model import StoredMessage
from mailbackup.store.guarded import DamagedCopy, check_location, contained, open_regular
from mailbackup.store.maildir import info_suffix

SECRET = b"Subject: the officer's private file\r\n\r\nSECRET-OUTSIDE-THE-ARCHIVE\r\n"


def letters(count: int) -> list[sample_mail.SampleMessage]:
    when = sample_mail._DEFAULT_DATE
    return [sample_mail.SampleMessage(sample_mail.thai_letter(i, when), ("\\Seen",) if i % 2 else (), when)
            for i in range(count)]


def restore(source, target, dest: Path, *extra: str):
    return run_cli(["restore", source.name, "--dest", str(dest), "--to", target.name,
                    "--to-server", target.server_arg, "--to-cafile", str(target.cafile), *extra],
                   env={"MAILBACKUP_TARGET_PASSWORD": target.password})


def inbox_rows(dest: Path, account: str) -> tuple[Path, list[StoredMessage]]:
    """The INBOX's Maildir directory and its rows, in UID order."""
    with open_archive(dest, account, lock=False, create=False) as archive:
        folder = archive.state.folder("INBOX")
        assert folder is not None
        return archive.store.resolve(folder.local_path), sorted(archive.state.messages(folder.id),
                                                                key=lambda row: row.uid)


def set_location(dest: Path, account: str, uid: int, location: str) -> None:
    db = sqlite3.connect(account_dir(dest, account) / "state.sqlite3")
    with db:
        db.execute("UPDATE messages SET location = ? WHERE uid = ?", (location, uid))
    db.close()


def plant(path: Path) -> Path:
    """A file outside the archive, named so that the Maildir lookup of the
    edited location (name + ``:2,`` + flags) would find it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SECRET)
    return path


def tamper(dest: Path, account: str, outside: Path) -> dict[str, StoredMessage]:
    """Six messages: a symlink swapped in, three edited locations (relative,
    absolute, with separators), other bytes; the last one left intact."""
    inbox, rows = inbox_rows(dest, account)
    files = {row.uid: next((inbox / "cur").glob(f"{row.location}*")) for row in rows}
    link, relative, absolute, separators, swapped, intact = rows
    files[link.uid].unlink()
    files[link.uid].symlink_to(plant(outside / "linked.eml"))
    for row, location in ((relative, os.path.relpath(outside / "relative", inbox / "cur")),
                          (absolute, str(outside / "absolute")), (separators, "new/../../../x\\y")):
        plant(outside / f"{Path(location).name}{info_suffix(row.flags, ':')}")
        set_location(dest, account, row.uid, location)
    files[swapped.uid].write_bytes(SECRET)
    return {"link": link, "relative": relative, "absolute": absolute, "separators": separators,
            "swapped": swapped, "intact": intact}


def test_restore_uploads_only_copies_that_match_the_state(imap_user_factory, imap_client_factory,
                                                          dovecot_server, tmp_path):
    source, target = imap_user_factory(dovecot_server), imap_user_factory(dovecot_server)
    sample_mail.fill_mailbox(imap_client_factory(source), {"INBOX": letters(6)})
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    assert backup(source, dest).returncode == 0
    rows = tamper(dest, source.name, outside)

    done = restore(source, target, dest)

    assert done.returncode == ExitCode.WARNINGS, done.stderr
    on_target = [body for body, _, _ in server_contents(imap_client_factory(target), "INBOX").values()]
    assert len(on_target) == 1 and b"SECRET-OUTSIDE" not in on_target[0]
    assert "5 messages not restored" in done.stderr or "damaged archived copy" in done.stderr
    for name, row in rows.items():
        if name != "intact":
            assert f"UID {row.uid} " in done.stderr and "damaged archived copy, not uploaded" in done.stderr
    assert "symbolic link" in done.stderr and "not a plain file name" in done.stderr
    assert "SHA-256" in done.stderr
    # The check afterwards does not call the damaged copies restored.
    report = json.loads((account_dir(dest, source.name) / "reports" / "restore-verify.json").read_text("utf-8"))
    assert report["status"] == "incomplete" and report["totals"]["present"] == 1
    assert report["totals"]["missing"] == 5
    assert all(path.read_bytes() == SECRET for path in outside.iterdir())


def test_export_and_verify_do_not_follow_the_archive_out(imap_user_factory, imap_client_factory, dovecot_server,
                                                         tmp_path):
    source = imap_user_factory(dovecot_server)
    sample_mail.fill_mailbox(imap_client_factory(source), {"INBOX": letters(6)})
    dest, outside, out = tmp_path / "dest", tmp_path / "outside", tmp_path / "exported"
    assert backup(source, dest).returncode == 0
    rows = tamper(dest, source.name, outside)

    exported = run_cli(["export", source.name, "--dest", str(dest), "--mbox", str(out), "--exact"])
    verified = run_cli(["verify", source.name, "--offline", "--dest", str(dest)])

    assert exported.returncode != 0
    written = b"".join(path.read_bytes() for path in out.rglob("*") if path.is_file())
    assert b"SECRET-OUTSIDE" not in written and written.count(b"\nFrom ") + written.startswith(b"From ") == 1
    for name, row in rows.items():
        if name != "intact":
            assert f"UID {row.uid} (" in exported.stderr
    assert verified.returncode == ExitCode.CORRUPT, verified.stdout + verified.stderr
    report = json.loads((account_dir(dest, source.name) / "reports" / "verify.json").read_text("utf-8"))
    assert report["totals"]["ok"] == 1


def test_repair_touches_nothing_outside_the_archive(imap_user_factory, imap_client_factory, dovecot_server,
                                                    tmp_path):
    source = imap_user_factory(dovecot_server)
    client = imap_client_factory(source)
    sample_mail.fill_mailbox(client, {"INBOX": letters(6)})
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    assert backup(source, dest).returncode == 0
    rows = tamper(dest, source.name, outside)
    planted = sorted(outside.iterdir())

    repaired = backup(source, dest, "--repair")

    assert sorted(outside.iterdir()) == planted and all(path.read_bytes() == SECRET for path in planted)
    assert repaired.returncode == ExitCode.WARNINGS, repaired.stderr
    for name in ("link", "relative", "absolute", "separators"):
        assert f"UID {rows[name].uid} (" in repaired.stderr  # the bad rows are named
    # Every tampered copy was fetched again into the archive: a second repair has nothing to do.
    again = backup(source, dest, "--repair")
    assert again.returncode == 0, again.stderr
    inbox, stored = inbox_rows(dest, source.name)
    server = server_contents(client, "INBOX")
    assert sorted(row.uid for row in stored) == sorted(server)
    for row in stored:
        assert check_location(row.location) and not any(path.is_symlink() for path in (inbox / "cur").iterdir())
    assert all(path.read_bytes() == SECRET for path in planted)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_a_repair_never_follows_a_linked_folder_file_out(imap_user_factory, imap_client_factory, dovecot_server,
                                                         tmp_path, fmt):
    """An mbox file swapped for a link to a file elsewhere (or a Maildir cur/
    swapped for a link to a directory elsewhere): repair neither cuts,
    rewrites nor deletes what the link points to."""
    source = imap_user_factory(dovecot_server)
    sample_mail.fill_mailbox(imap_client_factory(source), {"INBOX": letters(3)})
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    assert backup(source, dest, "--format", fmt).returncode == 0
    inbox, _rows = inbox_rows(dest, source.name)
    real = inbox.with_name("INBOX.mbox") if fmt == "mbox" else inbox / "cur"
    moved = outside / real.name
    outside.mkdir()
    real.rename(moved)
    real.symlink_to(moved)
    with open(moved if fmt == "mbox" else next(moved.iterdir()), "ab") as handle:
        handle.write(b"X")  # now the copies hash wrong: repair wants to remove or rewrite them
    before = {path: path.read_bytes() for path in [moved, *moved.glob("*")] if path.is_file()}

    repaired = backup(source, dest, "--repair")

    assert repaired.returncode != 0
    assert {path: path.read_bytes() for path in [moved, *moved.glob("*")] if path.is_file()} == before


def test_the_guards_themselves(tmp_path):
    for bad in ("", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b", "C:x", "a\0b", None):
        with pytest.raises(DamagedCopy):
            check_location(bad)
    assert check_location("1733300000.M1P2Q3.host,S=10") == "1733300000.M1P2Q3.host,S=10"
    root = tmp_path / "root"
    (root / "inside").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "escape").symlink_to(tmp_path / "elsewhere")
    assert contained(root / "inside" / "x", root) == root / "inside" / "x"
    from mailbackup.errors import StorageError
    for bad_path in (root / "escape" / "x", root / ".." / "x", tmp_path / "x"):
        with pytest.raises(StorageError):
            contained(bad_path, root)
    os.mkfifo(tmp_path / "fifo")  # would block a plain open() for ever
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for not_regular in ("fifo", "link", "elsewhere"):
        with pytest.raises(DamagedCopy):
            open_regular(tmp_path / not_regular)
