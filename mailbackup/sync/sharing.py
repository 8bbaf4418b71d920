"""A big folder's batches shared with connections that have run out of folders.

Most mailboxes hold most of their mail in one folder (INBOX).  With
`--connections N` the other connections finish the small folders and then
sit idle while one connection downloads the big one, and on a long link one
TCP connection cannot carry more than its window per round trip (6 MB per
200 ms: 30 MB/s).  So the connection syncing a folder (its owner) offers the
batches it has not asked for yet; an idle connection takes some from the
end, EXAMINEs the folder itself and downloads and stores them through its
own state handle, while the owner goes on from the front.

The owner stays in charge of the folder: it waits for every helper before
it finishes the folder (its UIDNEXT and the rest of its bookkeeping are
written only once every batch is stored or given back), and a batch a
helper could not fetch comes back to it.  Each batch is stored by one
connection, under the usual crash-safe order (commit.py); a storage error
on a helper ends the folder as it would on the owner.

Public API: `BatchQueue`, `Share`, `ShareHub` (one per run: `offer`,
`next_share`, `worker_idle`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mailbackup.model import FolderResult, MessageMeta
from mailbackup.sync.folder import FolderSync

Batch = list[MessageMeta]


class BatchQueue:
    """Batches still to be asked for: the owner takes from the front, helpers from the back."""

    def __init__(self, batches: Iterable[Batch] = ()) -> None:
        self._batches: deque[Batch] = deque(batches)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._batches)

    def take_first(self) -> Batch | None:
        with self._lock:
            return self._batches.popleft() if self._batches else None

    def take_last(self, most: int) -> list[Batch]:
        """Up to `most` batches from the back, but never the owner's next one."""
        with self._lock:
            count = min(most, len(self._batches) - 1)
            taken = [self._batches.pop() for _ in range(max(count, 0))]
        taken.reverse()
        return taken

    def take_all(self) -> list[Batch]:
        with self._lock:
            taken, self._batches = list(self._batches), deque()
        return taken

    def give_back(self, batches: Iterable[Batch]) -> None:
        """Batches that were taken but not stored, to the front, in their order."""
        with self._lock:
            self._batches.extendleft(reversed(list(batches)))

    def sending(self, sent: deque[Batch]) -> Iterator[list[int]]:
        """The UIDs of the next batch, as long as there is one; each batch given
        out is appended to `sent` (the caller pairs it with its answer)."""
        while (batch := self.take_first()) is not None:
            sent.append(batch)
            yield [meta.uid for meta in batch]


@dataclass
class Share:
    """One folder's offer: its queue, and what its helpers did."""

    folder: FolderSync
    queue: BatchQueue
    by_uid: dict[int, MessageMeta]
    helpers: int = 0
    open: bool = True
    error: BaseException | None = None
    results: list[FolderResult] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def join(self, most: int) -> list[Batch]:
        """Called by a helper: up to `most` batches taken from the back at once
        (not after its EXAMINE: the owner's pipeline would have taken them by
        then); none when the offer is closed or has nothing to spare."""
        with self.changed:
            taken = self.queue.take_last(most) if self.open else []
            if taken:
                self.helpers += 1
            return taken

    def more(self, most: int) -> list[Batch]:
        """Called by a helper between its batches: none once the owner has closed the offer."""
        with self.changed:
            return self.queue.take_last(most) if self.open else []

    def leave(self, result: FolderResult, error: BaseException | None = None) -> None:
        with self.changed:
            self.helpers -= 1
            self.results.append(result)
            if error is not None and self.error is None:
                self.error = error
            self.changed.notify_all()

    def wait_for_helpers(self) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.helpers == 0)

    def close(self) -> None:
        """No helper joins any more; waits for those at work.  Then their results
        are the folder's, and a helper's storage error is the owner's to raise."""
        with self.changed:
            self.open = False
        self.wait_for_helpers()
        result = self.folder.result
        for theirs in self.results:
            result.fetched += theirs.fetched
            result.fetched_bytes += theirs.fetched_bytes
            result.matched += theirs.matched
            result.failed_uids += theirs.failed_uids
            result.warnings += theirs.warnings
        self.results = []


class ShareHub:
    """Where owners offer and idle workers look; `workers` is how many
    connections take folders from the run's queue."""

    def __init__(self, min_batches: int = 2) -> None:
        self.min_batches = min_batches  # what is worth a helper's EXAMINE and round trip
        self._workers: int | None = None  # not known until the folders are handed out
        self._offers: list[Share] = []
        self._idle: set[int] = set()  # the workers (numbered by the caller) with no folder left
        self._changed = threading.Condition()

    def expect(self, workers: int) -> None:
        with self._changed:
            self._workers = workers
            self._changed.notify_all()

    def offer(self, folder: FolderSync, queue: BatchQueue, by_uid: dict[int, MessageMeta]) -> Share:
        share = Share(folder, queue, by_uid)
        with self._changed:
            self._offers.append(share)
            self._changed.notify_all()
        return share

    def withdraw(self, share: Share) -> None:
        with self._changed:
            if share in self._offers:
                self._offers.remove(share)
        share.close()

    def worker_idle(self, worker: int) -> None:
        """`worker` has no folder of its own left (and never will: the queue is empty)."""
        with self._changed:
            self._idle.add(worker)
            self._changed.notify_all()

    def next_share(self, stopped: Callable[[], bool], most: int) -> tuple[Share, list[Batch]] | None:
        """An offer with batches to spare and up to `most` of them, waiting for
        one while some worker still syncs a folder of its own; None when every
        worker is idle."""
        with self._changed:
            while not stopped():
                for share in self._offers:
                    if len(share.queue) >= self.min_batches and (taken := share.join(most)):
                        return share, taken
                if self._workers is not None and len(self._idle) >= self._workers:
                    return None
                self._changed.wait(timeout=0.05)  # queues shrink without a notification
            return None
