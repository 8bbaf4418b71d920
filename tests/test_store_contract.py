"""The store contract (store/base.py), run against every store: what is
written reads back byte for byte; `inventory()` says what is stored where,
finds what went missing, damaged or stray; recovery keeps whole writes;
flag changes and discards keep the rest readable.  Real files in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailbackup.model import StoredMessage
from mailbackup.store.base import Absent, MailStore
from mailbackup.store.body import MessageBody
from mailbackup.store.maildir import MaildirStore, base_name
from mailbackup.store.mbox import MboxStore

STORES: dict[str, Callable[[Path], MailStore]] = {"maildir": MaildirStore, "mbox": MboxStore}
FOLDER = "งานคดี/2567"
BODIES = [b"Subject: one\r\n\r\nFrom the court\r\n", b"Subject: two\r\n\r\n>From quoted\r\nno final newline",
          b"Subject: three\r\n\r\n" + bytes(range(256))]


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MailStore:
    made = STORES[request.param](tmp_path / "mail")
    made.prepare(FOLDER)
    return made


def described(uid: int, body: bytes) -> StoredMessage:
    digest = MessageBody.from_bytes(body).sha256
    return StoredMessage(folder_id=1, uidvalidity=7, uid=uid, size=len(body), sha256=digest,
                         internaldate=datetime(2024, 1, 5, 2, 30, tzinfo=UTC), flags=("\\Seen",),
                         message_id=None, subject=None, sender=None, location=None)


def written(store: MailStore, bodies: list[bytes] = BODIES, committed: int = 0,
            first_uid: int = 1) -> list[StoredMessage]:
    planned = store.plan(FOLDER, [described(uid, body) for uid, body in enumerate(bodies, start=first_uid)])
    return store.write(FOLDER, [(message, MessageBody.from_bytes(body))
                                for message, body in zip(planned, bodies, strict=True)], committed)


def committed_length(messages: list[StoredMessage]) -> int:
    return max(((m.mbox_offset or 0) + (m.mbox_length or 0) for m in messages), default=0)


def test_what_is_written_reads_back_byte_for_byte(store):
    stored = written(store)
    assert [store.read(FOLDER, message) for message in stored] == BODIES
    assert not any(store.is_damaged(FOLDER, message) for message in stored)


def test_the_inventory_of_a_whole_folder_is_clean(store):
    stored = written(store)
    found = store.inventory(FOLDER, stored, committed=committed_length(stored), deep=True)
    assert (found.absent, found.stray, found.problems, found.warnings) == ({}, [], [], [])


def test_the_inventory_names_a_message_whose_copy_is_gone(store):
    stored = written(store)
    lost = stored[2]
    if isinstance(store, MaildirStore):
        path = store.find(FOLDER, lost)
        assert path is not None
        path.unlink()
    else:  # the file cut inside the last entry
        with open(store.mbox_path(FOLDER), "r+b") as handle:
            handle.truncate((lost.mbox_offset or 0) + 5)
    found = store.inventory(FOLDER, stored, committed=committed_length(stored))
    assert set(found.absent) == {(7, 3)}
    assert found.absent[(7, 3)].kind in ("missing", "corrupt")


def test_the_inventory_of_records_without_files_says_so(store):
    never = described(9, b"x")
    found = store.inventory(FOLDER, [never], committed=0)
    assert found.absent[(7, 9)] == Absent("corrupt", found.absent[(7, 9)].reason)


def test_flags_change_and_discard_keep_the_rest_readable(store):
    stored = written(store)
    flagged = store.set_flags(FOLDER, stored[0], ("\\Flagged", "\\Seen"))
    assert store.read(FOLDER, flagged) == BODIES[0]
    rewritten = store.discard(FOLDER, [stored[1]], [flagged, stored[2]])
    kept = rewritten if rewritten is not None else [flagged, stored[2]]
    store.settle_rewrite(FOLDER, committed=True)
    assert [store.read(FOLDER, message) for message in kept] == [BODIES[0], BODIES[2]]
    found = store.inventory(FOLDER, kept, committed=committed_length(kept), deep=True)
    assert (found.absent, found.stray, found.problems) == ({}, [], [])


def test_recovery_keeps_whole_pending_writes(store):
    first = written(store, BODIES[:1])
    committed = committed_length(first)
    pending = written(store, BODIES[1:], committed, first_uid=2)  # written, then "killed" before the state commit
    recovery = store.recover(FOLDER, pending, committed)
    assert [message.uid for message in recovery.completed] == [2, 3]
    assert [store.read(FOLDER, message) for message in recovery.completed] == BODIES[1:]


def test_maildir_base_names_drop_any_info_separator():
    assert base_name("1704.M1P2Q3.host,S=10:2,S") == "1704.M1P2Q3.host,S=10"
    assert base_name("1704.M1P2Q3.host,S=10;2,") == "1704.M1P2Q3.host,S=10"
    assert base_name("1704.M1P2Q3.host,S=10!2,FS") == "1704.M1P2Q3.host,S=10"
    assert base_name("1704.M1P2Q3.host,S=10") == "1704.M1P2Q3.host,S=10"


def test_maildir_inventory_reports_stray_and_leftover_files(tmp_path):
    store = MaildirStore(tmp_path / "mail")
    store.prepare(FOLDER)
    stored = written(store)
    folder = store.resolve(FOLDER)
    (folder / "new" / "1704067200.stray.host").write_bytes(b"Subject: not ours\r\n\r\n")
    (folder / "tmp" / "half").write_bytes(b"torn")
    found = store.inventory(FOLDER, stored, committed=0)
    assert found.stray == ["new/1704067200.stray.host"]
    assert any("tmp/" in warning for warning in found.warnings)


def spooled(directory: Path, body: bytes, name: str) -> MessageBody:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_bytes(body)
    return MessageBody(size=len(body), sha256=MessageBody.from_bytes(body).sha256, path=path)


def test_a_spooled_body_is_stored_without_a_copy_and_a_planted_link_is_not_taken_for_it(store, tmp_path):
    """Issue 18: a body spooled to a file becomes the Maildir file by a hard
    link (one inode, no copy); a symbolic link planted at a spool name is not
    linked into the mail (its target is copied as the body would be, and the
    stored copy is a plain file)."""
    spool = tmp_path / "spool"
    bodies = [b"Subject: big\r\n\r\n" + b"x" * 5000, b"Subject: planted\r\n\r\n" + b"y" * 5000]
    first = spooled(spool, bodies[0], "fetch-1.part")
    target = spooled(tmp_path, bodies[1], "elsewhere")
    assert target.path is not None
    (spool / "fetch-2.part").symlink_to(target.path)
    second = MessageBody(size=target.size, sha256=target.sha256, path=spool / "fetch-2.part")
    planned = store.plan(FOLDER, [described(uid, body) for uid, body in enumerate(bodies, start=1)])
    stored = store.write(FOLDER, list(zip(planned, [first, second], strict=True)), 0)

    assert [store.read(FOLDER, message) for message in stored] == bodies
    if isinstance(store, MaildirStore):
        files = [store.find(FOLDER, message) for message in stored]
        assert all(path is not None and not path.is_symlink() for path in files)
        assert files[0] is not None and files[0].stat().st_ino == (spool / "fetch-1.part").stat().st_ino
        assert files[1] is not None and files[1].stat().st_ino != target.path.stat().st_ino
