"""What every command shares: server and verbosity options, the password
prompt, logging, and the one place where errors become exit codes."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from mailbackup import secrets
from mailbackup.config import AccountSettings, load_account
from mailbackup.errors import ExitCode, MailbackupError
from mailbackup.imap.session import ImapSession
from mailbackup.model import DEFAULT_SERVER, ConnectionSettings

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("mailbackup")


def verbosity_options(func: F) -> F:
    func = click.option("-v", "--verbose", count=True, help="More detail (-vv for debug).")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")(func)
    return func


def server_options(func: F) -> F:
    options = [
        click.option("--server", metavar="HOST[:PORT]", default=None,
                     help=f"IMAP server (default {DEFAULT_SERVER}; port 993 TLS, 143 with --starttls)."),
        click.option("--cafile", type=click.Path(dir_okay=False), default=None,
                     help="Trust the certificate authority in this PEM file."),
        click.option("--starttls", is_flag=True, default=None, help="Connect in plain text, then STARTTLS."),
        click.option("--insecure", is_flag=True, default=None,
                     help="Do not verify the server certificate (still encrypted)."),
        click.option("--timeout", type=float, default=None, help="Seconds to wait for the server (default 60)."),
        click.option("--compress", type=click.Choice(["auto", "always", "never"]), default=None,
                     help="COMPRESS=DEFLATE: auto (default) uses it when offered, except on this machine."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="YAML config with defaults and accounts."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose > 1 else "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # imaplib/imapclient protocol traces can carry credentials: never let them through.
    logging.getLogger("imapclient").setLevel(max(level, logging.INFO))


@dataclass
class Context:
    account: AccountSettings
    quiet: bool
    verbose: int

    @property
    def connection(self) -> ConnectionSettings:
        return self.account.connection

    def echo(self, text: str = "", *, err: bool = False) -> None:
        if not self.quiet:
            click.echo(text, err=err)

    def password(self) -> str:
        return secrets.lookup(self.account.account, self.connection.server.host,
                              password_command=self.account.password_command, prompt=prompt_password)

    def session(self) -> ImapSession:
        if self.connection.insecure:
            click.echo("warning: --insecure: the server's certificate is NOT checked", err=True)
        return ImapSession(self.connection, self.account.account, self.password())


def prompt_password(account: str) -> str:
    return str(click.prompt(f"Password for {account}", hide_input=True, err=True))


def build_context(account: str, *, quiet: bool, verbose: int, config_path: str | None,
                  **cli_values: Any) -> Context:
    setup_logging(verbose, quiet)
    settings = load_account(Path(config_path) if config_path else None, account, cli_values)
    return Context(account=settings, quiet=quiet, verbose=verbose)


def handle_errors(func: F) -> F:
    """Turn any MailbackupError into its one line on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MailbackupError as exc:
            click.echo(f"mailbackup: error: {exc}", err=True)
            sys.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("mailbackup: interrupted", err=True)
            sys.exit(int(ExitCode.INTERRUPTED))

    return wrapper  # type: ignore[return-value]
