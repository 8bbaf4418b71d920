"""`mailbackup auth set|delete|test|import`: passwords in the OS keyring.

A password is stored only in a keyring that keeps it safely (see
secrets.require_safe_keyring), checked before anything is asked; `auth set`
stores only a password the server has just accepted."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailbackup import secrets
from mailbackup.cli.common import (
    build_context,
    handle_errors,
    language_option,
    server_options,
    setup_logging,
    verbosity_options,
)
from mailbackup.config import load_account, load_sweep
from mailbackup.errors import UsageError
from mailbackup.i18n import _


@click.group(help=_("Store, remove or test an account's password."))
@language_option
def auth() -> None:
    pass


@auth.command("set", help=_("Log in with ACCOUNT's password, then store it in the OS keyring (asked without echo, "
                            "or read from stdin)."))
@click.argument("account")
@click.option("--no-check", is_flag=True, help=_("Store without logging in first (the server is unreachable now)."))
@server_options
@verbosity_options
@handle_errors
def auth_set(account: str, no_check: bool, **options: object) -> None:
    ctx = build_context(account, **options)  # type: ignore[arg-type]
    secrets.require_safe_keyring()  # before the password is typed, not after
    password = _read_new_password(account)
    if not no_check:
        ctx.use_password(password)
        with ctx.session():  # a refused password ends here (exit 3): nothing is stored
            pass
    secrets.store_in_keyring(ctx.connection.server.host, account, password)
    ctx.echo(_("Password for {account} on {server} stored in the keyring.").format(
        account=account, server=ctx.connection.server.host))


def _read_new_password(account: str) -> str:
    if sys.stdin.isatty():
        password = click.prompt(_("Password for {account}").format(account=account), hide_input=True,
                                confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError(_("empty password; nothing stored"))
    return password


@auth.command("delete", help=_("Remove ACCOUNT's password from the keyring."))
@click.argument("account")
@server_options
@verbosity_options
@handle_errors
def auth_delete(account: str, **options: object) -> None:
    ctx = build_context(account, **options)  # type: ignore[arg-type]
    if secrets.delete_from_keyring(ctx.connection.server.host, account):
        ctx.echo(_("Password for {account} removed from the keyring.").format(account=account))
    else:
        ctx.echo(_("No password for {account} was stored.").format(account=account))


@auth.command("test", help=_("Log in to the server and report."))
@click.argument("account")
@server_options
@verbosity_options
@handle_errors
def auth_test(account: str, **options: object) -> None:
    ctx = build_context(account, **options)  # type: ignore[arg-type]
    with ctx.session() as session:
        tls = "STARTTLS" if ctx.connection.tls_mode.value == "starttls" else "TLS"
        ctx.echo(_("OK: logged in as {account} on {server} ({tls}).").format(
            account=account, server=ctx.connection.server, tls=tls))
        ctx.echo(_("{count} folders.").format(count=len(session.list_folders())))


@auth.command("import", help=_(
    "Store many passwords at once, read from standard input as lines of ACCOUNT, a TAB or a space, then the "
    "PASSWORD (the rest of the line, spaces included).  Empty lines and lines starting with # are skipped.\n\n"
    "\b\n    mailbackup auth import --config unit.yaml < passwords.txt\n\n"
    "Every line is checked before anything is stored; no password is ever printed.  Delete the file afterwards."))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help=_("YAML config: each account's password is stored for the server the config gives it."))
@click.option("--server", metavar="HOST[:PORT]", default=None,
              help=_("Store for this server (wins over the config; default imap.mail.go.th)."))
@verbosity_options
@handle_errors
def auth_import(config_path: str | None, server: str | None, verbose: int, quiet: bool) -> None:
    setup_logging(verbose, quiet)
    secrets.require_safe_keyring()
    if sys.stdin.isatty():
        raise UsageError(_("auth import reads a file, not the keyboard (typed passwords would show)"),
                         hint="mailbackup auth import --config CONFIG < passwords.txt")
    entries = parse_password_lines(sys.stdin.read())
    if not entries:
        raise UsageError(_("no `ACCOUNT PASSWORD` lines on standard input; nothing stored"))
    config = Path(config_path) if config_path else None
    listed = {account.account.casefold() for account in load_sweep(config).accounts} if config else set()
    hosts: dict[str, int] = {}
    for account, password in entries:
        host = load_account(config, account, {"server": server}).host
        secrets.store_in_keyring(host, account, password)
        hosts[host] = hosts.get(host, 0) + 1
    unlisted = [account for account, _ in entries if config and account.casefold() not in listed]
    if unlisted and not quiet:
        click.echo(_("warning: not in {config}: {accounts} (stored for the default server)").format(
            config=config_path, accounts=", ".join(unlisted)), err=True)
    if not quiet:
        where = ", ".join(f"{host}: {count}" for host, count in sorted(hosts.items()))
        click.echo(_("Stored {count} passwords in the keyring ({where}).").format(count=len(entries), where=where))


def parse_password_lines(text: str) -> list[tuple[str, str]]:
    """(account, password) per line: split at the first TAB when the line has
    one, else at the first space; the password is everything after it.  A
    line that does not fit names its number, never its content."""
    entries: list[tuple[str, str]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        separator = "\t" if "\t" in line else " "
        account, found, password = line.lstrip().partition(separator)
        account = account.strip()
        if not found or not account or not password:
            problems.append(_("line {number}: expected ACCOUNT, a TAB or a space, then the password").format(
                number=number))
        elif account.casefold() in seen:
            problems.append(_("line {number}: {account} given twice (first on line {first})").format(
                number=number, account=account, first=seen[account.casefold()]))
        else:
            seen[account.casefold()] = number
            entries.append((account, password))
    if problems:
        raise UsageError(_("{problems}; nothing stored").format(problems="; ".join(problems)))
    return entries
