"""A fetched message body on its way into a store: in memory when small,
in a private temporary file when large, with its size and SHA-256 known."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailbackup.store.guarded import create_private

CHUNK = 1 << 20


@dataclass
class MessageBody:
    size: int
    sha256: str
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageBody:
        return cls(size=len(data), sha256=hashlib.sha256(data).hexdigest(), data=data)

    def chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        if self.data is not None:
            for start in range(0, len(self.data), chunk_size):
                yield self.data[start:start + chunk_size]
            return
        assert self.path is not None
        with open(self.path, "rb") as handle:
            while block := handle.read(chunk_size):
                yield block

    def head(self, limit: int = 256 * 1024) -> bytes:
        if self.data is not None:
            return self.data[:limit]
        assert self.path is not None
        with open(self.path, "rb") as handle:
            return handle.read(limit)

    def discard(self) -> None:
        """Done with it: the bytes are let go at once (a batch of 16 MB must not
        stay alive while the next is read) and a spool file is removed."""
        self.data = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class SpoolFile:
    """Collects a large body chunk by chunk on disk, hashing as it goes."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / name
        self._handle = create_private(self.path)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> MessageBody:
        self._handle.close()
        return MessageBody(size=self.size, sha256=self._hash.hexdigest(), path=self.path)

    def abort(self) -> None:
        self._handle.close()
        self.path.unlink(missing_ok=True)


def sha256_of_file(path: Path, start: int = 0, length: int | None = None) -> tuple[str, int]:
    """Stream a file (or a byte range of it) through SHA-256: (hex digest, bytes read)."""
    digest = hashlib.sha256()
    total = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        while length is None or total < length:
            want = CHUNK if length is None else min(CHUNK, length - total)
            block = handle.read(want)
            if not block:
                break
            digest.update(block)
            total += len(block)
    return digest.hexdigest(), total
