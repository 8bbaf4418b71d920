"""Where a password comes from, in the documented order:

1. ``MAILBACKUP_PASSWORD`` (one account per run),
2. the account's ``password_command`` (its first line of output),
3. the account's ``password_file`` (its first line; only a regular file of
   this user that group and others can neither read nor write, as ssh
   insists for keys),
4. the OS keyring (service ``mailbackup/<host>``, user = account),
5. a prompt, only when a person is at a terminal.

A password is stored only in a keyring that keeps it safe: keyrings.alt's
file backends (plain text or merely encoded), the fail and null backends, and
a chain holding any of them are refused (`keyring_problem`).

The only module that imports keyring.  Passwords are never logged.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from typing import Any

from mailbackup.errors import AuthError, PasswordUnavailable, UsageError
from mailbackup.i18n import _
from mailbackup.text import system_error

ENV_VARIABLE = "MAILBACKUP_PASSWORD"
Prompt = Callable[[str], str]
# Backends that keep a password in a file anyone with the file can read.
REFUSED_BACKEND_MODULES = ("keyrings.alt.", "keyring.backends.fail.", "keyring.backends.null.")
PASSWORD_FILE_LIMIT = 4096  # bytes read: a password file holds one line


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


def from_file(path: str, account: str) -> str:
    """The first line of `path`, read only when it is a regular file of this
    user that group and others can neither read nor write (POSIX; on
    Windows only the regular-file check applies)."""
    try:
        # O_NONBLOCK: a FIFO put in the file's place must not hang the run before fstat refuses it.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UsageError(_("password_file {path} for {account} cannot be read: {error}").format(
            path=path, account=account, error=system_error(exc))) from None
    try:
        _check_private(os.fstat(descriptor), path)
        data = os.read(descriptor, PASSWORD_FILE_LIMIT)
    finally:
        os.close(descriptor)
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0]:
        raise AuthError(_("password_file {path} for {account} holds no password on its first line").format(
            path=path, account=account))
    return lines[0]


def _check_private(status: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise UsageError(_("password_file {path} is not a regular file; refusing to read it").format(path=path))
    if os.name != "posix":
        return
    if status.st_uid != os.geteuid():
        raise UsageError(_("password_file {path} belongs to another user; refusing to read it").format(path=path),
                         hint=_("it must belong to the user who runs mailbackup"))
    if status.st_mode & 0o077:
        raise UsageError(_("password_file {path} can be read or written by others (mode {mode}); "
                           "refusing to read it").format(path=path, mode=format(stat.S_IMODE(status.st_mode), "04o")),
                         hint=_("run `chmod 600 {path}`").format(path=path))


def keyring_problem() -> str | None:
    """Why this machine's keyring cannot keep a password safely (a name to
    show), or None when it can."""
    import keyring

    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # any failure to load a backend means: no usable keyring
        return type(exc).__name__
    return _backend_name(backend) if _is_refused(backend) else None


def _backend_name(backend: Any) -> str:
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _is_refused(backend: Any) -> bool:
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        chained = list(backend.backends)
        return not chained or any(_is_refused(item) for item in chained)
    return f"{type(backend).__module__}.".startswith(REFUSED_BACKEND_MODULES)


def require_safe_keyring() -> None:
    """Fail before anything is asked or stored when no keyring keeps passwords safely here."""
    problem = keyring_problem()
    if problem is not None:
        raise UsageError(
            _("no safe keyring on this machine to store a password in ({backend})").format(backend=problem),
            hint=_("give the account a password_file (readable by you alone) or a password_command, "
                   "or set {variable}").format(variable=ENV_VARIABLE))


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

    require_safe_keyring()
    try:
        keyring.set_password(service_name(host), account, password)
    except (KeyringError, RuntimeError) as exc:
        raise UsageError(
            _("no usable keyring on this machine ({error})").format(error=type(exc).__name__),
            hint=_("give the account a password_file (readable by you alone) or a password_command, "
                   "or set {variable}").format(variable=ENV_VARIABLE),
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


def lookup(account: str, host: str, *, password_command: str | None = None, password_file: str | None = None,
           prompt: Prompt | None = None, use_env: bool = True) -> str:
    """The password for `account`, or PasswordUnavailable saying what to do."""
    if use_env and os.environ.get(ENV_VARIABLE):
        return os.environ[ENV_VARIABLE]
    if password_command:
        return from_command(password_command, account)
    if password_file:
        return from_file(password_file, account)
    found = _keyring_or_prompt(host, account, prompt)
    if found is not None:
        return found
    raise PasswordUnavailable(
        _("no password for {account}").format(account=account),
        hint=_("run `mailbackup auth set {account}`, or give it a password_file or a password_command, "
               "or set {variable}").format(account=account, variable=ENV_VARIABLE),
    )


TARGET_ENV_VARIABLE = "MAILBACKUP_TARGET_PASSWORD"


def _keyring_or_prompt(host: str, account: str, prompt: Prompt | None) -> str | None:
    """The last two places a password comes from: the keyring, then a person at a terminal."""
    stored = from_keyring(host, account)
    if stored:
        return stored
    if prompt is not None and sys.stdin.isatty():
        return prompt(account)
    return None


def lookup_target(account: str, host: str, *, prompt: Prompt | None = None) -> str:
    """The password of the target account of a restore or migration:
    ``MAILBACKUP_TARGET_PASSWORD``, then the keyring entry for the target
    host (``mailbackup auth set ACCOUNT --server HOST``), then a prompt on a
    terminal.  ``MAILBACKUP_PASSWORD`` belongs to the source and is never used."""
    if os.environ.get(TARGET_ENV_VARIABLE):
        return os.environ[TARGET_ENV_VARIABLE]
    found = _keyring_or_prompt(host, account, prompt)
    if found is not None:
        return found
    raise PasswordUnavailable(
        _("no password for the target account {account} on {host}").format(account=account, host=host),
        hint=_("set {variable}, or run `mailbackup auth set {account} --server {host}`").format(
            variable=TARGET_ENV_VARIABLE, account=account, host=host),
    )
