"""Is every archived message on the target server, in the folder a restore
puts it, with the same content, size, flags and arrival date?  `check_target`
reads the target as a restore does (the uploads' recorded UIDs first, then
matching.py: Message-ID and size); by default it then fetches each message
(BODY.PEEK[]) and compares its SHA-256 with the archive's, since a server may
keep the size and change the bytes (Cyrus 3.6 replaces raw 8-bit header
bytes with X); `RestoreOptions.check_content` False (``--check quick``)
keeps to size, flags and date.  A target folder whose answers contradict
each other (imap/listing.py) makes what was not found "could not be
checked", not missing.  `write_check_report` writes ``restore-verify.json``.

Public API: `check_target(archive, target, options, account)` →
`TargetCheck`; `check_to_dict`; `write_check_report(check, directory)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailbackup import __version__
from mailbackup.archive import Archive
from mailbackup.errors import FolderError, ServerError
from mailbackup.i18n import _
from mailbackup.imap.append import TargetMailbox, TargetMessage
from mailbackup.model import FolderInfo, StoredMessage
from mailbackup.restore.foldermap import FolderPlan
from mailbackup.restore.matching import TargetIndex, describe_change, same_content
from mailbackup.restore.upload import FolderRun, RestoreOptions, TargetWork, upload_flags
from mailbackup.state.rows import now_iso
from mailbackup.state.uploads import UPLOAD_DONE, UPLOAD_FAILED, UPLOAD_PENDING, RestoreItem, UploadTarget
from mailbackup.store.files import atomic_write

CHECK_REPORT = "restore-verify.json"
# What the check can find wrong with a message, as restore-verify.json lists them.
CHECK_KINDS = ("missing", "size_mismatch", "flags_mismatch", "date_mismatch", "content_mismatch", "unchecked")


@dataclass(frozen=True)
class CheckEntry:
    """One archived message the check has something to say about."""

    uid: int
    uidvalidity: int
    size: int
    message_id: str | None
    subject: str | None
    reason: str
    target_uid: int | None = None
    target_size: int | None = None
    flags: tuple[str, ...] = ()
    target_flags: tuple[str, ...] = ()


@dataclass
class FolderCheck:
    source: str
    target: str
    messages: int = 0
    present: int = 0  # on the target with the same size, flags and date
    missing: list[CheckEntry] = field(default_factory=list)
    size_mismatch: list[CheckEntry] = field(default_factory=list)
    flags_mismatch: list[CheckEntry] = field(default_factory=list)
    date_mismatch: list[CheckEntry] = field(default_factory=list)
    content_mismatch: list[CheckEntry] = field(default_factory=list)  # same size, other bytes
    unchecked: list[CheckEntry] = field(default_factory=list)  # not found where the target contradicted itself
    error: str | None = None
    contradiction: str | None = None  # the target's answers on what the folder holds: the numbers each gave

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        problems = (self.missing or self.size_mismatch or self.flags_mismatch or self.date_mismatch
                    or self.content_mismatch)
        if problems:
            return "incomplete"
        return "inconclusive" if self.unchecked else "ok"


@dataclass
class TargetCheck:
    account: str
    target: UploadTarget
    started_at: str
    finished_at: str = ""
    folders: list[FolderCheck] = field(default_factory=list)
    content: bool = True  # the bytes were compared, not only size, flags and date

    @property
    def complete(self) -> bool:
        return all(folder.status == "ok" for folder in self.folders)

    @property
    def status(self) -> str:
        """complete, inconclusive (only "could not be checked" stands in the way) or incomplete."""
        statuses = {folder.status for folder in self.folders}
        if statuses <= {"ok"}:
            return "complete"
        return "inconclusive" if statuses <= {"ok", "inconclusive"} else "incomplete"

    def totals(self) -> dict[str, int]:
        def total(pick: Callable[[FolderCheck], int]) -> int:
            return sum(pick(folder) for folder in self.folders)

        return {
            "folders": len(self.folders),
            "folders_with_errors": sum(1 for folder in self.folders if folder.error),
            "messages": total(lambda f: f.messages),
            "present": total(lambda f: f.present),
            "missing": total(lambda f: len(f.missing)),
            "size_mismatch": total(lambda f: len(f.size_mismatch)),
            "flags_mismatch": total(lambda f: len(f.flags_mismatch)),
            "date_mismatch": total(lambda f: len(f.date_mismatch)),
            "content_mismatch": total(lambda f: len(f.content_mismatch)),
            "unchecked": total(lambda f: len(f.unchecked)),
        }


class _TargetChecker(TargetWork):
    def run(self, account: str) -> TargetCheck:
        check = TargetCheck(account=account, target=self.options.target, started_at=now_iso(),
                            content=self.options.check_content)
        existing = self.existing_folders()
        for plan in self.plans():
            folder_check = FolderCheck(source=plan.record.name, target=plan.target)
            check.folders.append(folder_check)
            try:
                self._check_folder(plan, existing, folder_check)
            except (FolderError, ServerError) as exc:
                folder_check.error = exc.message
        check.finished_at = now_iso()
        return check

    def _check_folder(self, plan: FolderPlan, existing: dict[str, FolderInfo], result: FolderCheck) -> None:
        items = self.items(plan)
        result.messages = len(items)
        if plan.target not in existing or not existing[plan.target].selectable:
            result.error = _("folder is not on the target")
            result.missing = [_entry(item, _("folder is not on the target")) for item in items]
            return
        folder = self._call(None, lambda: self.target.select(plan.target))
        run = FolderRun(plan=plan, folder=folder)
        index, listing = self.index_listing(run)
        if not listing.consistent:
            result.contradiction = listing.describe()
        pairs: list[tuple[RestoreItem, TargetMessage | None]] = []
        unsure: list[RestoreItem] = []
        for item in items:  # first the UIDs the uploads recorded, then match the rest
            upload = item.upload
            recorded = (upload is not None and upload.status == UPLOAD_DONE and upload.target_folder == plan.target
                        and upload.target_uidvalidity == folder.uidvalidity and upload.target_uid is not None
                        and upload.target_uid in index.by_uid and upload.target_uid not in run.claimed)
            if recorded and upload is not None and upload.target_uid is not None:
                run.claimed.add(upload.target_uid)
                pairs.append((item, index.by_uid[upload.target_uid]))
            else:
                unsure.append(item)
        for item in unsure:
            pairs.append((item, index.claim(item.message, self.body_of(plan, item.message))))
        for item, found in pairs:
            self._compare(run, index, item, found, result)

    def _compare(self, run: FolderRun, index: TargetIndex, item: RestoreItem, found: TargetMessage | None,
                 result: FolderCheck) -> None:
        plan, folder, message = run.plan, run.folder, item.message
        if found is None and result.contradiction:
            result.unchecked.append(_entry(item, _("could not be checked: the target's answers disagree on what "
                                                   "the folder holds ({numbers})").format(
                numbers=result.contradiction)))
            return
        if found is None:
            result.missing.append(_entry(item, _missing_reason(item)))
            return
        expected = upload_flags(message.flags, folder)
        details = {"target_uid": found.uid, "target_size": found.size, "flags": expected,
                   "target_flags": found.flags}
        changed = None
        if not index.size_matches(found, message, self.body_of(plan, message)):
            result.size_mismatch.append(_entry(item, _("a different size on the target"), **details))
        elif self.options.check_content and (changed := self._content_change(run, message, found.uid)):
            result.content_mismatch.append(_entry(item, changed, **details))
        elif tuple(sorted(found.flags)) != expected:
            result.flags_mismatch.append(_entry(item, _("different flags on the target"), **details))
        elif found.internaldate is not None and found.internaldate != message.internaldate:
            result.date_mismatch.append(_entry(item, _("arrival date on the target is {date}").format(
                date=found.internaldate.isoformat()), **details))
        else:
            result.present += 1


    def _content_change(self, run: FolderRun, message: StoredMessage, uid: int) -> str | None:
        """None when the target serves the bytes that were uploaded; else what changed, naming the server."""
        served = self._call(run, lambda: self.target.fetch_body(uid))
        sent = self.store.read(run.plan.record.local_path, message)
        if served is not None and same_content(served, message.sha256, sent):
            return None
        how = describe_change(sent, served) if served is not None else _("it sent no content")
        return _("{folder} UID {uid}: the target ({server}) changed the message's bytes ({how})").format(
            folder=run.plan.target, uid=uid, server=self.target.name, how=how)


def check_target(archive: Archive, target: TargetMailbox, options: RestoreOptions, account: str) -> TargetCheck:
    """Is every archived message (in the chosen folders) on the target, in the
    folder a restore puts it, with the same size, flags and arrival date?"""
    return _TargetChecker(archive, target, options).run(account)


def _entry(item: RestoreItem, reason: str, **details: Any) -> CheckEntry:
    message = item.message
    return CheckEntry(uid=message.uid, uidvalidity=message.uidvalidity, size=message.size,
                      message_id=message.message_id, subject=message.subject, reason=reason, **details)


def _missing_reason(item: RestoreItem) -> str:
    upload = item.upload
    if upload is None:
        return _("not uploaded yet")
    if upload.status == UPLOAD_FAILED:
        return _("upload failed: {error}").format(error=upload.error)
    if upload.status == UPLOAD_PENDING:
        return _("upload was interrupted; run the restore again")
    return _("uploaded {when} but no longer in the folder").format(when=upload.uploaded_at or "").replace("  ", " ")


def check_to_dict(check: TargetCheck) -> dict[str, Any]:
    return {
        "report": "restore-verify",
        "mailbackup_version": __version__,
        "account": check.account,
        "target": {"server": check.target.server, "account": check.target.account},
        "started_at": check.started_at,
        "finished_at": check.finished_at,
        "status": check.status,
        "checked": ["present", "size", "flags", "internaldate", *(["content"] if check.content else [])],
        "totals": check.totals(),
        "folders": [
            {"source": folder.source, "target": folder.target, "status": folder.status, "error": folder.error,
             "messages": folder.messages, "present": folder.present, "contradiction": folder.contradiction,
             **{kind: [asdict(entry) for entry in getattr(folder, kind)] for kind in CHECK_KINDS}}
            for folder in check.folders
        ],
    }


def write_check_report(check: TargetCheck, directory: Path) -> Path:
    """``restore-verify.json`` in `directory` (written whole or not at all, 0600)."""
    path = directory / CHECK_REPORT
    data = json.dumps(check_to_dict(check), ensure_ascii=False, indent=2) + "\n"
    atomic_write(path, data.encode("utf-8"))
    return path
