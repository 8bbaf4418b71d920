"""Does an mbox file parse into exactly the entries the state records?
(Offline verification; check.py uses it.)"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mailbackup.i18n import _
from mailbackup.model import StoredMessage
from mailbackup.store import mboxrd
from mailbackup.text import system_error


def mbox_structure(path: Path, committed: int, messages: Iterable[StoredMessage]) -> list[str]:
    """Differences between the entries the file parses into (up to the saved
    length) and the spans the state records."""
    recorded = {(m.mbox_offset, m.mbox_length) for m in messages if m.mbox_offset is not None}
    try:
        with open(path, "rb") as handle:
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
