"""One account's IMAP session: the folder and message operations the sync
engine needs, returning our dataclasses, never imapclient's bytes-keyed dicts.

Every call goes through `translate_errors`, so callers only ever see
MailbackupError subclasses; a `ConnectionLost` means: call `reconnect()`,
re-select, and try again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import imapclient

from mailbackup.errors import ConnectionLost, FolderError, MailbackupError, ServerBusy, ServerError
from mailbackup.i18n import _
from mailbackup.imap import wire
from mailbackup.imap.answers import (
    flags_of,
    folder_infos,
    folder_status,
    listed_statuses,
    metas_of,
    optional_int,
    selected_folder,
    text_of,
)
from mailbackup.imap.connect import close_quietly, login, open_client, settle, translate_errors
from mailbackup.imap.lexer import ResponseTooLarge
from mailbackup.imap.listlines import common_entries
from mailbackup.imap.opening import Ahead, FirstBodies, Opening, discard, discard_rows, read_rows, refusal, send_opening
from mailbackup.imap.pipeline import BatchResult, FetchPipeline, PipelinedCommandRefused
from mailbackup.imap.pushback import busy_error
from mailbackup.imap.redact import Redaction, watch_logs
from mailbackup.imap.searchlines import uid_search
from mailbackup.imap.spares import Spares
from mailbackup.imap.statuses import StatusRead, pipelined_statuses, wire_names
from mailbackup.imap.uidset import to_sequence_set
from mailbackup.model import (
    ConnectionSettings,
    FolderInfo,
    FolderStatus,
    MessageMeta,
    SelectedFolder,
)
from mailbackup.uids import SortedUids

log = logging.getLogger(__name__)


class ImapSession:
    def __init__(self, settings: ConnectionSettings, account: str, password: str | Callable[[], str]) -> None:
        """`password` may be a function: it is called once, after the server is
        reached and the channel secured, so a mistyped or unreachable server is
        reported before anybody is asked for a password."""
        self.settings = settings
        self.account = account
        self._password_source = password
        self._password: str | None = None
        self._redaction = Redaction.of(account, "")
        if isinstance(password, str):
            self._learn_password(password)
        self._client: imapclient.IMAPClient | None = None
        self.compressed = False
        self.login_seconds: float | None = None  # the last login's round trip, the server's own time included
        self.selected: str | None = None
        # The selected folder's message count: EXAMINE's EXISTS, then each untagged EXISTS since.
        self.exists = 0
        # Names from LIST that cannot be sent back as the server sent them: name → raw bytes.
        self.unusable_names: dict[str, bytes] = {}
        # The server mishandles pipelined commands (pipeline.py): one command in flight from then on,
        # across reconnects; the sync layer keeps it in the state for later runs.
        self.one_command_at_a_time = False
        self._first_bodies: BatchResult | None = None  # fetched with a listing, for the next stream_bodies
        self._ahead: deque[Opening] = deque()  # the next folders' openings, sent, their answers not read yet
        self._uidvalidity = 0  # of the selected folder, as its EXAMINE said
        self._spares: Spares | None = None  # channels opened ahead for this session's siblings
        self._opened: imapclient.IMAPClient | None = None  # one of them, for this session's next connect

    # -- connection ---------------------------------------------------
    def _learn_password(self, password: str) -> str:
        self._password = password
        self._redaction = Redaction.of(self.account, password)
        watch_logs(self._redaction)
        return password

    def _password_now(self) -> str:
        if self._password is not None:
            return self._password
        source = self._password_source
        return self._learn_password(source if isinstance(source, str) else source())

    def connect(self, *, spares: int = 0) -> ImapSession:
        """`spares`: open that many channels for `sibling()` meanwhile (imap/spares.py)."""
        if spares and self._spares is None:
            self._spares = Spares(partial(open_client, self.settings), spares)
        client, self._opened = self._opened, None
        try:
            client = client or open_client(self.settings, connected=self._spares.start if self._spares else None)
            self.login_seconds = login(client, self.settings, self.account, self._password_now())
            self.compressed = settle(client, self.settings, self._redaction)
        except BaseException as exc:
            if client is not None:
                close_quietly(client)
            self.release_spares()
            if isinstance(exc, MailbackupError):
                exc.message = self._redaction.message(exc.message)  # in whatever our words wrapped it
                exc.args = (exc.message,)
            raise
        self._client = client
        self.selected = None
        return self

    def translated(self) -> contextlib.AbstractContextManager[None]:
        """`translate_errors` for this session: the password masked in whatever the server says."""
        return translate_errors(self.settings, redaction=self._redaction)

    def sibling(self) -> ImapSession:
        """Another session of this account, not yet connected (--connections):
        what this one learnt about the server's habits comes along."""
        other = ImapSession(self.settings, self.account, self._password_now())
        other.one_command_at_a_time = self.one_command_at_a_time
        other.unusable_names = self.unusable_names
        other._opened = self._spares.take() if self._spares is not None else None
        return other

    def release_spares(self) -> None:
        """Close the channels opened ahead that no sibling took."""
        spares, self._spares = self._spares, None
        if spares is not None:
            spares.close(close_quietly)

    def reconnect(self) -> None:
        self.close(logout=False)
        self.connect()

    def close(self, *, logout: bool = True) -> None:
        self.drop_first_bodies()
        self._ahead.clear()  # their answers go with the connection
        self.release_spares()
        client, self._client = self._client, None
        if client is not None:
            close_quietly(client, logout=logout)

    def __enter__(self) -> ImapSession:
        return self.connect() if self._client is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> imapclient.IMAPClient:
        """The connection, its answers all read: a folder opened ahead that
        another question overtook is let go first (`_abandon_ahead`)."""
        client = self._connected()
        if self._ahead:
            self._abandon_ahead(client)
        return client

    def _connected(self) -> imapclient.IMAPClient:
        if self._client is None:
            raise RuntimeError("IMAP session used before connect()")
        return self._client

    def has_capability(self, name: str) -> bool:
        with self.translated():
            return bool(self.client.has_capability(name))

    @property
    def condstore(self) -> bool:
        return self.has_capability("CONDSTORE") or self.has_capability("QRESYNC")

    # -- folders ------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        with self.translated():
            return self._folder_infos(self._listed)

    def _listed(self) -> list[tuple[Any, Any, Any]]:
        client = self.client
        wire.pop_untagged(client, "LIST")
        typ, _data = wire.simple_command(client, "LIST", '""', '"*"')
        if typ != "OK":  # refused: asked again through imapclient, which reports it as for any command
            return list(client.list_folders())
        listed = wire.pop_untagged(client, "LIST")
        return common_entries(listed) or wire.folder_list(client, listed)

    def list_with_status(self) -> tuple[list[FolderInfo], dict[str, FolderStatus]]:
        """Every folder, and in the same round trip the status of each, where the
        server offers LIST-STATUS (RFC 5819).  Without it, or when its answer
        cannot be used, no statuses: the caller asks folder by folder."""
        if not self.has_capability("LIST-STATUS"):
            return self.list_folders(), {}
        client = self.client
        for kind in ("LIST", "STATUS"):
            wire.pop_untagged(client, kind)
        try:
            with self.translated():
                typ, data = wire.simple_command(client, "LIST", '""', '"*"', "RETURN",
                                                "(STATUS (" + " ".join(self._status_items()) + "))")
        except (ServerBusy, ResponseTooLarge):
            raise
        except ServerError as exc:  # advertised, then refused: the plain way
            log.debug("LIST-STATUS refused (%s); listing without it", exc.message)
            return self.list_folders(), {}
        if typ != "OK":
            log.debug("LIST-STATUS answered %s %r; listing without it", typ, data)
            return self.list_folders(), {}
        listed = wire.pop_untagged(client, "LIST")
        statuses = wire.pop_untagged(client, "STATUS")
        with self.translated():
            folders = self._folder_infos(lambda: wire.folder_list(client, listed))
        return folders, listed_statuses(statuses)

    def _folder_infos(self, read: Callable[[], list[tuple[Any, Any, Any]]]) -> list[FolderInfo]:
        client = self.client
        client.folder_encode = False  # raw names: decoded below, where a bad one is caught
        try:
            entries = read()
        except (ValueError, TypeError):  # imapclient unpacks entries without checking them
            raise ServerError(_("{server} sent a malformed LIST response").format(server=self.settings.server)) \
                from None
        finally:
            client.folder_encode = True
        folders, self.unusable_names = folder_infos(entries)
        return folders

    def _check_usable(self, name: str) -> None:
        raw = self.unusable_names.get(name)
        if raw is not None:
            raise FolderError(_("the server sent the folder name {raw!r}, which is not modified UTF-7 "
                                "(RFC 3501 5.1.3): it cannot be named back to the server; skipped").format(raw=raw))

    def _status_items(self) -> list[str]:
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if self.condstore:
            items.append("HIGHESTMODSEQ")
        if self.has_capability("STATUS=SIZE"):
            items.append("SIZE")
        return items

    def statuses(self, names: Iterable[str]) -> dict[str, FolderStatus]:
        """Each folder's status, several STATUS in flight (imap/statuses.py). Best effort: a folder left
        out is asked alone by `status`; a broken connection is shut, so that ask reconnects first."""
        wanted = wire_names(names, self.unusable_names)
        if not wanted or self.one_command_at_a_time:
            return {}
        client = self.client
        read = StatusRead()
        try:
            with self.translated():
                pipelined_statuses(*wire.stream_of(client), wanted, self._status_items(),
                                   wire.progress_of(client), read)
        except ServerBusy:
            raise
        except (ConnectionLost, ServerError) as exc:  # a flood, a broken line: nothing after it is trusted
            log.debug("pipelined STATUS stopped (%s); asking the rest one by one", exc.message)
            with contextlib.suppress(Exception):
                client.shutdown()
        if read.pipelining_refused:
            log.info("the server mishandled a pipelined STATUS; one command at a time from now on")
            self.one_command_at_a_time = True
        result = {}
        for name, values in read.values.items():
            with contextlib.suppress(ValueError, TypeError):  # unusable: asked again alone, reported there
                result[name] = folder_status(name, values)
        return result

    def status(self, name: str) -> FolderStatus:
        self._check_usable(name)
        try:
            with self.translated():
                data = self.client.folder_status(name, self._status_items())
        except ServerBusy:
            raise  # pushback is waited out by the caller, not a broken folder
        except ServerError as exc:
            raise FolderError(_("cannot read status of folder {folder!r}: {error}").format(
                folder=name, error=exc.message)) from None
        try:
            return folder_status(name, {text_of(key).upper(): value for key, value in data.items()})
        except (ValueError, TypeError):
            raise FolderError(_("the server's STATUS answer for folder {folder!r} is unusable: {answer!r:.200}")
                              .format(folder=name, answer=data)) from None

    def examine(self, name: str) -> SelectedFolder:
        """Select read-only (EXAMINE): a backup must never change the server."""
        self._check_usable(name)
        self.drop_first_bodies()
        return self._select(self.client, name)

    def _select(self, client: imapclient.IMAPClient, name: str) -> SelectedFolder:
        try:
            with self.translated():
                response = client.select_folder(name, readonly=True)
        except ServerBusy:
            raise  # pushback is waited out by the caller, not a broken folder
        except ServerError as exc:
            raise FolderError(_("cannot open folder {folder!r}: {error}").format(folder=name, error=exc.message)) \
                from None
        self.selected = name
        selected = selected_folder(name, response)
        self.exists, self._uidvalidity = selected.exists, selected.uidvalidity
        with self.translated():
            wire.pop_untagged(client, "EXISTS")  # EXAMINE's own: counted above
        return selected

    def examine_listing(self, name: str, first_bodies: FirstBodies | None = None,
                        then: Sequence[Ahead] = ()) -> tuple[SelectedFolder, list[MessageMeta]]:
        """EXAMINE with the UID, size, flags and date of every message (and with
        `first_bodies`, the whole messages, held for the `stream_bodies` that
        asks for exactly them) in one round trip; the openings of the folders
        `then` expected next go out behind it (opening.py)."""
        self._check_usable(name)
        self.drop_first_bodies()
        if self.one_command_at_a_time:
            return self.examine(name), self.fetch_meta("1:*")
        ahead = self._ahead
        if ahead and ahead[0].is_for(name, first_bodies):
            opening, client = ahead.popleft(), self._connected()  # its answers are the next on the connection
        else:
            opening, client = None, self.client  # any other folder's opening is let go
        with self.translated():
            opening = opening or send_opening(client, name, first_bodies)
            sent = [(each.name, each.first_bodies) for each in ahead]
            if list(then[:len(sent)]) == sent:
                ahead.extend(send_opening(client, *more) for more in then[len(sent):]
                             if more[0] not in self.unusable_names)
            try:
                return self._read_opening(client, opening)
            finally:  # e.g. an EXAMINE sent behind it answered before it: one command at a time from now on
                self._note_pipelining(opening.reader)

    def _read_opening(self, client: imapclient.IMAPClient, opening: Opening
                      ) -> tuple[SelectedFolder, list[MessageMeta]]:
        name = opening.name
        typ, data = wire.complete_examine(client, opening.examine_tag)
        if typ != "OK":
            wire.mark_selected(client, False)
            self.selected = None
            discard_rows(opening)
            reply = refusal(typ, data)
            raise busy_error(str(self.settings.server), reply) or FolderError(
                _("cannot open folder {folder!r}: {error}").format(folder=name, error=reply))
        self.selected = name
        selected = selected_folder(name, wire.mark_selected(client, True))
        self.exists, self._uidvalidity = selected.exists, selected.uidvalidity
        try:
            rows, self._first_bodies = read_rows(opening)
        except PipelinedCommandRefused as exc:
            # Sent before EXAMINE was answered, refused; the same FETCH alone is fine on such a server.
            log.info("FETCH sent with EXAMINE refused (%s); one command at a time from now on", exc.message)
            self.one_command_at_a_time = True
            return selected, self.fetch_meta("1:*")
        self.note_exists(opening.reader.exists_seen)
        return selected, metas_of(rows, None)

    def _abandon_ahead(self, client: imapclient.IMAPClient) -> None:
        """Another question came first: the openings sent ahead are read and let
        go, and the folder selected before is selected again."""
        readers = [opening.reader for opening in self._ahead]
        try:
            with self.translated():
                opened, refusals = discard(client, self._ahead)
                wire.mark_selected(client, opened)
        finally:  # answers out of order: the server mishandles pipelined commands
            self.one_command_at_a_time |= any(reader.pipelining_refused for reader in readers)
        before, validity, self.selected = self.selected, self._uidvalidity, None
        if before is not None and self._select(client, before).uidvalidity != validity:
            self.selected = None  # UIDs asked for now would name other messages
            raise FolderError(_("folder {folder!r} was replaced on the server while it was read (its UIDVALIDITY "
                                "changed); it is read again next run").format(folder=before))
        if busy := next(filter(None, (busy_error(str(self.settings.server), reply) for reply in refusals)), None):
            raise busy  # a "not now" to a folder opened ahead is waited out like any other

    @property
    def holds_first_bodies(self) -> bool:
        """Bodies fetched with the listing wait for `stream_bodies` (the whole folder, as one batch)."""
        return self._first_bodies is not None

    def drop_first_bodies(self) -> None:
        """Let go of bodies fetched with the listing that nobody asked for."""
        batch, self._first_bodies = self._first_bodies, None
        if batch is not None:
            for message in batch.messages:
                message.body.discard()

    # -- messages -----------------------------------------------------
    def search_uids(self, first_uid: int = 1, *, every: bool = False) -> SortedUids:
        """`UID SEARCH UID n:*`, filtered (`n:*` also matches the highest UID
        below n, RFC 3501 §6.4.8); with `every`, `UID SEARCH ALL`, the other way
        to ask a server whose first answer contradicts EXISTS (mailutils 3.15)."""
        with self.translated():
            found, exists = uid_search(self.client, "ALL") if every else \
                uid_search(self.client, "UID", f"{first_uid}:*")
        self.note_exists(exists)
        return found.from_uid(first_uid)

    def fetch_meta_by_sequence(self) -> list[MessageMeta]:
        """`FETCH 1:* (UID RFC822.SIZE ...)` by message sequence numbers: every
        message EXISTS counts, whatever the server's UID index says."""
        reader = FetchPipeline(*wire.stream_of(self.client), spool_dir=None, spool_above=1 << 16)
        with self.translated():
            rows = reader.fetch_meta("1:*", by_sequence=True)
        self.note_exists(reader.exists_seen)
        return metas_of(rows, None)

    def note_exists(self, seen: int | None = None) -> None:
        """Keep the latest EXISTS: one read off the stream (`seen`), or the last
        imapclient kept among the untagged answers since (an APPEND's, a SEARCH's;
        only what was read already: the answers of folders opened ahead wait)."""
        if seen is None and self._client is not None:
            updates = wire.pop_untagged(self._client, "EXISTS")
            try:
                seen = optional_int(updates[-1]) if updates else None
            except ValueError:  # not a number: the count we had stands
                seen = None
        if seen is not None:
            self.exists = seen

    def fetch_meta(self, uids: Iterable[int] | str) -> list[MessageMeta]:
        """Size, flags and INTERNALDATE of each message, without its body."""
        wanted: set[int] | None = None
        if isinstance(uids, str):
            sequence = uids
        else:
            wanted = set(uids)
            if not wanted:
                return []
            sequence = to_sequence_set(wanted)
        reader = FetchPipeline(*wire.stream_of(self.client), spool_dir=None, spool_above=1 << 16,
                                 progress=wire.progress_of(self.client))
        with self.translated():
            rows = reader.fetch_meta(sequence)
        self.note_exists(reader.exists_seen)
        return metas_of(rows, wanted)

    def fetch_flags(self, uid_range: str, changed_since: int | None = None) -> dict[int, tuple[str, ...]]:
        modifiers = [f"CHANGEDSINCE {changed_since}"] if changed_since is not None else None
        rows = self._fetch(uid_range, ("UID", "FLAGS"), modifiers)
        return {uid: flags_of(data) for uid, data in rows.items() if b"FLAGS" in data}

    def stream_bodies(self, batches: Iterable[list[int]], *, spool_dir: Path, spool_above: int,
                      depth: int = 3) -> Generator[BatchResult, None, None]:
        """Whole messages, batch by batch, with `depth` FETCH commands in flight
        (see pipeline.py); bodies above `spool_above` bytes go to files.  A first
        batch fetched with the listing (`examine_listing`) is not asked again."""
        batches = iter(batches)  # taken one at a time as FETCHes go out: another connection may take the rest
        head, first = next(batches, None), self._first_bodies
        if first is not None and head is not None and sorted(head) == first.uids:
            self._first_bodies = None
            yield first
            head = next(batches, None)
        self.drop_first_bodies()
        if head is None:  # nothing (more) to ask: the connection is not touched (a folder opened ahead waits)
            return
        batches = itertools.chain([head], batches)
        pipeline = FetchPipeline(*wire.stream_of(self.client), spool_dir=spool_dir, spool_above=spool_above,
                                 depth=1 if self.one_command_at_a_time else depth,
                                 progress=wire.progress_of(self.client))
        try:
            with self.translated():
                for result in pipeline.run(batches):
                    self._note_pipelining(pipeline)
                    yield result
        finally:  # also when the pipeline gave up the connection (answers out of order)
            self._note_pipelining(pipeline)

    def _note_pipelining(self, pipeline: FetchPipeline) -> None:
        if pipeline.pipelining_refused and not self.one_command_at_a_time:
            log.info("the server mishandled a pipelined FETCH; one command at a time from now on")
            self.one_command_at_a_time = True

    def fetch_partial(self, uid: int, offset: int, length: int) -> bytes:
        """Bytes `offset`…`offset+length` of a message (``BODY.PEEK[]<o.l>``)."""
        key = f"BODY[]<{offset}>".encode()
        rows = self._fetch([uid], ("UID", f"BODY.PEEK[]<{offset}.{length}>"))
        chunk = rows.get(uid, {}).get(key)
        if not isinstance(chunk, bytes):
            raise ServerError(_("server returned no data for UID {uid} at byte {offset}").format(
                uid=uid, offset=offset))
        return chunk

    def _fetch(self, uids: Iterable[int] | str, items: Iterable[str],
               modifiers: list[str] | None = None) -> dict[int, dict[bytes, Any]]:
        """UID FETCH with a sequence-set string; imapclient's `fetch()` rejects
        ranges like ``1:*`` and we want ranges on 100,000-message folders."""
        sequence = uids if isinstance(uids, str) else to_sequence_set(uids)
        with self.translated():
            typ, answer = wire.uid_fetch(self.client, sequence, list(items), modifiers)
        if typ != "OK":
            raise ServerError(_("FETCH refused in {folder!r}: {reply}").format(
                folder=self.selected, reply=text_of(answer[0]) if answer else typ))
        return {uid: values for uid, values in answer.items() if isinstance(uid, int)}
