"""Verification: is every message of an account safely in its archive?

Public API:

* `verify_online(session, archive, options, progress)`: the server's folders,
  UIDs and sizes against the archive, and every archived file against the
  SHA-256 recorded when it was saved;
* `verify_offline(archive, options, progress)`: the archive against its own
  state only (files present, hashes, mbox entries where the state says,
  Maildir names well formed, no stray files);
* `VerifyProgress`, the callbacks of a caller that shows progress.

The results are the dataclasses of results.py.

Each message ends in one class: ok, missing (not in the archive, or its file
is gone), size mismatch (server and archive disagree), corrupt (the file does
not hash to what was recorded, or cannot be read) or only local (gone from
the server: fine, listed).  Files are hashed in streams, least recently
verified first, and `messages.verified_at` is set after each good check so
`max_age` can skip recent ones.  Nothing here prints: progress goes through
`VerifyProgress`, results come back as dataclasses (report.py writes them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar

from mailbackup.archive import Archive
from mailbackup.errors import ConnectionLost, FolderError, ServerError
from mailbackup.headers import HeaderSummary, summarize
from mailbackup.i18n import _
from mailbackup.imap.listing import list_folder
from mailbackup.imap.pushback import WaitBudget
from mailbackup.imap.retry import Retrying, RetryPolicy
from mailbackup.imap.session import ImapSession
from mailbackup.model import FolderInfo, MessageMeta, StoredMessage
from mailbackup.state.db import FolderRecord
from mailbackup.state.rows import now_iso
from mailbackup.state.verifying import set_verified_many, stored_sizes
from mailbackup.state.written import MessageKey
from mailbackup.sync.plan import select_folders
from mailbackup.text import system_error
from mailbackup.verify.content import CONTENT_CHECK_LIMIT, server_contents
from mailbackup.verify.results import FolderReport, MessageEntry, Mode, VerifyOptions, VerifyResult
from mailbackup.verify.written import WrittenCopies

log = logging.getLogger(__name__)
T = TypeVar("T")

HEADER_PROBE_BYTES = 16 * 1024  # enough of a message for its Subject and Message-ID
HEADER_PROBE_LIMIT = 200  # per folder: one round trip each, so bounded
VERIFIED_BATCH = 500  # verified_at updates per transaction
RETRIES = 2  # reconnects per server action before giving up


class VerifyProgress(Protocol):
    def stage(self, text: str) -> None: ...
    def start_hashing(self, messages: int, total_bytes: int) -> None: ...
    def hashed(self, byte_count: int) -> None: ...


class NoProgress:
    def stage(self, text: str) -> None:
        log.info("%s", text)

    def start_hashing(self, messages: int, total_bytes: int) -> None:
        pass

    def hashed(self, byte_count: int) -> None:
        pass


# ---------------------------------------------------------------------------
# The server side
# ---------------------------------------------------------------------------


@dataclass
class ServerFolder:
    """What the server holds in one folder, as far as verification needs."""

    name: str
    uidvalidity: int = 0
    metas: dict[int, MessageMeta] = field(default_factory=dict)
    headers: dict[int, HeaderSummary] = field(default_factory=dict)  # of messages the archive lacks
    # BODY[] length and SHA-256 of messages whose RFC822.SIZE differs from the archived size (content.py)
    contents: dict[int, tuple[int, str]] = field(default_factory=dict)
    error: str | None = None
    contradiction: str | None = None  # the server's answers disagreed: the numbers each gave


def verify_online(session: ImapSession, archive: Archive, options: VerifyOptions,
                  progress: VerifyProgress | None = None, *,
                  written: frozenset[MessageKey] = frozenset()) -> VerifyResult:
    """Compare every folder on the server with the archive, message by message.

    `written`: the copies the backup of this same run wrote (a sweep's, see
    written.py); their files are checked for place, kind and size instead of
    being read again, and counted apart.  The server side is the same for all.

    Raises ConnectError/AuthError/TLSError when the server cannot be reached
    at all; one folder the server refuses becomes that folder's error."""
    progress = progress or NoProgress()
    started = options.clock()
    listed = _retrying(session, None, session.list_folders)
    server: dict[str, ServerFolder] = {}
    for info in select_folders(listed, options.include, options.exclude):
        progress.stage(_("reading folder {folder}").format(folder=info.name))
        server[info.name] = _read_server_folder(session, archive, info.name)
    archived = {record.name for record in archive.state.folders()}
    for info in listed:
        # A folder we hold that the server now lists but will not open (\Noselect after an
        # access error) was not compared: it must not pass as complete.
        if not info.selectable and info.name in archived and select_folders(
                [FolderInfo(info.name, info.delimiter)], options.include, options.exclude):
            server[info.name] = ServerFolder(info.name, error="the server lists this folder but will not open it")
    excluded = {info.name for info in listed} - set(server)
    checker = _ArchiveChecker(archive, options, progress, Mode.ONLINE, started, WrittenCopies(archive.store, written))
    return checker.run(server, excluded)


