"""mbox store: one mboxrd file per folder, ``<folder>.mbox``, children in a
directory of the folder's name beside it.

We append with our own code, not `mailbox.mbox` (it rescans the whole file
on first use, quadratic over a mailbox's life), under an OS lock (POSIX) so a
mail client reading the file never sees half an entry.  The state records each
entry's offset and length and the file's committed length: after a crash
the file is cut back to that length, keeping whole pending entries.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from mailbackup.errors import StorageError
from mailbackup.i18n import _
from mailbackup.model import StoredMessage
from mailbackup.store import mboxrd
from mailbackup.store.base import Absent, Inventory, MailStore, Recovery
from mailbackup.store.body import CHUNK, MessageBody
from mailbackup.store.files import make_private_dirs
from mailbackup.store.guarded import NOFOLLOW, DamagedCopy, create_private, open_regular, remove, rename
from mailbackup.text import system_error

MBOX_SUFFIX = ".mbox"
LONG_LINE = 1 << 20


class MboxStore(MailStore):
    format = "mbox"

    def mbox_path(self, local_path: str) -> Path:
        base = self.resolve(local_path)
        return base.with_name(base.name + MBOX_SUFFIX)

    def prepare(self, local_path: str) -> None:
        path = self.mbox_path(local_path)
        make_private_dirs(path.parent)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | NOFOLLOW, 0o600))

    def plan(self, local_path: str, messages: list[StoredMessage]) -> list[StoredMessage]:
        return messages  # offsets are known only once written, in pending order

    def write(self, local_path: str, items: list[tuple[StoredMessage, MessageBody]],
              committed: int) -> list[StoredMessage]:
        path = self.mbox_path(local_path)
        stored = []
        try:
            with open_regular(path, write=True, root=self.mail_root) as handle, _locked(handle):
                handle.truncate(committed)  # drop anything past the last commit
                handle.seek(committed)
                offset = committed
                for message, body in items:
                    length = _write_entry(handle, message, body)
                    stored.append(replace(message, mbox_offset=offset, mbox_length=length))
                    offset += length
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            _truncate_quietly(path, committed, self.mail_root)
            raise StorageError(_("cannot write {path}: {error}").format(path=path, error=system_error(exc))) \
                from None
        return stored

    def recover(self, local_path: str, pending: list[StoredMessage], committed: int) -> Recovery:
        path = self.mbox_path(local_path)
        completed: list[StoredMessage] = []
        if not path.exists():
            return Recovery(completed=[], mbox_committed=0)
        with open_regular(path, write=True, root=self.mail_root) as handle, _locked(handle):
            end = handle.seek(0, os.SEEK_END)
            if end < committed:  # damaged from outside: never pad it; the engine re-fetches what is lost
                return Recovery(completed=[], shorter_than_committed=end)
            if end > committed and not pending:
                # Every write is announced in `pending` first, so these bytes are not ours to cut:
                # mail archived under a state file that was moved aside, replaced or restored.
                raise StorageError(
                    _("{path} holds {count} bytes of mail its state file does not know of; refusing to cut them off")
                    .format(path=path, count=end - committed),
                    hint=_("put back the state file that belongs to this archive, or back up into another --dest "
                           "(only if those bytes are debris: cut the file back to {size} bytes)").format(
                        size=committed))
            offset = committed
            for message in pending:
                length = _entry_length_at(handle, offset, end)
                if length is None or not _entry_matches(handle, offset, length, message):
                    break
                completed.append(replace(message, mbox_offset=offset, mbox_length=length))
                offset += length
            handle.truncate(offset)
            handle.flush()
            os.fsync(handle.fileno())
        return Recovery(completed=completed, mbox_committed=offset)

    def discard(self, local_path: str, damaged: list[StoredMessage],
                kept: list[StoredMessage]) -> list[StoredMessage] | None:
        """Rewrite the folder file with only the good entries, into ``.mbox.new``.

        The caller commits the new offsets, then calls `settle_rewrite()`; a
        crash in between is settled by `recover()`: the state is the judge."""
        path = self.mbox_path(local_path)
        rewritten = []
        offset = 0
        with open_regular(path, root=self.mail_root) as source, \
                create_private(self._new_path(local_path), self.mail_root) as target:
            for message in sorted(kept, key=lambda m: m.mbox_offset or 0):
                assert message.mbox_offset is not None and message.mbox_length is not None
                source.seek(message.mbox_offset)
                target.write(source.read(message.mbox_length))
                rewritten.append(replace(message, mbox_offset=offset))
                offset += message.mbox_length
            target.flush()
            os.fsync(target.fileno())
        return rewritten

    def settle_rewrite(self, local_path: str, *, committed: bool) -> None:
        new = self._new_path(local_path)
        if new.exists():
            if committed:
                rename(new, self.mbox_path(local_path), self.mail_root)
            else:
                remove(new, self.mail_root)

    def _new_path(self, local_path: str) -> Path:
        path = self.mbox_path(local_path)
        return path.with_name(path.name + ".new")

    def cut_back(self, local_path: str, length: int) -> None:
        path = self.mbox_path(local_path)
        with open_regular(path, write=True, root=self.mail_root) as handle, _locked(handle):
            if handle.seek(0, os.SEEK_END) > length:
                handle.truncate(length)
                os.fsync(handle.fileno())

    def inventory(self, local_path: str, messages: list[StoredMessage], *, committed: int,
                  deep: bool = False) -> Inventory:
        """Which recorded entries lie inside the file; `deep`, also whether the
        file parses into exactly the recorded entries."""
        path = self.mbox_path(local_path)
        found = Inventory()
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if messages:
                found.problems.append(_("mbox file {name} is missing").format(name=path.name))
            for message in messages:
                found.absent[(message.uidvalidity, message.uid)] = Absent("missing", _("mbox file not found"))
            return found
        if size < committed:
            found.problems.append(_("mbox file is cut off: {size} bytes where {saved} were saved").format(
                size=size, saved=committed))
        elif size > committed:
            found.warnings.append(_("{count} bytes after the last saved message (left by an interrupted backup; "
                                    "the next backup removes them)").format(count=size - committed))
        for message in messages:
            place = _place_problem(message, size)
            if place is not None:
                found.absent[(message.uidvalidity, message.uid)] = place
        if deep:
            found.problems.extend(_mbox_structure(path, min(size, committed), messages))
        return found

    def set_flags(self, local_path: str, message: StoredMessage, flags: tuple[str, ...]) -> StoredMessage:
        return replace(message, flags=flags)  # an mbox keeps flags only in the state

    def read(self, local_path: str, message: StoredMessage) -> bytes:
        with open_regular(self.mbox_path(local_path), root=self.mail_root) as handle:
            return _read_body(handle, message)

    def iter_chunks(self, local_path: str, message: StoredMessage) -> Iterator[bytes]:
        # Entries are unquoted whole; bounded by the largest message, which the
        # engine already holds at most once in memory.
        body = self.read(local_path, message)
        for start in range(0, len(body), CHUNK):
            yield body[start:start + CHUNK]
        if not body:
            yield b""


def _place_problem(message: StoredMessage, size: int) -> Absent | None:
    """Why the entry the state records is not inside a file of `size` bytes, if it is not."""
    offset, length = message.mbox_offset, message.mbox_length
    if offset is None or length is None:
        return Absent("corrupt", _("no place in the mbox recorded"))
    if offset >= size:
        return Absent("missing", _("the mbox file ends before it"))
    if offset + length > size:
        return Absent("corrupt", _("the mbox file ends inside it"))
    return None


def _mbox_structure(path: Path, committed: int, messages: Iterable[StoredMessage]) -> list[str]:
    """Differences between the entries the file parses into (up to the saved
    length) and the spans the state records."""
    recorded = {(m.mbox_offset, m.mbox_length) for m in messages if m.mbox_offset is not None}
    try:
        with open_regular(path) as handle:
            parsed = {(span.offset, span.length) for span in mboxrd.iter_entries(handle)
                      if span.offset < committed}
    except ValueError as exc:
        return [_("mbox file cannot be parsed: {error}").format(error=exc)]
    except OSError as exc:
        return [_("mbox file cannot be read: {error}").format(error=system_error(exc))]
    # The last entry before an uncommitted tail runs on into it when parsed.
    parsed = {(offset, min(length, committed - offset)) for offset, length in parsed}
    problems = []
    if len(parsed) != len(recorded):
        problems.append(_("mbox holds {count} messages where the state records {recorded}").format(
            count=len(parsed), recorded=len(recorded)))
    unexpected = sorted(parsed - recorded)
    if unexpected:
        shown = ", ".join(str(offset) for offset, _length in unexpected[:10])
        problems.append(_("{count} mbox entries not where the state records any (at byte {offsets})").format(
            count=len(unexpected), offsets=shown))
    unmatched = len(recorded - parsed)
    if unmatched:
        problems.append(_("{count} recorded messages do not parse as one entry at their recorded place").format(
            count=unmatched))
    return problems


def _read_body(handle: BinaryIO, message: StoredMessage) -> bytes:
    offset, length = message.mbox_offset, message.mbox_length
    if offset is None or length is None:
        raise ValueError(f"UID {message.uid} has no recorded place in the mbox")
    # Checked before reading: an edited length must not make us read (or allocate) gigabytes.
    if offset < 0 or length < 0 or offset + length > os.fstat(handle.fileno()).st_size:
        raise DamagedCopy(_("the recorded place of UID {uid} (byte {offset}, {length} bytes) is not inside the "
                            "mbox file").format(uid=message.uid, offset=offset, length=length))
    handle.seek(offset)
    data = handle.read(length)
    if len(data) != length:
        raise ValueError(f"mbox is shorter than the entry of UID {message.uid}")
    return mboxrd.body_from_entry(data, message.size)


def _write_entry(handle: BinaryIO, message: StoredMessage, body: MessageBody) -> int:
    written = handle.write(mboxrd.from_line(message.sender, message.internaldate))
    last = b""
    for piece in quote_stream(body.chunks()):
        if piece:
            written += handle.write(piece)
            last = piece
    tail = b"\n" if last.endswith(b"\n") else b"\n\n"
    return written + handle.write(tail)


def quote_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """mboxrd-quote a body arriving in chunks, holding at most about one line.

    Buffers handed to `mboxrd.quote` always begin at a line start; a line
    longer than LONG_LINE is passed through in pieces once its start is known
    not to be a ``>*From `` line."""
    carry = b""
    inside_line = False  # the next byte continues a line already emitted
    for chunk in chunks:
        data = carry + chunk
        carry = b""
        if inside_line:
            newline = data.find(b"\n")
            if newline < 0:
                yield data
                continue
            yield data[: newline + 1]
            data = data[newline + 1:]
            inside_line = False
        cut = data.rfind(b"\n")
        if cut >= 0:
            yield mboxrd.quote(data[: cut + 1])
            data = data[cut + 1:]
        # Past LONG_LINE the line may go out in pieces, but only once its start
        # is known: a run of ">" followed by part of "From " may still become a
        # line that needs quoting.
        start = data.lstrip(b">")[:5]
        if len(data) > LONG_LINE and (len(start) == 5 or not b"From ".startswith(start)):
            yield mboxrd.quote(data)
            inside_line = True
        else:
            carry = data
    if carry:
        yield carry if inside_line else mboxrd.quote(carry)


def _entry_length_at(handle: BinaryIO, offset: int, end: int) -> int | None:
    """Length of the entry starting at `offset`: up to the next ``\\nFrom `` or EOF."""
    if offset >= end:
        return None
    handle.seek(offset)
    if handle.read(5) != b"From ":
        return None
    position = offset + 5
    tail = b""
    while position < end:
        handle.seek(position)
        block = handle.read(CHUNK)
        found = (tail + block).find(b"\nFrom ")
        if found >= 0:
            return position - len(tail) + found + 1 - offset
        tail = block[-5:]
        position += len(block)
    return end - offset


def _entry_matches(handle: BinaryIO, offset: int, length: int, message: StoredMessage) -> bool:
    probe = replace(message, mbox_offset=offset, mbox_length=length)
    try:
        body = _read_body(handle, probe)
    except ValueError:
        return False
    return len(body) == message.size and hashlib.sha256(body).hexdigest() == message.sha256


def _truncate_quietly(path: Path, length: int, root: Path) -> None:
    try:
        with open_regular(path, write=True, root=root) as handle:
            handle.truncate(length)
    except (OSError, ValueError):
        pass  # the next run's recovery cuts the file back to the committed length


class _locked:
    """An exclusive OS lock on the mbox while we write (fcntl).  None on Windows:
    there the archive lock alone keeps other writers out."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def __enter__(self) -> None:
        if sys.platform == "win32":
            return  # Windows locks byte ranges; the archive lock already excludes other writers
        import fcntl

        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
