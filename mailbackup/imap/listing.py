"""Which messages a folder holds, from answers that check each other (issue 13).

No single server answer is trusted alone: GNU mailutils imap4d 3.15 answers
`UID SEARCH UID 1:*` with an empty ``* SEARCH`` while EXAMINE said 213 EXISTS,
and a FETCH may describe fewer messages than it was asked for.  So each way
of listing a folder is checked against the latest EXISTS (EXAMINE's, or an
untagged update since); where one disagrees, the next is tried:

1. the FETCH listing that came with EXAMINE, when the caller has one;
2. ``UID SEARCH UID 1:*`` (with a FETCH of the sizes, when they are needed);
3. ``UID SEARCH ALL`` (likewise);
4. ``FETCH 1:* (UID RFC822.SIZE ...)`` by sequence numbers.

The first answer that agrees with EXISTS is used.  When none does, the
`Listing` says so (`consistent` is False) and keeps every UID any answer
named: a caller must then neither mark a message gone nor call the folder
complete, and should show `describe()`, the numbers each method gave.

Public API: `Listing`, `list_folder(session, listed=None, need_sizes=False)`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mailbackup.i18n import _
from mailbackup.imap.session import ImapSession
from mailbackup.model import MessageMeta
from mailbackup.uids import SortedUids

META_CHUNK = 2000  # UIDs per FETCH of sizes
EXAMINE_FETCH = "FETCH with EXAMINE"
UID_RANGE_SEARCH = "UID SEARCH UID 1:*"
UID_SEARCH_ALL = "UID SEARCH ALL"
SEQUENCE_FETCH = "FETCH 1:*"


@dataclass(frozen=True)
class Listing:
    """A folder's messages as the server described them, and whether its answers agreed."""

    uids: SortedUids  # when inconsistent, every UID any answer named
    exists: int  # the latest EXISTS
    consistent: bool  # an answer agreed with EXISTS (and its sizes, when asked for, were all given)
    answers: tuple[tuple[str, int], ...] = ()  # (method, messages it gave), in the order asked
    metas: dict[int, MessageMeta] | None = field(default=None)  # sizes and flags, when read

    def describe(self) -> str:
        """The numbers seen, for a person: "EXISTS 213, UID SEARCH UID 1:* 0, UID SEARCH ALL 213, …"."""
        parts = [f"EXISTS {self.exists}", *(f"{method} {count}" for method, count in self.answers)]
        return ", ".join(parts)

    def contradiction(self, folder: str) -> str:
        """One line saying the server contradicted itself, with the numbers."""
        return _("folder {folder!r}: the server's answers disagree on how many messages it holds "
                 "({numbers}); nothing is taken as gone").format(folder=folder, numbers=self.describe())


def list_folder(session: ImapSession, listed: list[MessageMeta] | None = None, *,
                need_sizes: bool = False, reopen: Callable[[], object] | None = None) -> Listing:
    """The selected folder's UIDs (and, with `need_sizes` or a `listed`
    FETCH, their metas), cross-checked with EXISTS as the module says.

    When no answer agreed and `reopen` is given (select the folder again),
    the folder is asked once more from a fresh EXISTS: mail that arrived or
    was expunged while it was listed must not make it look contradictory."""
    first = _list_once(session, listed, need_sizes)
    if first.consistent or reopen is None:
        return first
    reopen()
    return _list_once(session, None, need_sizes)


def _list_once(session: ImapSession, listed: list[MessageMeta] | None, need_sizes: bool) -> Listing:
    session.note_exists()  # e.g. our own APPENDs since the folder was selected
    answers: list[tuple[str, int]] = []
    # What each answer named, united only when none agreed: on a big folder a set of every UID costs 4 MB.
    seen: list[Iterable[int]] = []
    seen_metas: dict[int, MessageMeta] = {}

    def agreed(uids: Iterable[int], metas: dict[int, MessageMeta] | None) -> Listing:
        ascending = uids if isinstance(uids, SortedUids) else SortedUids(uids)
        return Listing(ascending, session.exists, True, tuple(answers), metas)

    if listed is not None:
        metas = {meta.uid: meta for meta in listed}
        answers.append((EXAMINE_FETCH, len(metas)))
        seen.append(metas)
        seen_metas.update(metas)
        if len(metas) == session.exists:
            return agreed(sorted(metas), metas)
    elif session.exists == 0:
        return Listing(SortedUids(), 0, True, (), {} if need_sizes else None)
    searches: list[tuple[str, Callable[[], SortedUids]]] = [
        (UID_RANGE_SEARCH, lambda: session.search_uids(1)), (UID_SEARCH_ALL, lambda: session.search_uids(every=True))]
    for method, search in searches:
        uids = search()
        answers.append((method, len(uids)))
        seen.append(uids)
        if len(uids) != session.exists:
            continue
        if not need_sizes:
            return agreed(uids, None)
        metas = _metas_of(session, uids)
        seen_metas.update(metas)
        if len(metas) == len(uids):
            return agreed(uids, metas)
        answers.append((f"UID FETCH ({method})", len(metas)))
    metas = {meta.uid: meta for meta in session.fetch_meta_by_sequence()}
    answers.append((SEQUENCE_FETCH, len(metas)))
    seen.append(metas)
    seen_metas.update(metas)
    if len(metas) == session.exists:
        return agreed(sorted(metas), metas)
    return Listing(SortedUids.of(itertools.chain(*seen)), session.exists, False, tuple(answers),
                   seen_metas if need_sizes or listed is not None else None)


def _metas_of(session: ImapSession, uids: Sequence[int]) -> dict[int, MessageMeta]:
    metas: dict[int, MessageMeta] = {}
    for start in range(0, len(uids), META_CHUNK):
        metas.update((meta.uid, meta) for meta in session.fetch_meta(uids[start:start + META_CHUNK]))
    return metas