def verify_offline(archive: Archive, options: VerifyOptions,
                   progress: VerifyProgress | None = None) -> VerifyResult:
    """Check the archive against its own state, with no server."""
    progress = progress or NoProgress()
    return _ArchiveChecker(archive, options, progress, Mode.OFFLINE, options.clock()).run(None, set())


def _read_server_folder(session: ImapSession, archive: Archive, name: str) -> ServerFolder:
    folder = ServerFolder(name)
    try:
        selected = _retrying(session, None, lambda: session.examine(name))
        folder.uidvalidity = selected.uidvalidity
        listing = _retrying(session, name, lambda: list_folder(session, need_sizes=True,
                                                               reopen=lambda: session.examine(name)))
        folder.metas.update(listing.metas or {})
        if not listing.consistent:
            folder.contradiction = listing.describe()
    except (FolderError, ServerError) as exc:
        folder.error = exc.message
        return folder
    record = archive.state.folder(name)
    stored = stored_sizes(archive.state, record.id, folder.uidvalidity) if record else {}
    if record is not None:
        _compare_contents(session, archive, folder, record, stored)
    lacking = [uid for uid in sorted(folder.metas) if uid not in stored]
    for uid in lacking[:HEADER_PROBE_LIMIT]:
        summary = _probe_headers(session, name, uid)
        if summary is not None:
            folder.headers[uid] = summary
    return folder


def _compare_contents(session: ImapSession, archive: Archive, folder: ServerFolder, record: FolderRecord,
                      sizes: dict[int, int]) -> None:
    """Fetch whole the messages whose size the server gives otherwise than the
    archive (see content.py), or all of them when the folder's UIDVALIDITY is no
    longer the archived one (GNU mailutils changes it every session): UIDs then
    say nothing, contents do.  A server failing on them leaves them unpaired."""
    if record.uidvalidity is not None and record.uidvalidity != folder.uidvalidity:
        wanted = sorted(folder.metas)
    else:
        wanted = [uid for uid, meta in sorted(folder.metas.items()) if uid in sizes and sizes[uid] != meta.size]
    if not wanted:
        return
    wanted = wanted[:CONTENT_CHECK_LIMIT]
    try:
        folder.contents = _retrying(session, folder.name,
                                    lambda: server_contents(session, archive.spool_dir, wanted))
    except (ServerError, ConnectionLost) as exc:
        log.info("folder %r: contents not compared (%s)", folder.name, exc.message)


def _probe_headers(session: ImapSession, folder: str, uid: int) -> HeaderSummary | None:
    """Subject and Message-ID of a message the archive lacks, so a person can
    recognise it.  A server that fails on the message costs only its name."""
    try:
        head = _retrying(session, folder, lambda: session.fetch_partial(uid, 0, HEADER_PROBE_BYTES))
    except (ServerError, ConnectionLost) as exc:
        log.info("folder %r UID %d: no headers (%s)", folder, uid, exc.message)
        return None
    return summarize(head)


def _retrying(session: ImapSession, folder: str | None, action: Callable[[], T]) -> T:
    """Run a server action under the retry policy; after a reconnect the folder is selected again.
    Pushback is not waited out here (no wait budget): it reaches the caller,
    which decides (a sweep verifies again later, on a rested server)."""
    policy = RetryPolicy(max_retries=RETRIES, busy_wait=WaitBudget(limit=0.0))
    retrying = Retrying(policy, session.reconnect, str(session.settings.server))
    return retrying.call(action, None if folder is None else lambda: session.examine(folder))


