"""What a verification finds, as data: one `VerifyResult` per account with
a `FolderReport` per folder, and the exit code it means.

Public API: the enums `Status` and `Mode`; the dataclasses `Staff`, `MessageEntry`,
`FolderReport`, `Totals`, `VerifyResult` and `VerifyOptions`; `exit_code(result)`;
`failed_result(options, error)`, the result written when the server could
not be reached.  check.py fills these in; report.py and summary.py write them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from mailbackup import __version__
from mailbackup.config import AccountSettings
from mailbackup.errors import ExitCode
from mailbackup.model import StoredMessage


class Status(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    CORRUPT = "corrupt"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # the server's answers contradicted each other: neither complete nor not


class Mode(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Staff:
    """Whose mailbox it is, as the config's staff details say (all optional)."""

    title: str | None = None
    name: str | None = None
    surname: str | None = None
    position: str | None = None
    unit: str | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> Staff:
        """From a config's metadata or a report's ``staff`` object; other keys and empty values are dropped."""
        values = values or {}
        return cls(**{item.name: str(values[item.name]) for item in fields(cls) if values.get(item.name)})

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @property
    def is_empty(self) -> bool:
        return not any(self.to_dict().values())

    @property
    def full_name(self) -> str:
        """นาย สมชาย ใจดี: Thai writes the title joined to the name (นายสมชาย) but
        the config may hold either form, so the parts are kept as given."""
        return " ".join(part for part in (self.title, self.name, self.surname) if part)


@dataclass(frozen=True)
class MessageEntry:
    """One message worth naming in a report (missing, corrupt, ...)."""

    uid: int
    uidvalidity: int | None
    size: int | None  # the server's size when known, else the recorded one
    message_id: str | None = None
    subject: str | None = None
    date: str | None = None  # INTERNALDATE, ISO 8601
    reason: str | None = None
    local_size: int | None = None  # size mismatch: the size recorded in the archive

    @classmethod
    def from_stored(cls, message: StoredMessage, reason: str | None, *, size: int | None = None,
                    local_size: int | None = None) -> MessageEntry:
        """An archived message, by what the state recorded when it was saved."""
        return cls(
            uid=message.uid, uidvalidity=message.uidvalidity, size=message.size if size is None else size,
            message_id=message.message_id, subject=message.subject, date=message.internaldate.isoformat(),
            reason=reason, local_size=local_size,
        )


@dataclass
class FolderReport:
    name: str
    status: Status = Status.COMPLETE
    server_messages: int | None = None  # None: not compared with a server
    local_messages: int = 0
    ok: int = 0
    missing: list[MessageEntry] = field(default_factory=list)
    corrupt: list[MessageEntry] = field(default_factory=list)
    size_mismatch: list[MessageEntry] = field(default_factory=list)
    only_local: list[MessageEntry] = field(default_factory=list)
    bytes: int = 0  # archived bytes of this folder
    checked: int = 0  # messages hashed in this run
    # written by this same run's backup: checked by place, kind and size against the hash taken at download
    checked_at_download: int = 0
    bytes_checked: int = 0
    skipped_recent: int = 0  # verified within max_age: not hashed again
    compared_by_content: int = 0  # sizes differed (server estimate), BODY[] hashed equal (verify/content.py)
    problems: list[str] = field(default_factory=list)  # damage to the folder's files as a whole
    stray_files: list[str] = field(default_factory=list)  # files the state does not know
    warnings: list[str] = field(default_factory=list)  # worth a look; exit code 1
    notes: list[str] = field(default_factory=list)  # for information only
    error: str | None = None  # the server would not let us read this folder
    # The server's answers on what this folder holds disagreed: the numbers each gave.
    contradiction: str | None = None

    def settle_status(self) -> Status:
        if self.error:
            self.status = Status.FAILED
        elif self.corrupt or self.problems:
            self.status = Status.CORRUPT
        elif self.contradiction:
            self.status = Status.INCONCLUSIVE
        elif self.missing or self.size_mismatch:
            self.status = Status.INCOMPLETE
        else:
            self.status = Status.COMPLETE
        return self.status

    @property
    def intact(self) -> int:
        """Archived copies found whole: every record that is neither missing
        its file nor corrupt (a size mismatch is the server's copy differing)."""
        return self.ok + len(self.size_mismatch) + len(self.only_local)


