"""Restore an archive to an IMAP server.

Public API:

* `RestoreEngine(archive, target, options, progress).run()` → `RestoreStats`:
  uploads every archived copy once, with its flags and INTERNALDATE;
* where each folder goes: foldermap.py; which target message is an
  archived copy: matching.py; checking the target afterwards:
  targetcheck.py; backup then restore (`mailbackup migrate`): migrate.py.

Nothing here prints: progress goes through `RestoreProgress`, results come
back as dataclasses.

Idempotence.  The state's `uploads` table (state/schema.py, version 2) holds
per archived copy and target account: folder, UIDVALIDITY, UID, status.  A
batch is recorded `pending` (committed) before its APPEND is sent and
`uploaded` after, with the UID from UIDPLUS's ``[APPENDUID v uids]``; without
UIDPLUS the new UIDs are found by Message-ID and size among the UIDs from the
folder's UIDNEXT before the APPEND.  Before a folder is uploaded to, rows that
are `pending`, lack a UID, or belong to an older UIDVALIDITY of the target
folder are looked for on the target (Message-ID and size; same size and same
bytes when there is no Message-ID), so a killed run never leads to a message
being appended twice.  Matching reads the target folder once (one FETCH of
sizes and Message-ID headers per 500 messages) rather than one SEARCH per
message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from mailbackup import faults
from mailbackup.archive import Archive
from mailbackup.errors import ConnectionLost, FolderError, Interrupted, ServerError
from mailbackup.i18n import _
from mailbackup.imap.append import AppendItem, AppendResponse, TargetFolder, TargetMailbox
from mailbackup.imap.listing import Listing
from mailbackup.imap.pushback import WaitBudget
from mailbackup.imap.retry import Retrying, RetryPolicy, refusal_pushback
from mailbackup.model import FolderInfo, StoredMessage, message_flags
from mailbackup.restore.batching import batches
from mailbackup.restore.foldermap import (
    FolderPlan,
    plan_folders,
    source_prefix_of,
)
from mailbackup.restore.matching import ArchivedBody, TargetIndex
from mailbackup.state.uploads import (
    UPLOAD_DONE,
    RestoreItem,
    UploadTarget,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
MEGABYTE = 1 << 20


# ---------------------------------------------------------------------------
# Results and progress
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageFailure:
    uid: int
    uidvalidity: int
    size: int
    subject: str | None
    error: str


@dataclass
class FolderRestoreResult:
    source: str
    target: str
    messages: int = 0  # archived copies in scope
    uploaded: int = 0  # appended by this run (with --dry-run: would be)
    uploaded_bytes: int = 0
    found: int = 0  # found already on the target (an interrupted run had sent them)
    already: int = 0  # recorded as uploaded by an earlier run
    created: bool = False
    failed: list[MessageFailure] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class RestoreStats:
    folders: list[FolderRestoreResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    dry_run: bool = False

    @property
    def uploaded(self) -> int:
        return sum(folder.uploaded for folder in self.folders)

    @property
    def bytes(self) -> int:
        return sum(folder.uploaded_bytes for folder in self.folders)

    @property
    def failures(self) -> int:
        return sum(len(folder.failed) for folder in self.folders)

    @property
    def has_warnings(self) -> bool:
        return any(folder.error or folder.failed or folder.warnings for folder in self.folders)


class RestoreProgress(Protocol):
    def folder_start(self, name: str, messages: int, size: int) -> None: ...
    def uploaded(self, messages: int, size: int) -> None: ...
    def folder_done(self, result: FolderRestoreResult) -> None: ...
    def warn(self, text: str) -> None: ...


class NoRestoreProgress:
    def folder_start(self, name: str, messages: int, size: int) -> None:
        pass

    def uploaded(self, messages: int, size: int) -> None:
        pass

    def folder_done(self, result: FolderRestoreResult) -> None:
        pass

    def warn(self, text: str) -> None:
        log.warning("%s", text)


@dataclass
class RestoreOptions:
    target: UploadTarget
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip_deleted: bool = False  # leave out messages marked gone-from-server
    check_content: bool = True  # the check compares each message's bytes (SHA-256), not only size/flags/date
    dry_run: bool = False
    batch_messages: int = 100
    batch_bytes: int = 8 * MEGABYTE
    max_retries: int = 5
    retry_delay: float = 1.0  # first backoff after a lost connection; doubles per try
    stop: threading.Event = field(default_factory=threading.Event)
    # Waits a busy target ("[UNAVAILABLE] try again later") may cost this run in all.
    busy_wait: WaitBudget = field(default_factory=WaitBudget)


def upload_flags(flags: Iterable[str], folder: TargetFolder) -> tuple[str, ...]:
    """The flags to APPEND with: never \\Recent, only what the folder keeps
    (keywords only with ``\\*`` or listed in PERMANENTFLAGS)."""
    return tuple(flag for flag in message_flags(flags) if folder.keeps(flag))


# ---------------------------------------------------------------------------
# Talking to the target with reconnects
# ---------------------------------------------------------------------------


@dataclass
class FolderRun:
    """The target folder being worked on."""

    plan: FolderPlan
    folder: TargetFolder
    claimed: set[int] = field(default_factory=set)
    uidnext: int = 1
    sent: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)  # (target UID, flags it was sent with)

    @property
    def name(self) -> str:
        return self.plan.target


class TargetWork:
    """What restoring and checking share: the plan, and calls that survive a
    dropped connection (reconnect with backoff, re-select, try again)."""

    def __init__(self, archive: Archive, target: TargetMailbox, options: RestoreOptions) -> None:
        self.archive = archive
        self.state = archive.state
        self.store = archive.store
        self.target = target
        self.options = options
        policy = RetryPolicy(options.max_retries, options.retry_delay, options.busy_wait, options.stop)
        self.retrying = Retrying(policy, target.reconnect, str(target.session.settings.server))

    def plans(self) -> list[FolderPlan]:
        namespace = self._call(None, self.target.namespace)
        return plan_folders(self.state.folders(), source_prefix_of(self.state), namespace,
                            self.options.include, self.options.exclude)

    def existing_folders(self) -> dict[str, FolderInfo]:
        return {info.name: info for info in self._call(None, self.target.list_folders)}

    def items(self, plan: FolderPlan) -> list[RestoreItem]:
        return self.state.restore_items(plan.record.id, self.options.target,
                                        include_gone=not self.options.skip_deleted)

    def body_of(self, plan: FolderPlan, message: StoredMessage) -> ArchivedBody:
        return ArchivedBody(lambda: self.store.read_verified(plan.record.local_path, message))

    def index(self, run: FolderRun, first_uid: int = 1) -> TargetIndex:
        return self.index_listing(run, first_uid)[0]

    def index_listing(self, run: FolderRun, first_uid: int = 1) -> tuple[TargetIndex, Listing]:
        """The target folder's index, and whether its answers agreed (imap/listing.py)."""
        messages, listing = self._call(run, lambda: self.target.index_listing(first_uid))

        def fetch_body(uid: int) -> bytes | None:
            return self._call(run, lambda: self.target.fetch_body(uid))
        return TargetIndex(messages, run.claimed, fetch_body), listing

    def _call(self, run: FolderRun | None, action: Callable[[], T]) -> T:
        return self.retrying.call(action, self._reopen(run))

    def _reconnect(self, run: FolderRun | None) -> None:
        self.retrying.reconnect(self._reopen(run))

    def _reopen(self, run: FolderRun | None) -> Callable[[], object] | None:
        if run is None:
            return None

        def reselect() -> None:
            run.folder = self.target.select(run.name)
        return reselect


