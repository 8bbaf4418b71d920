"""`mailbackup auth set|delete|test`: passwords in the OS keyring."""

from __future__ import annotations

import sys

import click

from mailbackup import secrets
from mailbackup.cli.common import build_context, handle_errors, server_options, verbosity_options
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
