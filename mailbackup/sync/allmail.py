"""A folder holding every message (`\\All`, RFC 6154: Gmail's All Mail) left
out of a backup: is anything only there?

Gmail's labels are folders, so a message is in INBOX, in each of its labels'
folders and in All Mail; skipping All Mail (`--exclude '\\All'`) avoids
downloading it again.  But a message archived in Gmail has no label left and
lives in All Mail alone: skipping the folder skips it.  Without asking Gmail
for its own message ids, a cheap lower bound tells whether that happens: All
Mail's message count against the distinct messages (by SHA-256) the archive
holds from the other folders.
"""

from __future__ import annotations

from mailbackup.i18n import _
from mailbackup.model import FolderInfo, FolderResult
from mailbackup.sync import plan
from mailbackup.sync.folder import SyncParts


def check_skipped(parts: SyncParts, listed: list[FolderInfo]) -> list[FolderResult]:
    """A result with a warning for each `\\All` folder left out that holds more
    messages than the archive holds from every other folder."""
    options = parts.options
    chosen = {info.name for info in plan.select_folders(listed, options.include, options.exclude)}
    found = []
    for info in listed:
        if not info.selectable or info.name in chosen or "\\all" not in {flag.lower() for flag in info.flags}:
            continue
        status = parts.call(None, lambda name=info.name: parts.session.status(name))  # type: ignore[misc]
        only_there = status.messages - parts.state.count_distinct_contents()
        if only_there > 0:
            text = _("folder {folder!r} (every message: \\All) was left out, and holds at least {count} messages "
                     "that are in no other folder backed up (in Gmail: archived mail, with no label); they are "
                     "not in this backup").format(folder=info.name, count=only_there)
            parts.progress.warn(text)
            found.append(FolderResult(name=info.name, warnings=[text]))
    return found
