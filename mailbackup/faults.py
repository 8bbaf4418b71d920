"""Crash points for the resume tests: nothing happens unless the environment
variable ``MAILBACKUP_FAULTS`` names them.

    MAILBACKUP_FAULTS="after-write=3"   SIGKILL this process the 3rd time the
                                         engine has written a batch but not
                                         yet committed it to the state

Points: ``after-pending`` (pending rows committed, no mail written),
``after-write`` (mail fsynced, state not committed), ``mid-large`` (half of a
large message spooled).  A real SIGKILL, so the test sees exactly what a
power cut or `kill -9` leaves behind.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "MAILBACKUP_FAULTS"
_hits: Counter[str] = Counter()


def _armed() -> dict[str, int]:
    spec = os.environ.get(ENV, "")
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        points[name] = int(count or 1)
    return points


def point(name: str) -> None:
    """Die here (SIGKILL) on the configured hit; a no-op otherwise."""
    if ENV not in os.environ:
        return
    target = _armed().get(name)
    if target is None:
        return
    _hits[name] += 1
    if _hits[name] == target:
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)
        os.kill(os.getpid(), kill)
