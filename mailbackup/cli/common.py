"""What every command shares: server and verbosity options, the password
prompt, logging, and the one place where errors become exit codes."""

from __future__ import annotations

import functools
import logging
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from mailbackup import i18n, secrets
from mailbackup.cli import clicktext  # noqa: F401 - click's own words in our language, before any command exists
from mailbackup.config import AccountSettings, load_account
from mailbackup.errors import ExitCode, MailbackupError, UsageError
from mailbackup.i18n import _
from mailbackup.imap.session import ImapSession
from mailbackup.localerrors import local_error
from mailbackup.model import DEFAULT_SERVER, ConnectionSettings
from mailbackup.text import printable

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("mailbackup")


def _use_language(context: click.Context, parameter: click.Parameter, value: str | None) -> None:
    # i18n already chose it from sys.argv before the help texts were made; this
    # keeps an in-process call (click's test runner) in the language asked for.
    if value:
        i18n.set_language(value)


def language_option(func: F) -> F:
    """--lang th|en, accepted by the group and by every command."""
    return click.option("--lang", type=click.Choice(i18n.LANGUAGES), expose_value=False, is_eager=True,
                        callback=_use_language,
                        help=_("Language of messages and reports: th (Thai) or en (English); "
                               "default: MAILBACKUP_LANG, else the locale (LANG)."))(func)


def verbosity_options(func: F) -> F:
    func = click.option("-v", "--verbose", count=True, help=_("More detail (-vv for debug)."))(func)
    func = click.option("-q", "--quiet", is_flag=True, help=_("Print nothing but errors."))(func)
    return language_option(func)


def folder_filter_options(func: F) -> F:
    """--include/--exclude GLOB, the same for every command that walks folders."""
    func = click.option("--exclude", multiple=True, metavar="GLOB", help=_(
        "Skip folders matching (repeatable); \\All, \\Junk, \\Trash...: the folder with that special use "
        "(RFC 6154), e.g. Gmail's All Mail."))(func)
    func = click.option("--include", multiple=True, metavar="GLOB", help=_("Only folders matching (repeatable)."))(func)
    return func


def max_time_option(func: F) -> F:
    """--max-time DURATION: a run ends cleanly once it has run this long (config: max_time)."""
    return click.option(
        "--max-time", metavar="DURATION", default=None,
        help=_("End the run cleanly after this long (e.g. 90m, 2h; config key max_time): what is saved stays saved, "
               "exit 1 with a warning; the next run continues."))(func)


def server_options(func: F) -> F:
    options = [
        click.option("--server", metavar="HOST[:PORT]", default=None,
                     help=_("IMAP server (default {server}; port 993 TLS, 143 with --starttls).").format(
                         server=DEFAULT_SERVER)),
        click.option("--cafile", type=click.Path(dir_okay=False), default=None,
                     help=_("Trust the certificate authority in this PEM file.")),
        click.option("--starttls", is_flag=True, default=None, help=_("Connect in plain text, then STARTTLS.")),
        click.option("--insecure", is_flag=True, default=None,
                     help=_("Do not verify the server certificate (still encrypted).")),
        click.option("--timeout", type=float, default=None, help=_("Seconds to wait for the server (default 60).")),
        click.option("--compress", type=click.Choice(["auto", "always", "never"]), default=None,
                     help=_("COMPRESS=DEFLATE: auto (default) uses it when offered, except on this machine.")),
        click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
                     help=_("YAML config with defaults and accounts.")),
        click.option("--password-file", type=click.Path(dir_okay=False), default=None,
                     help=_("Read the password from the first line of this file (yours alone: chmod 600).")),
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
    # Looked up once per run: a backup that then verifies asks at most once.
    _password: str | None = field(default=None, repr=False)
    # The password was typed at the prompt and its owner wants it kept: it
    # goes into the keyring once it has logged in (a typo is never kept).
    remember: bool = False

    @property
    def connection(self) -> ConnectionSettings:
        return self.account.connection

    def echo(self, text: str = "", *, err: bool = False) -> None:
        if not self.quiet:
            click.echo(printable(text), err=err)

    def password(self) -> str:
        if self._password is None:
            self._password = secrets.lookup(self.account.account, self.connection.server.host,
                                            password_command=self.account.password_command,
                                            password_file=self.account.password_file, prompt=self._ask)
        return self._password

    def use_password(self, password: str) -> None:
        """Log in with this password instead of looking one up (`auth set` tries what it will store)."""
        self._password = password

    def _ask(self, account: str) -> str:
        """The first run of someone who only knows their address: ask for the
        password, and whether to keep it so that the next run asks nothing
        (only offered when this machine has a keyring that keeps it safely)."""
        password = prompt_password(account)
        if secrets.keyring_problem() is None:
            self.remember = bool(click.confirm(_("Remember the password on this computer?"), default=True,
                                               err=True))
        else:
            self.echo(_("This computer has no safe keyring, so the password will be asked for again next time; "
                        "for runs without a person, give the account a password_file or a password_command."),
                      err=True)
        return password

    def session(self, *, spares: int = 0) -> ImapSession:
        """Logged in; `spares` more channels opened meanwhile for the run's other connections."""
        if self.connection.insecure:
            click.echo(_("warning: --insecure: the server's certificate is NOT checked"), err=True)
        # The password is looked up (perhaps asked for) only once the server is reached: a
        # mistyped or unreachable server is said first.  Connected here, so that a password
        # typed at the prompt is kept only after it logged in; `with session` uses this connection.
        session = ImapSession(self.connection, self.account.account, self.password).connect(spares=spares)
        if self.remember:
            self._keep_password()
        return session

    def _keep_password(self) -> None:
        self.remember = False
        try:
            secrets.store_in_keyring(self.connection.server.host, self.account.account, self.password())
        except UsageError as exc:
            click.echo(_("warning: the password could not be remembered ({error}); "
                         "it will be asked for again next time").format(error=exc), err=True)
            return
        self.echo(_("The password is kept in this computer's keyring: the next run will not ask for it."),
                  err=True)


def prompt_password(account: str) -> str:
    return str(click.prompt(_("Password for {account}").format(account=account), hide_input=True, err=True))


def build_context(account: str, *, quiet: bool, verbose: int, config_path: str | None,
                  **cli_values: Any) -> Context:
    setup_logging(verbose, quiet)
    settings = load_account(Path(config_path) if config_path else None, account, cli_values)
    return Context(account=settings, quiet=quiet, verbose=verbose)


def handle_errors(func: F) -> F:
    """Turn any MailbackupError into its one line on stderr and its exit code;
    a local disk or state-database failure that reached us untranslated
    (a full disk in the middle of a commit, a read-only archive) too."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return func(*args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                local = local_error(exc)
                if local is None:
                    raise
                raise local from None
        except MailbackupError as exc:
            click.echo(printable(_("mailbackup: error: {error}").format(error=exc)), err=True)
            sys.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo(_("mailbackup: interrupted"), err=True)
            sys.exit(int(ExitCode.INTERRUPTED))

    return wrapper  # type: ignore[return-value]


@contextmanager
def stop_on_ctrl_c(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C: finish the current batch and stop.  Second: stop now
    (still safe: the next run recovers)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\n" + _("Stopping after the current batch (Ctrl-C again to stop at once)..."), err=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
