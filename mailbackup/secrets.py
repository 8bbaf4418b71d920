"""Where a password comes from, in the documented order:

1. ``MAILBACKUP_PASSWORD`` (one account per run),
2. the account's ``password_command`` (its first line of output),
3. the OS keyring (service ``mailbackup/<host>``, user = account),
4. a prompt, only when a person is at a terminal.

The only module that imports keyring.  Passwords are never logged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from mailbackup.errors import AuthError, PasswordUnavailable, UsageError
from mailbackup.i18n import _

ENV_VARIABLE = "MAILBACKUP_PASSWORD"
Prompt = Callable[[str], str]


def service_name(host: str) -> str:
    return f"mailbackup/{host.lower()}"


def from_command(command: str, account: str) -> str:
    import shlex  # here: only a configured password_command needs them (start-up time)
    import subprocess

    try:
        args = shlex.split(command, posix=os.name != "nt")
        completed = subprocess.run(args, capture_output=True, timeout=60, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise AuthError(_("password_command for {account} could not run: {error}").format(
            account=account, error=type(exc).__name__)) from None
    if completed.returncode != 0:
        raise AuthError(_("password_command for {account} failed with exit code {code}").format(
            account=account, code=completed.returncode))
    lines = completed.stdout.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0]:
        raise AuthError(_("password_command for {account} printed no password").format(account=account))
    return lines[0]


def from_keyring(host: str, account: str) -> str | None:
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(service_name(host), account)
    except (KeyringError, RuntimeError):
        return None


def store_in_keyring(host: str, account: str, password: str) -> None:
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(service_name(host), account, password)
    except (KeyringError, RuntimeError) as exc:
        raise UsageError(
            _("no usable keyring on this machine ({error})").format(error=type(exc).__name__),
            hint=_("set {variable} or a password_command instead").format(variable=ENV_VARIABLE),
        ) from None


def delete_from_keyring(host: str, account: str) -> bool:
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(service_name(host), account)
        return True
    except PasswordDeleteError:
        return False
    except (KeyringError, RuntimeError) as exc:
        raise UsageError(_("no usable keyring on this machine ({error})").format(error=type(exc).__name__)) from None


def lookup(account: str, host: str, *, password_command: str | None = None,
           prompt: Prompt | None = None, use_env: bool = True) -> str:
    """The password for `account`, or PasswordUnavailable saying what to do."""
    if use_env and os.environ.get(ENV_VARIABLE):
        return os.environ[ENV_VARIABLE]
    if password_command:
        return from_command(password_command, account)
    stored = from_keyring(host, account)
    if stored:
        return stored
    if prompt is not None and sys.stdin.isatty():
        return prompt(account)
    raise PasswordUnavailable(
        _("no password for {account}").format(account=account),
        hint=_("run `mailbackup auth set {account}`, or set {variable} or a password_command").format(
            account=account, variable=ENV_VARIABLE),
    )


TARGET_ENV_VARIABLE = "MAILBACKUP_TARGET_PASSWORD"


def lookup_target(account: str, host: str, *, prompt: Prompt | None = None) -> str:
    """The password of the target account of a restore or migration:
    ``MAILBACKUP_TARGET_PASSWORD``, then the keyring entry for the target
    host (``mailbackup auth set ACCOUNT --server HOST``), then a prompt on a
    terminal.  ``MAILBACKUP_PASSWORD`` belongs to the source and is never used."""
    if os.environ.get(TARGET_ENV_VARIABLE):
        return os.environ[TARGET_ENV_VARIABLE]
    stored = from_keyring(host, account)
    if stored:
        return stored
    if prompt is not None and sys.stdin.isatty():
        return prompt(account)
    raise PasswordUnavailable(
        _("no password for the target account {account} on {host}").format(account=account, host=host),
        hint=_("set {variable}, or run `mailbackup auth set {account} --server {host}`").format(
            variable=TARGET_ENV_VARIABLE, account=account, host=host),
    )
