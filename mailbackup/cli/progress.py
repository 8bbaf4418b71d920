"""tqdm progress for a backup: an overall bar and one for the current folder,
messages and bytes with rates.  Off when not on a terminal or with --quiet."""

from __future__ import annotations

import sys
from typing import Any

import click

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

    def folder_start(self, name: str, messages: int, size: int) -> None:
        if not self.enabled or not messages:
            return
        if self.overall is None:
            self.overall = self.tqdm(desc=_("all folders"), unit=_("msg"), position=0, file=sys.stderr,
                                dynamic_ncols=True)
        self.overall.total = (self.overall.total or 0) + messages
        self.overall.refresh()
        self._close_folder()
        self.folder = self.tqdm(desc=name[-30:], total=size, unit="B", unit_scale=True, unit_divisor=1024,
                           position=1, leave=False, file=sys.stderr, dynamic_ncols=True)

    def saved(self, messages: int, size: int) -> None:
        if self.overall is not None:
            self.overall.update(messages)
        if self.folder is not None:
            self.folder.update(size)

    def folder_done(self, result: FolderResult) -> None:
        self._close_folder()

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