# ---------------------------------------------------------------------------
# The archive side
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What the local check found for one stored message."""

    kind: Literal["ok", "missing", "corrupt", "skipped"]  # skipped: verified recently, file present
    reason: str | None = None


OK = _Outcome("ok")
SKIPPED = _Outcome("skipped")


@dataclass
class _FolderWork:
    name: str
    record: FolderRecord | None
    server: ServerFolder | None
    report: FolderReport
    # "compared": the server's list is known; "gone": the folder is no longer on the
    # server; "unknown": offline, excluded, or the server refused the folder;
    # "contradicted": the server listed messages, but its answers disagreed.
    server_view: Literal["compared", "gone", "unknown", "contradicted"] = "unknown"
    local: list[StoredMessage] = field(default_factory=list)
    absent: dict[tuple[int, int], _Outcome] = field(default_factory=dict)  # known before hashing


class _ArchiveChecker:
    def __init__(self, archive: Archive, options: VerifyOptions, progress: VerifyProgress,
                 mode: Mode, started: datetime, written: WrittenCopies | None = None) -> None:
        self.archive = archive
        self.state = archive.state
        self.store = archive.store
        self.options = options
        self.progress = progress
        self.mode = mode
        self.started = started
        self.written = written or WrittenCopies(archive.store)
        self.outcomes: dict[tuple[int, int, int], _Outcome] = {}
        self.copies_elsewhere: dict[int, int] = {}  # folder id → copies another folder holds too

    def run(self, server: dict[str, ServerFolder] | None, excluded: set[str]) -> VerifyResult:
        self.copies_elsewhere = self.state.copies_elsewhere()
        works = [self._prepare(name, record, server, excluded) for name, record in self._folders(server)]
        self._hash_all(works)
        for work in works:
            self._classify(work)
        finished = self.options.clock()
        return VerifyResult(
            account=self.options.account, server=self.options.server, mode=self.mode,
            generated_at=self.started, folders=[work.report for work in works], deadline=self.options.deadline,
            seconds=max((finished - self.started).total_seconds(), 0.0),
        )

    def _folders(self, server: dict[str, ServerFolder] | None) -> list[tuple[str, FolderRecord | None]]:
        """Server folders in server order, then archived folders the server lacks."""
        records = {record.name: record for record in self.state.folders()}
        names = list(server or {})
        names += [name for name in records if name not in (server or {})]
        return [(name, records.get(name)) for name in names]

    def _prepare(self, name: str, record: FolderRecord | None, server: dict[str, ServerFolder] | None,
                 excluded: set[str]) -> _FolderWork:
        on_server = server.get(name) if server is not None else None
        report = FolderReport(name=name)
        work = _FolderWork(name=name, record=record, server=on_server, report=report)
        if on_server is not None:
            report.error = on_server.error
            report.contradiction = on_server.contradiction
            if not on_server.error:
                report.server_messages = len(on_server.metas)
                work.server_view = "contradicted" if on_server.contradiction else "compared"
        elif server is not None and name in excluded:
            report.notes.append(_("excluded by include/exclude: archive checked, server not compared"))
        elif server is not None:
            report.server_messages = 0
            work.server_view = "gone"
            report.notes.append(_("no longer on the server; its archived messages are kept"))
        if record is None:
            return work
        self.progress.stage(_("checking archive of {folder}").format(folder=name))
        work.local = list(self.state.messages(record.id))
        report.local_messages = len(work.local)
        if self.copies_elsewhere.get(record.id):
            report.notes.append(_("{count} of its messages are also in other folders (the same SHA-256: one "
                                  "message with several labels, or filed twice)").format(
                                      count=self.copies_elsewhere[record.id]))
        report.bytes = sum(message.size for message in work.local)
        found = self.store.inventory(record.local_path, work.local, committed=record.mbox_committed,
                                     deep=self.mode is Mode.OFFLINE)
        report.problems.extend(found.problems)
        report.warnings.extend(found.warnings)
        report.stray_files.extend(found.stray)
        work.absent.update((key, _Outcome(absent.kind, absent.reason)) for key, absent in found.absent.items())
        return work

    # -- hashing ------------------------------------------------------
    def _hash_all(self, works: list[_FolderWork]) -> None:
        """Hash every present file, least recently verified first, so an
        interrupted run is continued where it matters most next time."""
        recent_since = self.started - self.options.max_age if self.options.max_age else None
        queue: list[tuple[_FolderWork, StoredMessage]] = []
        for work in works:
            for message in work.local:
                key = (message.folder_id, message.uidvalidity, message.uid)
                absent = work.absent.get((message.uidvalidity, message.uid))
                if absent is not None:
                    self.outcomes[key] = absent
                elif work.record is not None and self.written.confirms(work.record.local_path, message):
                    self.outcomes[key] = OK
                    work.report.checked_at_download += 1
                elif recent_since is not None and _verified_since(message, recent_since):
                    self.outcomes[key] = SKIPPED
                    work.report.skipped_recent += 1
                else:
                    queue.append((work, message))
        queue.sort(key=lambda item: (item[1].verified_at or "", item[1].saved_at))
        self.progress.start_hashing(len(queue), sum(message.size for _work, message in queue))
        verified: list[StoredMessage] = []
        try:
            for work, message in queue:
                outcome = self._hash_one(work, message)
                self.outcomes[(message.folder_id, message.uidvalidity, message.uid)] = outcome
                if outcome is OK:
                    verified.append(message)
                    if len(verified) >= VERIFIED_BATCH:
                        self._mark_verified(verified)
        finally:  # Ctrl-C included: what was verified stays verified
            self._mark_verified(verified)

    def _hash_one(self, work: _FolderWork, message: StoredMessage) -> _Outcome:
        assert work.record is not None
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self.store.iter_chunks(work.record.local_path, message):
                digest.update(chunk)
                size += len(chunk)
                self.progress.hashed(len(chunk))
        except FileNotFoundError:
            return _Outcome("missing", _("message file not found"))
        except (OSError, ValueError) as exc:
            return _Outcome("corrupt", _("cannot be read: {error}").format(error=system_error(exc)))
        finally:
            work.report.checked += 1
            work.report.bytes_checked += size
        if size != message.size:
            return _Outcome("corrupt", _("{size} bytes where {saved} were saved").format(size=size, saved=message.size))
        if digest.hexdigest() != message.sha256:
            return _Outcome("corrupt", _("content differs from what was saved (SHA-256 mismatch)"))
        return OK

    def _mark_verified(self, messages: list[StoredMessage]) -> None:
        # Only copies read and hashed here: one checked from its download's hash gets no verified_at.
        # Without an fsync of its own: a mark lost to a power cut only puts the copy first in line again.
        if not messages:
            return
        with self.state.bookkeeping():
            set_verified_many(self.state, ((m.folder_id, m.uidvalidity, m.uid) for m in messages), now_iso())
        messages.clear()

    # -- classes ------------------------------------------------------
    def _classify(self, work: _FolderWork) -> None:
        report, server = work.report, work.server
        on_server: set[tuple[int, int]] = set()
        if work.server_view in ("compared", "contradicted") and server is not None:
            current = self._pairs(work, server)
            failures = self._failure_reasons(work.record, server.uidvalidity)
            for uid, meta in sorted(server.metas.items()):
                on_server.add((server.uidvalidity, uid))
                stored = current.get(uid)
                if stored is not None:
                    on_server.add((stored.uidvalidity, stored.uid))
                if stored is None:
                    report.missing.append(_server_entry(server, meta, failures.get(uid)))
                else:
                    self._file_local(report, stored, meta, only_local=False, content=server.contents.get(uid))
        for message in work.local:
            if (message.uidvalidity, message.uid) in on_server:
                continue
            # What a contradictory server did not name may still be there: not called gone.
            gone = work.server_view in ("compared", "gone") or message.gone_at is not None
            self._file_local(report, message, None, only_local=gone)
        if work.server_view == "unknown" and work.record is not None:
            self._add_known_failures(work)
        if report.compared_by_content:
            report.notes.append(_("{count} messages compared by content: the server's RFC822.SIZE is not the length "
                                  "of what it sends (an estimate), so the SHA-256 of its BODY[] was compared with "
                                  "the archived copy's, and matched").format(count=report.compared_by_content))
        report.settle_status()

    def _pairs(self, work: _FolderWork, server: ServerFolder) -> dict[int, StoredMessage]:
        """The archived copy of each server UID: by UID, or by content when the
        folder's UIDVALIDITY changed since the backup (as the backup's own new
        generation pairs them, sync/commit.py), said in a note."""
        archived = work.record.uidvalidity if work.record is not None else None
        if archived is None or archived == server.uidvalidity or not server.contents:
            return {message.uid: message for message in work.local if message.uidvalidity == server.uidvalidity}
        unclaimed: dict[str, list[StoredMessage]] = {}
        for message in work.local:
            if message.uidvalidity == archived:
                unclaimed.setdefault(message.sha256, []).append(message)
        pairs = {uid: copies.pop(0) for uid, (_size, digest) in sorted(server.contents.items())
                 if (copies := unclaimed.get(digest))}
        work.report.notes.append(_("UIDVALIDITY is {now} on the server and {then} in the archive (the server changed "
                                   "it since the backup): {count} messages paired by content (SHA-256) instead of "
                                   "UID").format(now=server.uidvalidity, then=archived, count=len(pairs)))
        return pairs

    def _file_local(self, report: FolderReport, message: StoredMessage, meta: MessageMeta | None, *,
                    only_local: bool, content: tuple[int, str] | None = None) -> None:
        outcome = self.outcomes.get((message.folder_id, message.uidvalidity, message.uid), OK)
        if outcome.kind == "corrupt":
            report.corrupt.append(MessageEntry.from_stored(message, outcome.reason))
        elif outcome.kind == "missing":
            reason = outcome.reason if not only_local else _("{reason}; no longer on the server either").format(
                reason=outcome.reason)
            report.missing.append(MessageEntry.from_stored(message, reason))
        elif meta is not None and meta.size != message.size and content == (message.size, message.sha256):
            report.ok += 1  # the server's RFC822.SIZE is an estimate; what it sends is what we hold
            report.compared_by_content += 1
        elif meta is not None and meta.size != message.size:
            reason = _("the server's size differs from the archived copy") if content is None else _(
                "the server sends {size} bytes of other content (SHA-256 differs from the archived copy)").format(
                size=content[0])
            report.size_mismatch.append(MessageEntry.from_stored(message, reason, size=meta.size,
                                                                 local_size=message.size))
        elif only_local:
            report.only_local.append(MessageEntry.from_stored(message, None))
        else:
            report.ok += 1

    def _failure_reasons(self, record: FolderRecord | None, uidvalidity: int) -> dict[int, str]:
        if record is None:
            return {}
        return {uid: _("the last backup could not fetch it: {error}").format(error=error)
                for validity, uid, error in self.state.failures(record.id) if validity == uidvalidity}

    def _add_known_failures(self, work: _FolderWork) -> None:
        """Offline, the server is unknown; but the last backup's failures are not."""
        assert work.record is not None
        stored = {(message.uidvalidity, message.uid) for message in work.local}
        for validity, uid, error in self.state.failures(work.record.id):
            if validity == work.record.uidvalidity and (validity, uid) not in stored:
                work.report.missing.append(MessageEntry(
                    uid=uid, uidvalidity=validity, size=None,
                    reason=_("the last backup could not fetch it: {error}").format(error=error)))


def _verified_since(message: StoredMessage, since: datetime) -> bool:
    if not message.verified_at:
        return False
    try:
        when = datetime.fromisoformat(message.verified_at)
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) >= since


def _server_entry(server: ServerFolder, meta: MessageMeta, reason: str | None) -> MessageEntry:
    headers = server.headers.get(meta.uid)
    return MessageEntry(
        uid=meta.uid, uidvalidity=server.uidvalidity, size=meta.size,
        message_id=headers.message_id if headers else None, subject=headers.subject if headers else None,
        date=meta.internaldate.isoformat(), reason=reason or _("not in the archive"),
    )


