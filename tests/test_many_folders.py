"""A server with many folders (issue 18 target 2): the cost per folder stays
constant, counted in operations, never timed.

Scripted (tests/fakeserver.py): the hostile server of the issue lists
100,000 folders and offers no LIST-STATUS, so every folder needs a STATUS of
its own; Dovecot here always offers LIST-STATUS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeserver import Certs, Conn, FakeImapServer, Folder, Script, letter, make_certs, run_mailbackup

from mailbackup.archive import open_archive
from mailbackup.imap.listlines import common_entries
from mailbackup.imap.session import ImapSession
from mailbackup.model import ConnectionSettings, ServerAddress
from mailbackup.store import naming
from mailbackup.sync.engine import BackupEngine
from mailbackup.sync.folder import BackupOptions


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"), kinds=("good",))["good"]


def nested(count: int) -> list[Folder]:
    """INBOX and `count` empty folders four deep, half with Thai names (scenario 9's shape)."""
    names = [f"{'คดี' if n % 2 else 'cases'}{n % 3}/y{n % 5}/m{n % 7}/f{n:05d}" for n in range(count)]
    return [Folder.named("INBOX", [letter(1)])] + [Folder.named(name) for name in names]


class WatchesStatus(Script):
    """Notes, for each STATUS, whether the client had sent its next command before this one was answered."""

    watch_pipelining = True

    def __init__(self) -> None:
        self.asked: list[bytes] = []
        self.next_already_sent = 0

    def status(self, conn: Conn, tag: bytes, folder: Folder) -> None:
        self.asked.append(folder.wire)
        if conn.pending_input(wait=0.2):
            self.next_already_sent += 1
        super().status(conn, tag, folder)


@pytest.fixture
def served(certs: Certs) -> Iterator[list[FakeImapServer]]:
    started: list[FakeImapServer] = []
    yield started
    for server in started:
        server.stop()
        assert not server.errors, server.errors


def test_folders_asks_each_status_once_with_several_in_flight(certs, served, tmp_path):
    script = WatchesStatus()
    server = FakeImapServer(nested(300), certs=certs, script=script).start()
    served.append(server)

    run = run_mailbackup(server, certs.ca, tmp_path, command="folders")

    assert run.code == 0, run.stderr
    assert len(run.stdout.splitlines()) == 301 + 2  # header, 301 folders, total
    assert "คดี1/y1/m1/f00001" in run.stdout
    assert sorted(script.asked) == sorted(folder.wire for folder in server.folders)  # each once
    # Pipelined: nearly every STATUS arrived with the next one already sent (a window refills at half).
    assert script.next_already_sent >= 0.9 * len(script.asked), script.next_already_sent


def run_counted(server: FakeImapServer, certs: Certs, dest: Path, counts: dict[str, int]) -> None:
    """An in-process backup, its SQL statements counted into `counts`."""
    settings = ConnectionSettings(ServerAddress.parse(server.address), cafile=str(certs.ca))
    with open_archive(dest, server.user) as archive, ImapSession(settings, server.user, server.password) as session:
        archive.state.db.set_trace_callback(lambda _statement: counts.__setitem__("sql", counts["sql"] + 1))
        stats = BackupEngine(session, archive, BackupOptions()).run()
    assert stats.messages == 1 and not stats.has_warnings


def test_each_more_folder_costs_the_same_statements_and_checks(certs, served, tmp_path, monkeypatch):
    """Counting, not timing: 100 and 300 empty folders, each folder costs the
    same number of SQL statements and name checks (a lookup over all folders per
    folder would make the second run's share per folder grow)."""
    counted: dict[int, dict[str, int]] = {}
    counts = {"sql": 0, "path checks": 0}
    checked = naming.is_safe_component

    def counting_check(local: str) -> bool:
        counts["path checks"] += 1
        return checked(local)

    monkeypatch.setattr(naming, "is_safe_component", counting_check)
    for count in (100, 300):
        server = FakeImapServer(nested(count), certs=certs).start()
        served.append(server)
        counts.update({"sql": 0, "path checks": 0})
        run_counted(server, certs, tmp_path / str(count), counts)
        counted[count] = dict(counts)

    for what, limit in (("sql", 17), ("path checks", 8)):  # 22 and 12 before the counts were cut
        per_folder = (counted[300][what] - counted[100][what]) / 200
        assert per_folder <= limit, (what, counted)
        assert counted[100][what] >= 100 * per_folder * 0.9, (what, counted)  # the same share at 100 folders


LIST_LINES = [b'(\\HasNoChildren) "/" "INBOX"', b'(\\Noselect \\HasChildren) "/" "&DgQOFA41-"',
              b'() "\\\\" "back"', b'(\\HasNoChildren) NIL "flat"', b'() "." "2567"', b'(\\Marked) "/" ""']


def test_usual_list_lines_read_as_imapclient_reads_them():
    from imapclient.response_parser import parse_response

    expected = [tuple(parse_response([line])) for line in LIST_LINES]
    got = common_entries(LIST_LINES)
    assert got is not None
    for (flags, delimiter, name), (want_flags, want_delimiter, want_name) in zip(got, expected, strict=True):
        assert (flags, delimiter) == (want_flags, want_delimiter)
        assert name == (want_name if isinstance(want_name, bytes) else str(want_name).encode())  # "2567" → int


@pytest.mark.parametrize("odd", [(b'() "/" {5}', "fünf".encode()), b'() "/" "esc\\"aped"', b'() "/" atom',
                                 b'(\\HasNoChildren "x") "/" "a"'])
def test_any_unusual_list_line_leaves_the_whole_list_to_imapclient(odd):
    assert common_entries([*LIST_LINES, odd]) is None