@dataclass(frozen=True)
class Totals:
    server_messages: int | None
    local_messages: int  # the archive's records
    intact: int  # of those, copies found whole
    ok: int
    missing: int
    corrupt: int
    size_mismatch: int
    only_local: int
    bytes: int
    checked: int
    bytes_checked: int
    skipped_recent: int
    stray_files: int
    checked_at_download: int


@dataclass
class VerifyResult:
    account: str
    server: str
    mode: Mode
    generated_at: datetime  # when the verification ran (aware, local time)
    folders: list[FolderReport] = field(default_factory=list)
    deadline: date | None = None
    tool_version: str = __version__
    error: str | None = None  # set only when the whole verification failed
    seconds: float = 0.0
    staff: Staff = field(default_factory=Staff)

    @property
    def status(self) -> Status:
        if self.error:
            return Status.FAILED
        statuses = {folder.status for folder in self.folders}
        if Status.CORRUPT in statuses:
            return Status.CORRUPT
        if Status.INCONCLUSIVE in statuses:
            return Status.INCONCLUSIVE
        if statuses & {Status.INCOMPLETE, Status.FAILED}:
            return Status.INCOMPLETE
        return Status.COMPLETE

    @property
    def has_warnings(self) -> bool:
        return any(folder.warnings or folder.stray_files for folder in self.folders)

    @property
    def totals(self) -> Totals:
        folders = self.folders
        known = [folder.server_messages for folder in folders if folder.server_messages is not None]
        return Totals(
            server_messages=sum(known) if self.mode is Mode.ONLINE and not self.error else None,
            local_messages=sum(f.local_messages for f in folders), intact=sum(f.intact for f in folders),
            ok=sum(f.ok for f in folders),
            missing=sum(len(f.missing) for f in folders), corrupt=sum(len(f.corrupt) for f in folders),
            size_mismatch=sum(len(f.size_mismatch) for f in folders),
            only_local=sum(len(f.only_local) for f in folders), bytes=sum(f.bytes for f in folders),
            checked=sum(f.checked for f in folders), bytes_checked=sum(f.bytes_checked for f in folders),
            skipped_recent=sum(f.skipped_recent for f in folders),
            stray_files=sum(len(f.stray_files) for f in folders),
            checked_at_download=sum(f.checked_at_download for f in folders),
        )


@dataclass(frozen=True)
class VerifyOptions:
    account: str
    server: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    deadline: date | None = None
    max_age: timedelta | None = None  # skip files verified more recently than this
    staff: Staff = field(default_factory=Staff)  # from the config; empty: the archive's remembered ones
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())

    @classmethod
    def for_account(cls, settings: AccountSettings, max_age: timedelta | None = None) -> VerifyOptions:
        """The account's folders, server and deadline, as configured."""
        return cls(account=settings.account, server=str(settings.connection.server), include=settings.include,
                   exclude=settings.exclude, deadline=settings.deadline, max_age=max_age,
                   staff=Staff.from_mapping(settings.metadata))


def exit_code(result: VerifyResult) -> ExitCode:
    """0 complete, 1 incomplete (or complete with warnings), 10 inconclusive,
    8 corrupt.  A failed verification carries its error's own code, which the
    caller knows."""
    status = result.status
    if status is Status.CORRUPT:
        return ExitCode.CORRUPT
    if status is Status.INCONCLUSIVE:
        return ExitCode.INCONCLUSIVE
    if status is Status.FAILED:
        return ExitCode.CONNECTION
    if status is Status.INCOMPLETE or result.has_warnings:
        return ExitCode.WARNINGS
    return ExitCode.OK


def failed_result(options: VerifyOptions, error: str) -> VerifyResult:
    return VerifyResult(account=options.account, server=options.server, mode=Mode.ONLINE,
                        generated_at=options.clock(), deadline=options.deadline, error=error)
