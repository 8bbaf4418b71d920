"""`mailbackup auth set|delete|test|import`: passwords in the OS keyring."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailbackup import secrets
from mailbackup.cli.common import build_context, handle_errors, server_options, setup_logging, verbosity_options
from mailbackup.config import load_account, load_sweep
from mailbackup.errors import UsageError


@click.group()
def auth() -> None:
    """Store, remove or test an account's password."""


@auth.command("set")
@click.argument("account")
@server_options
@verbosity_options
@handle_errors
def auth_set(account: str, **options: object) -> None:
    """Store ACCOUNT's password in the OS keyring (asked without echo, or read from stdin)."""
    ctx = build_context(account, **options)  # type: ignore[arg-type]
    if sys.stdin.isatty():
        password = click.prompt(f"Password for {account}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("empty password; nothing stored")
    secrets.store_in_keyring(ctx.connection.server.host, account, password)
    ctx.echo(f"Password for {account} on {ctx.connection.server.host} stored in the keyring.")


@auth.command("delete")
@click.argument("account")
@server_options
@verbosity_options
@handle_errors
def auth_delete(account: str, **options: object) -> None:
    """Remove ACCOUNT's password from the keyring."""
    ctx = build_context(account, **options)  # type: ignore[arg-type]
    if secrets.delete_from_keyring(ctx.connection.server.host, account):
        ctx.echo(f"Password for {account} removed from the keyring.")
    else:
        ctx.echo(f"No password for {account} was stored.")


@auth.command("test")
@click.argument("account")
@server_options
@verbosity_options
@handle_errors
def auth_test(account: str, **options: object) -> None:
    """Log in to the server and report."""
    ctx = build_context(account, **options)  # type: ignore[arg-type]
    with ctx.session() as session:
        tls = "STARTTLS" if ctx.connection.tls_mode.value == "starttls" else "TLS"
        ctx.echo(f"OK: logged in as {account} on {ctx.connection.server} ({tls}).")
        ctx.echo(f"{len(session.list_folders())} folders.")


@auth.command("import")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="YAML config: each account's password is stored for the server the config gives it.")
@click.option("--server", metavar="HOST[:PORT]", default=None,
              help="Store for this server (wins over the config; default imap.mail.go.th).")
@verbosity_options
@handle_errors
def auth_import(config_path: str | None, server: str | None, verbose: int, quiet: bool) -> None:
    """Store many passwords at once, read from standard input as lines of
    ACCOUNT, a TAB or a space, then the PASSWORD (the rest of the line,
    spaces included).  Empty lines and lines starting with # are skipped.

        mailbackup auth import --config unit.yaml < passwords.txt

    Every line is checked before anything is stored; no password is ever
    printed.  Delete the file afterwards."""
    setup_logging(verbose, quiet)
    if sys.stdin.isatty():
        raise UsageError("auth import reads a file, not the keyboard (typed passwords would show)",
                         hint="mailbackup auth import --config CONFIG < passwords.txt")
    entries = parse_password_lines(sys.stdin.read())
    if not entries:
        raise UsageError("no `ACCOUNT PASSWORD` lines on standard input; nothing stored")
    config = Path(config_path) if config_path else None
    listed = {account.account.casefold() for account in load_sweep(config).accounts} if config else set()
    hosts: dict[str, int] = {}
    for account, password in entries:
        host = load_account(config, account, {"server": server}).host
        secrets.store_in_keyring(host, account, password)
        hosts[host] = hosts.get(host, 0) + 1
    unlisted = [account for account, _ in entries if config and account.casefold() not in listed]
    if unlisted and not quiet:
        click.echo(f"warning: not in {config_path}: {', '.join(unlisted)} (stored for the default server)", err=True)
    if not quiet:
        where = ", ".join(f"{host}: {count}" for host, count in sorted(hosts.items()))
        click.echo(f"Stored {len(entries)} passwords in the keyring ({where}).")


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
            problems.append(f"line {number}: expected ACCOUNT, a TAB or a space, then the password")
        elif account.casefold() in seen:
            problems.append(f"line {number}: {account} given twice (first on line {seen[account.casefold()]})")
        else:
            seen[account.casefold()] = number
            entries.append((account, password))
    if problems:
        raise UsageError("; ".join(problems) + "; nothing stored")
    return entries
