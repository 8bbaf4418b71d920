"""A click group that imports a command's module only when that command runs.

`mailbackup backup` then never loads the restore, sweep or report machinery:
on a no-op incremental run, imports were most of the client's time.
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}  # name → "module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            module_name, attribute = self.lazy_commands[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not gc.isenabled():  # off for start-up (__main__.py): freeze what it made, collect the run's own
                gc.freeze()
                gc.enable()
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)
