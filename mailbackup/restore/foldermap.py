"""Where each archived folder goes on a target server (pure functions; no
I/O but reading the state's folder list): restore, migrate and export use it.

An archived folder's name is split on its own delimiter
(`store.naming.split_folder`), an ``INBOX.``-style prefix of the source is
dropped (recorded by `migrate`, otherwise detected), and the parts are
joined with the target's delimiter under its personal namespace prefix
(NAMESPACE); INBOX stays INBOX.  A part holding the target's delimiter has it
replaced by ``_`` (a warning names the folder).

Public API: `plan_folders`, `FolderPlan`, `source_path`, `target_name`,
`source_prefix_of`, `detect_source_prefix`, `path_sort_key`, `SOURCE_PREFIX_META`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailbackup.i18n import _
from mailbackup.imap.append import Namespace
from mailbackup.model import FolderInfo
from mailbackup.state.db import FolderRecord, StateDB
from mailbackup.store.naming import split_folder
from mailbackup.sync.plan import select_folders

SOURCE_PREFIX_META = "source_namespace_prefix"  # set by `migrate`, which can ask the source
DELIMITER_STANDIN = "_"


@dataclass(frozen=True)
class FolderPlan:
    record: FolderRecord
    target: str  # the folder's name on the target
    warnings: tuple[str, ...] = ()


def source_prefix_of(state: StateDB) -> str:
    """The source's personal namespace prefix: as `migrate` recorded it, else
    ``INBOX<delim>`` when every other folder lives under INBOX (Courier, Cyrus)."""
    recorded = state.get_meta(SOURCE_PREFIX_META)
    if recorded is not None:
        return recorded
    return detect_source_prefix(state.folders())


def detect_source_prefix(records: Sequence[FolderRecord]) -> str:
    others = [record for record in records if record.name.upper() != "INBOX"]
    delimiters = {record.delimiter for record in others}
    if not others or len(delimiters) != 1:
        return ""
    delimiter = delimiters.pop()
    if delimiter is None:
        return ""
    prefix = "INBOX" + delimiter
    under_inbox = all(record.name.upper().startswith(prefix.upper()) for record in others)
    return prefix if under_inbox else ""


def source_path(name: str, delimiter: str | None, prefix: str) -> tuple[str, ...]:
    """A folder's path components, without the source's namespace prefix."""
    if name.upper() == "INBOX":
        return ("INBOX",)
    if prefix and name.upper().startswith(prefix.upper()) and len(name) > len(prefix):
        name = name[len(prefix):]
    return split_folder(name, delimiter)


def target_name(path: tuple[str, ...], namespace: Namespace) -> tuple[str, bool]:
    """(name on the target, whether a part had to change to fit its delimiter)."""
    delimiter = namespace.delimiter
    parts = [part.replace(delimiter, DELIMITER_STANDIN) if delimiter else part for part in path]
    changed = parts != list(path)
    joiner = delimiter or "/"  # a flat server: the parts stay in one name
    if parts[0].upper() == "INBOX":
        return joiner.join(["INBOX", *parts[1:]]), changed
    return namespace.prefix + joiner.join(parts), changed


def plan_folders(records: Iterable[FolderRecord], source_prefix: str, namespace: Namespace,
                 include: Sequence[str], exclude: Sequence[str]) -> list[FolderPlan]:
    """Archived folders chosen by the globs (on their archived names), parents
    first, each with its target name."""
    by_name = {record.name: record for record in records}
    infos = [FolderInfo(name=record.name, delimiter=record.delimiter) for record in by_name.values()]
    plans: list[FolderPlan] = []
    taken: dict[str, str] = {}
    for info in select_folders(infos, include, exclude):
        record = by_name[info.name]
        path = source_path(record.name, record.delimiter, source_prefix)
        name, changed = target_name(path, namespace)
        warnings = []
        if changed:
            warnings.append(_("folder {folder!r} becomes {target!r} on the target: {delimiter!r} separates folders "
                              "there").format(folder=record.name, target=name, delimiter=namespace.delimiter))
        if name in taken:
            warnings.append(_("folders {first!r} and {second!r} both go to {target!r}").format(
                first=taken[name], second=record.name, target=name))
        taken.setdefault(name, record.name)
        plans.append(FolderPlan(record, name, tuple(warnings)))
    return sorted(plans, key=lambda plan: (plan.target.upper() != "INBOX", path_sort_key(plan)))


def path_sort_key(plan: FolderPlan) -> tuple[str, ...]:
    return split_folder(plan.record.name, plan.record.delimiter)
