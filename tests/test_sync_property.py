"""Property tests of the sync planner and engine.

1. The pure planner (`sync.plan`): batches keep order and bounds; the UID
   diff finds exactly what is new and what is gone; `plan_start` skips only
   an unchanged folder; `plan_folder` fetches exactly what is not stored and
   marks gone exactly what the server lost; a listing that disagrees with
   EXAMINE is not trusted.
2. The engine against a real Dovecot, driven by hypothesis through random
   sequences of server changes (append, expunge, flag changes, the folder
   recreated with a new UIDVALIDITY) and interrupted runs: after a final
   run the archive holds everything the server held at any complete run
   (and possibly more, from interrupted ones), each message exactly once.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import sample_mail
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailbackup.archive import open_archive
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, FolderResult, FolderStatus, MessageMeta, SelectedFolder, ServerAddress
from mailbackup.state.db import FolderRecord
from mailbackup.sync import plan
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import BackupOptions, NoBackupProgress
from mailbackup.uids import SortedUids

NOW = datetime(2024, 1, 1, tzinfo=UTC)


@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=60),
       st.integers(min_value=1, max_value=10), st.integers(min_value=1, max_value=8000))
def test_batches_keep_order_and_bounds(sizes, max_count, max_bytes):
    metas = [MessageMeta(uid=i + 1, size=size, flags=(), internaldate=NOW) for i, size in enumerate(sizes)]
    batches = plan.batches(metas, max_count, max_bytes)
    assert [meta for batch in batches for meta in batch] == metas
    for batch in batches:
        assert batch and len(batch) <= max_count
        assert sum(meta.size for meta in batch) <= max_bytes or len(batch) == 1


@given(st.sets(st.integers(1, 200)), st.sets(st.integers(1, 200)), st.sets(st.integers(1, 200)))
def test_uid_diff(server, stored, gone_already):
    active = stored - gone_already
    diff = plan.diff_uids(SortedUids.of(server), SortedUids.of(stored), SortedUids.of(active))
    assert set(diff.new) == server - stored
    assert set(diff.gone) == active - server
    assert diff.new == sorted(diff.new)


def folder_record(uidvalidity: int | None, *, uidnext: int = 10, messages: int = 3,
                  modseq: int | None = None) -> FolderRecord:
    return FolderRecord(1, "INBOX", "/", "INBOX", uidvalidity, uidnext, modseq, messages, 0, 0, None, None)


def metas_for(uids: set[int]) -> list[MessageMeta]:
    return [MessageMeta(uid=uid, size=uid * 10, flags=(), internaldate=NOW) for uid in sorted(uids)]


@given(server=st.sets(st.integers(1, 120)), stored=st.sets(st.integers(1, 120)),
       gone_already=st.sets(st.integers(1, 120)), listed=st.booleans(), new_generation=st.booleans(),
       uidvalidity=st.sampled_from([None, 7]))
def test_plan_folder_fetches_the_new_marks_the_gone_and_keeps_the_rest(server, stored, gone_already, listed,
                                                                        new_generation, uidvalidity):
    """Whatever the server and the state hold: fetch exactly what is not stored
    (ascending), mark gone exactly the active ones the server lost, never both."""
    active = stored - gone_already
    selected = SelectedFolder("INBOX", 7, max(server, default=0) + 1, len(server), None)
    known = plan.trusted_listing(metas_for(server), selected) if listed else None
    facts = plan.FolderFacts(folder_record(uidvalidity), selected, SortedUids.of(stored), SortedUids.of(active),
                             new_generation, known, SortedUids() if listed else SortedUids.of(server))
    todo = plan.plan_folder(facts)
    assert todo.fetch == sorted(server - stored)
    assert set(todo.gone) == active - server and not set(todo.gone) & server
    assert list(todo.on_server) == sorted(server)
    assert all(uid in todo.on_server for uid in server) and 0 not in todo.on_server and 121 not in todo.on_server
    assert todo.sync_flags == (not new_generation and uidvalidity is not None)
    if listed:
        assert todo.known is not None and set(todo.known) == server
        assert all(todo.known[uid].size == uid * 10 for uid in todo.fetch)


@given(server=st.sets(st.integers(1, 120)), stored=st.sets(st.integers(1, 120)))
def test_a_contradictory_listing_marks_nothing_gone(server, stored):
    """Issue 13 defect 2: when the server's answers disagree with EXISTS, what they
    named is fetched but nothing stored is taken as gone (restore --skip-deleted)."""
    selected = SelectedFolder("INBOX", 7, max(server, default=0) + 1, len(server) + 1, None)
    facts = plan.FolderFacts(folder_record(7), selected, SortedUids.of(stored), SortedUids.of(stored), False, None,
                             SortedUids.of(server), consistent=False)
    todo = plan.plan_folder(facts)
    assert todo.gone == [] and todo.fetch == sorted(server - stored)


@given(server=st.sets(st.integers(1, 50), min_size=1), extra=st.integers(0, 3), hidden=st.integers(0, 3))
def test_a_listing_that_disagrees_with_examine_is_not_trusted(server, extra, hidden):
    """A server that hides or invents messages in its listing is asked with SEARCH."""
    selected = SelectedFolder("INBOX", 7, max(server) + 1, len(server) + extra, None)
    listing = metas_for(set(sorted(server)[hidden:]) | {max(server) + 5})  # one beyond UIDNEXT is ignored
    trusted = plan.trusted_listing(listing, selected)
    assert (trusted is not None) == (extra == 0 and hidden == 0)
    if trusted is not None:
        assert set(trusted) == server


@given(same=st.booleans(), failures=st.booleans(), stored_any=st.booleans(), refresh=st.booleans(),
       messages=st.integers(0, 20))
def test_plan_start_skips_only_an_unchanged_folder(same, failures, stored_any, refresh, messages):
    record = folder_record(7, uidnext=10, messages=messages)
    status = FolderStatus("INBOX", messages, 10 if same else 11, 7)
    start = plan.plan_start(record, status, has_failures=failures, stored_any=stored_any, refresh_flags=refresh,
                            new_slice=10)
    assert start.skip == (same and not failures and not refresh)
    assert start.list_with_examine == (not stored_any and messages <= 10)


# -- the engine, against Dovecot ------------------------------------------------------------

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 6)),
        st.tuples(st.just("expunge"), st.integers(0, 3)),
        st.tuples(st.just("flag"), st.integers(0, 5)),
        st.tuples(st.just("recreate"), st.just(0)),
        st.tuples(st.just("backup"), st.just(0)),
        st.tuples(st.just("interrupted"), st.integers(1, 2)),
    ),
    min_size=1, max_size=8,
)
serial = itertools.count()


class StopAfter(NoBackupProgress):
    """Progress that asks the engine to stop after N saved batches (Ctrl-C)."""

    def __init__(self, options: BackupOptions, batches: int) -> None:
        self.options, self.left = options, batches

    def folder_start(self, name: str, messages: int, size: int) -> None:
        pass

    def saved(self, messages: int, size: int) -> None:
        self.left -= 1
        if self.left <= 0:
            self.options.stop.set()

    def folder_done(self, result: FolderResult) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(operations=OPERATIONS, fmt=st.sampled_from(["maildir", "mbox"]))
# found by this test: a first run interrupted before it recorded UIDVALIDITY, then the folder recreated
@example(operations=[("append", 3), ("interrupted", 1), ("recreate", 0)], fmt="maildir")
def test_archive_ends_with_everything_the_server_ever_held(dovecot_server, imap_client_factory, tmp_path_factory,
                                                           operations, fmt):
    from conftest import new_user

    user = new_user(dovecot_server)
    client = imap_client_factory(user)
    dest = tmp_path_factory.mktemp("prop")
    folder = "งานคดี"
    client.create_folder(folder)
    ever_held: set[bytes] = set()  # anything the server held at some point
    held_at_full_runs: set[bytes] = set()  # what a complete run must have saved
    settings_ = ConnectionSettings(ServerAddress.parse(user.server_arg), cafile=str(user.cafile))

    def run(stop_after: int | None) -> None:
        options = BackupOptions(batch_messages=2, new_slice=3, retry_delay=0.01)
        progress = StopAfter(options, stop_after) if stop_after else None
        with open_archive(dest, user.name, format=fmt) as archive, \
                ImapSession(settings_, user.name, user.password) as session:
            BackupEngine(session, archive, options, progress).run()

    def on_server() -> list[bytes]:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        return [data[b"BODY[]"] for data in client.fetch(uids, ["BODY.PEEK[]"]).values()] if uids else []

    for name, amount in operations:
        if name == "append":
            for _ in range(amount):
                body = sample_mail.thai_letter(next(serial), sample_mail._DEFAULT_DATE)
                client.append(folder, body)
        elif name == "expunge":
            client.select_folder(folder)
            uids = client.search("ALL")[:amount]
            if uids:
                client.delete_messages(uids)
                client.expunge()
        elif name == "flag":
            client.select_folder(folder)
            uids = client.search("ALL")[amount:amount + 2]
            if uids:
                client.add_flags(uids, [b"\\Flagged"])
        elif name == "recreate":
            bodies = on_server()
            client.select_folder("INBOX")  # Dovecot drops a client whose selected folder is deleted
            client.delete_folder(folder)
            client.create_folder(folder)
            for body in bodies:
                client.append(folder, body)
        elif name == "backup":
            held_at_full_runs.update(on_server())
            run(None)
        else:
            run(amount)
        ever_held.update(on_server())

    run(None)

    with open_archive(dest, user.name, lock=False, create=False) as archive:
        record = archive.state.folder(folder)
        assert record is not None
        stored = [archive.store.read(record.local_path, m) for m in archive.state.messages(record.id)]
    held_at_full_runs.update(on_server())
    assert sorted(stored) == sorted(set(stored))  # each message exactly once
    assert held_at_full_runs <= set(stored) <= ever_held  # nothing lost, nothing invented
