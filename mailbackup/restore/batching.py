"""Groups of messages for one APPEND or one write: bounded by count and bytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def batches(items: Sequence[T], max_count: int, max_bytes: int, size_of: Callable[[T], int]) -> list[list[T]]:
    """Consecutive groups bounded by count and total size; a larger item travels alone."""
    groups: list[list[T]] = []
    current: list[T] = []
    size = 0
    for item in items:
        if current and (len(current) >= max_count or size + size_of(item) > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += size_of(item)
    if current:
        groups.append(current)
    return groups

