"""The `mailbackup` command line: one module per command, registered here
and imported only when its command runs (cli/lazy.py)."""

from __future__ import annotations

import sys
from typing import IO, Any

import click

from mailbackup import __version__
from mailbackup.cli.common import verbosity_options
from mailbackup.cli.lazy import LazyGroup
from mailbackup.i18n import _


def utf8_console(streams: tuple[IO[Any], ...] | None = None, platform: str = sys.platform) -> None:
    """On Windows, a redirected stdout/stderr is in the ANSI code page (874 on
    Thai Windows), which cannot hold every character we print: make them
    UTF-8, replacing what cannot be written rather than failing; stdin too, so
    a Thai password piped into `auth set` or `auth import` arrives intact."""
    if platform != "win32":
        return
    stdin, stdout, stderr = streams or (sys.stdin, sys.stdout, sys.stderr)
    for stream, settings in ((stdout, {"errors": "replace"}), (stderr, {"errors": "replace"}), (stdin, {})):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8", **settings)


COMMANDS = {name: f"mailbackup.cli.{module}:{name}" for name, module in (
    ("auth", "auth"), ("folders", "folders"), ("backup", "backup"), ("verify", "verify"), ("report", "report"),
    ("sweep", "sweep"), ("check", "check"), ("schedule", "schedule"), ("restore", "restore"),
    ("migrate", "migrate"), ("export", "export"))}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help=_("Back up, verify and migrate IMAP mailboxes (imap.mail.go.th by default).\n\n"
                    "Quick start:  mailbackup backup you@coj.go.th"))
@click.version_option(__version__, prog_name="mailbackup")
@verbosity_options
def cli(verbose: int, quiet: bool) -> None:
    pass




def main() -> None:
    utf8_console()
    cli(prog_name="mailbackup")
