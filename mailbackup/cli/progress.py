"""tqdm progress for a backup: an overall bar and one for the current folder
(for the folders in hand, with several connections), messages and bytes with
rates.  Off when not on a terminal or with --quiet.

The overall bar is drawn from what the run expects before its first download
(the folders' STATUS, see sync/plan.expected_new): in bytes with the rate and
time left when the server tells folder sizes, else in messages; it never goes
backwards.  The count of messages stands beside it."""

from __future__ import annotations

import sys
from typing import Any

import click

from mailbackup.cli.format import folders_text
from mailbackup.i18n import _
from mailbackup.model import FolderResult


class TqdmProgress:
    def __init__(self, *, enabled: bool, quiet: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty() and not quiet
        self.quiet = quiet
        # Imported only for a bar that is drawn: tqdm costs a few ms of every quiet, scheduled run.
        self.tqdm: Any = _tqdm() if self.enabled else None
        self.overall: Any = None
        self.folder: Any = None
        self.in_bytes = False  # the overall bar counts bytes (the server told sizes), else messages
        self.expected = 0  # messages the run expects, at most
        self.started = 0  # messages of the folders begun so far
        self.done = 0
        self.downloading: dict[str, int] = {}  # folders begun and not done (several with --connections)

    def run_start(self, messages: int, size: int | None) -> None:
        if not self.enabled or not messages:
            return
        self.expected, self.in_bytes = messages, size is not None
        if self.in_bytes:
            self.overall = self.tqdm(desc=_("all folders"), total=size, unit="B", unit_scale=True,
                                     unit_divisor=1024, position=0, file=sys.stderr, dynamic_ncols=True)
        else:
            self.overall = self._message_bar(total=messages)
        self._count()

    def folder_start(self, name: str, messages: int, size: int) -> None:
        if not self.enabled or not messages:
            return
        if self.overall is None:  # nothing was announced: the total grows folder by folder
            self.overall = self._message_bar(total=None)
        self.started += messages
        if not self.in_bytes and self.started > (self.overall.total or 0):
            self.overall.total = self.started
        self._count()
        self.downloading[name] = size
        if self.folder is not None:  # several connections: one bar for the folders in hand
            self.folder.total = (self.folder.total or 0) + size
            self.folder.set_description_str(folders_text(len(self.downloading)))
            return
        self.folder = self.tqdm(desc=name[-30:], total=size, unit="B", unit_scale=True, unit_divisor=1024,
                           position=1, leave=False, file=sys.stderr, dynamic_ncols=True)

    def saved(self, messages: int, size: int) -> None:
        self.done += messages
        if self.overall is not None:
            if self.in_bytes and self.overall.n + size > (self.overall.total or 0):
                self.overall.total = self.overall.n + size  # the server's sizes were short: never backwards
            self.overall.update(size if self.in_bytes else messages)
            self._count()
            if not self.in_bytes:
                rate = self.overall.format_dict.get("rate") or 0
                self.overall.set_postfix_str(_("messages per second: {rate}").format(rate=f"{rate:.0f}"))
        if self.folder is not None:
            self.folder.update(size)

    def _message_bar(self, total: int | None) -> Any:
        # tqdm writes a rate as UNIT/s; "ฉบับ/s" is no Thai, so the rate says its unit in words.
        return self.tqdm(desc=_("all folders"), total=total, position=0, file=sys.stderr, dynamic_ncols=True,
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {postfix}]",
                         postfix=_("messages per second: {rate}").format(rate="…"))

    def _count(self) -> None:
        if self.in_bytes:
            self.overall.set_postfix_str(_("{done} of {total} messages").format(
                done=self.done, total=max(self.expected, self.started)), refresh=True)

    def folder_done(self, result: FolderResult) -> None:
        begun = self.downloading.pop(result.name, None) is not None
        if not self.downloading:
            self._close_folder()
        elif begun and self.folder is not None and len(self.downloading) == 1:
            self.folder.set_description_str(next(iter(self.downloading))[-30:])

    def warn(self, text: str) -> None:
        line = _("warning: {text}").format(text=text)
        if self.enabled:
            self.tqdm.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def close(self) -> None:
        self._close_folder()
        if self.overall is not None:
            self.overall.close()
            self.overall = None

    def _close_folder(self) -> None:
        if self.folder is not None:
            self.folder.close()
            self.folder = None


def _tqdm() -> Any:
    from tqdm import tqdm

    return tqdm