# ---------------------------------------------------------------------------
# Restore
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    item: RestoreItem
    upload_if_missing: bool  # False: recorded as uploaded, only its UID is unknown


class RestoreEngine(TargetWork):
    def __init__(self, archive: Archive, target: TargetMailbox, options: RestoreOptions,
                 progress: RestoreProgress | None = None) -> None:
        super().__init__(archive, target, options)
        self.progress = progress or NoRestoreProgress()

    def run(self) -> RestoreStats:
        started = time.monotonic()
        stats = RestoreStats(dry_run=self.options.dry_run)
        run_id = None if self.options.dry_run else self.state.start_run("restore")
        try:
            plans = self.plans()
            existing = self.existing_folders()
            for plan in plans:
                if self.options.stop.is_set():
                    stats.interrupted = True
                    break
                result = FolderRestoreResult(source=plan.record.name, target=plan.target,
                                             warnings=list(plan.warnings))
                stats.folders.append(result)
                for text in plan.warnings:
                    self.progress.warn(text)
                try:
                    self._restore_folder_safely(plan, existing, result)
                except Interrupted:
                    stats.interrupted = True
                    break
        finally:
            stats.seconds = time.monotonic() - started
            if run_id is not None:
                status = "interrupted" if stats.interrupted else ("warnings" if stats.has_warnings else "ok")
                self.state.finish_run(run_id, status, stats.uploaded, stats.bytes,
                                      f"{self.options.target.account} on {self.options.target.server}")
        return stats

    def _restore_folder_safely(self, plan: FolderPlan, existing: dict[str, FolderInfo],
                               result: FolderRestoreResult) -> None:
        try:
            self._restore_folder(plan, existing, result)
        except (FolderError, ServerError) as exc:
            result.error = exc.message
            self.progress.warn(_("folder {folder!r}: {error}").format(folder=plan.record.name, error=exc.message))
        finally:
            self.progress.folder_done(result)

    def _restore_folder(self, plan: FolderPlan, existing: dict[str, FolderInfo],
                        result: FolderRestoreResult) -> None:
        items = self.items(plan)
        result.messages = len(items)
        if self.options.dry_run:
            self._dry_run(plan, existing, items, result)
            return
        if plan.target not in existing or not existing[plan.target].selectable:
            self._call(None, lambda: self.target.create(plan.target))
            result.created = plan.target not in existing
        folder = self._call(None, lambda: self.target.select(plan.target))
        run = FolderRun(plan=plan, folder=folder, uidnext=max(folder.uidnext, 1))
        to_upload, checks = self._classify(run, items, result)
        if checks:
            to_upload += self._settle(run, checks, result)
            to_upload.sort(key=lambda item: (item.message.uidvalidity, item.message.uid))
        self.progress.folder_start(plan.record.name, len(to_upload), sum(i.message.size for i in to_upload))
        for group in batches(to_upload, self.options.batch_messages, self.options.batch_bytes,
                             lambda item: item.message.size):
            if self.options.stop.is_set():
                raise Interrupted(_("stopped by request after the last complete batch"))
            self._upload(run, group, result)
        self._restore_flags(run, result)

    def _restore_flags(self, run: FolderRun, result: FolderRestoreResult) -> None:
        """Some servers store an APPENDed message without the flags sent with it
        (GNU mailutils was reported to): those are set afterwards, and said."""
        if not run.sent:
            return
        on_target = self._call(run, lambda: self.target.flags_of([uid for uid, _flags in run.sent]))
        dropped = [(uid, flags) for uid, flags in run.sent
                   if uid in on_target and set(on_target[uid]) != set(flags)]
        for uid, flags in dropped:
            self._call(run, lambda uid=uid, flags=flags: self.target.set_flags(uid, flags))  # type: ignore[misc]
        if dropped:
            self.progress.warn(_("{folder}: the target did not keep the flags sent with APPEND for {count} messages; "
                                 "they were set afterwards (UID STORE)").format(folder=run.name, count=len(dropped)))
        run.sent.clear()

    def _dry_run(self, plan: FolderPlan, existing: dict[str, FolderInfo], items: list[RestoreItem],
                 result: FolderRestoreResult) -> None:
        waiting = [item for item in items if item.upload is None or item.upload.status != UPLOAD_DONE]
        result.created = plan.target not in existing
        result.already = len(items) - len(waiting)
        result.uploaded = len(waiting)
        result.uploaded_bytes = sum(item.message.size for item in waiting)
        self.progress.folder_start(plan.record.name, len(waiting), result.uploaded_bytes)

    def _classify(self, run: FolderRun, items: list[RestoreItem],
                  result: FolderRestoreResult) -> tuple[list[RestoreItem], list[_Check]]:
        """Split into: to upload, to look for on the target first, done.

        Whatever is not known to be in this folder's current incarnation is
        looked for before it is sent, unless the folder is empty: a batch in
        flight when a run died, a message refused last time, mail copied
        there by other means or by a run that named the server differently."""
        to_upload: list[RestoreItem] = []
        checks: list[_Check] = []
        for item in items:
            upload = item.upload
            if upload is not None and upload.status == UPLOAD_DONE:
                if upload.target_folder != run.name:
                    result.already += 1  # restored into another folder name earlier: never twice
                    continue
                if upload.target_uidvalidity == run.folder.uidvalidity:
                    if upload.target_uid is not None:
                        run.claimed.add(upload.target_uid)
                        result.already += 1
                    else:
                        checks.append(_Check(item, upload_if_missing=False))  # only its UID is unknown
                    continue
            if run.folder.exists:
                checks.append(_Check(item, upload_if_missing=True))
            else:
                to_upload.append(item)
        return to_upload, checks

    def _settle(self, run: FolderRun, checks: list[_Check], result: FolderRestoreResult,
                first_uid: int = 1) -> list[RestoreItem]:
        """Look on the target for messages whose upload is unsure; record the
        ones found, return the ones still to send."""
        index = self.index(run, first_uid)
        missing: list[RestoreItem] = []
        with self.state.transaction():
            for check in checks:
                found = index.claim(check.item.message, self.body_of(run.plan, check.item.message))
                if found is not None:
                    self.state.mark_uploaded(check.item, self.options.target, run.name, run.folder.uidvalidity,
                                             found.uid)
                    result.found += 1
                elif check.upload_if_missing:
                    missing.append(check.item)
                else:
                    result.already += 1
        if index.by_uid:
            run.uidnext = max(run.uidnext, max(index.by_uid) + 1)
        return missing

    def _upload(self, run: FolderRun, group: list[RestoreItem], result: FolderRestoreResult) -> None:
        with self.state.transaction():
            self.state.mark_uploads_pending(group, self.options.target, run.name, run.folder.uidvalidity)
        faults.point("restore-after-pending")
        prepared = [pair for item in group if (pair := self._prepare(run, item, result)) is not None]
        if not prepared:
            return
        if len(prepared) > 1 and self.target.can_multiappend:
            self._append(run, prepared, result)
        else:
            for pair in prepared:
                self._append(run, [pair], result)

    def _prepare(self, run: FolderRun, item: RestoreItem,
                 result: FolderRestoreResult) -> tuple[RestoreItem, AppendItem] | None:
        message = item.message
        limit = self.target.append_limit
        if limit is not None and message.size > limit:
            self._fail(run, item, _("larger than the target accepts (APPENDLIMIT {limit} bytes)").format(limit=limit),
                       result)
            return None
        try:  # the archive is untrusted: only the bytes the backup saved go out
            body = self.store.read_verified(run.plan.record.local_path, message)
        except (OSError, ValueError) as exc:
            self._fail(run, item, _("damaged archived copy, not uploaded: {error}").format(error=exc), result)
            return None
        flags = upload_flags(message.flags, run.folder)
        return item, AppendItem(body=body, flags=flags, internaldate=message.internaldate)

    def _append(self, run: FolderRun, chunk: list[tuple[RestoreItem, AppendItem]], result: FolderRestoreResult,
                tries_left: int | None = None) -> None:
        tries_left = self.options.max_retries if tries_left is None else tries_left
        before = run.uidnext
        try:
            response = self.retrying.call_when_free(lambda: self._send(run, chunk))
        except ConnectionLost:
            if tries_left <= 0:
                raise
            self._reconnect(run)  # then find out which of the chunk made it before the drop
            sent = self._settle(run, [_Check(item, True) for item, _ in chunk], result, first_uid=before)
            rest = [pair for pair in chunk if pair[0] in sent]
            if rest:
                self._append(run, rest, result, tries_left - 1)
            return
        faults.point("restore-after-append")
        if response.ok:
            self._record(run, chunk, response, before, result)
        elif response.code == "TRYCREATE" and tries_left > 0:  # the folder was deleted meanwhile
            self._call(None, lambda: self.target.create(run.name))
            run.folder = self._call(None, lambda: self.target.select(run.name))
            self._append(run, chunk, result, tries_left - 1)
        elif len(chunk) > 1:
            for pair in chunk:  # MULTIAPPEND is all or nothing: find the one(s) refused
                self._append(run, [pair], result, tries_left)
        else:
            self._fail(run, chunk[0][0], describe_refusal(response), result)

    def _send(self, run: FolderRun, chunk: list[tuple[RestoreItem, AppendItem]]) -> AppendResponse:
        """One APPEND; a target saying "busy, try later" raises ServerBusy to be waited out."""
        response = self.target.append(run.name, [append_item for _, append_item in chunk])
        busy = None if response.ok else refusal_pushback(self.retrying.server, response.code, response.text)
        if busy is not None:
            raise busy
        return response

    def _record(self, run: FolderRun, chunk: list[tuple[RestoreItem, AppendItem]], response: AppendResponse,
                before: int, result: FolderRestoreResult) -> None:
        uidvalidity = response.uidvalidity or run.folder.uidvalidity
        if len(response.uids) == len(chunk):
            uids: list[int | None] = list(response.uids)
            run.claimed.update(response.uids)
        else:  # no UIDPLUS: the new messages are among the UIDs from the old UIDNEXT on
            index = self.index(run, before)
            uids = [self._claim_uid(index, run, item) for item, _ in chunk]
        with self.state.transaction():
            for (item, _), uid in zip(chunk, uids, strict=True):
                self.state.mark_uploaded(item, self.options.target, run.name, uidvalidity, uid)
        run.sent.extend((uid, append_item.flags) for (_item, append_item), uid in zip(chunk, uids, strict=True)
                        if uid is not None)
        known = [uid for uid in uids if uid is not None]
        if known:
            run.uidnext = max(run.uidnext, max(known) + 1)
        size = sum(len(append_item.body) for _, append_item in chunk)
        result.uploaded += len(chunk)
        result.uploaded_bytes += size
        self.progress.uploaded(len(chunk), size)

    def _claim_uid(self, index: TargetIndex, run: FolderRun, item: RestoreItem) -> int | None:
        found = index.claim(item.message, self.body_of(run.plan, item.message))
        return found.uid if found else None

    def _fail(self, run: FolderRun, item: RestoreItem, error: str, result: FolderRestoreResult) -> None:
        message = item.message
        with self.state.transaction():
            self.state.mark_upload_failed(item, self.options.target, run.name, run.folder.uidvalidity, error)
        result.failed.append(MessageFailure(message.uid, message.uidvalidity, message.size, message.subject, error))


def describe_refusal(response: AppendResponse) -> str:
    known = {"OVERQUOTA": _("the target mailbox is full"), "TOOBIG": _("the message is too large for the target"),
             "LIMIT": _("the target refused it for exceeding a limit")}
    reason = known.get(response.code or "")
    if reason:
        return f"{reason}: {response.text}"
    return _("refused by the target: {reply}").format(reply=response.text)
