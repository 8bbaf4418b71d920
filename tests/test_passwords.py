"""Where passwords come from and where they may be kept, against real
Dovecot: the lookup order (MAILBACKUP_PASSWORD, password_command,
password_file, keyring, prompt); a password_file read only when it is a
regular file of this user closed to everyone else; no password stored in a
keyring that keeps it in the clear; `auth set` stores only what the server
accepted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring
import pytest
from conftest import ImapUser
from helpers import keyring_env, run_cli, server_args
from keyring.backends import fail, null
from keyring.backends.chainer import ChainerBackend
from testkeyring import SandboxKeyring

from mailbackup import secrets
from mailbackup.errors import ExitCode, UsageError

NULL_KEYRING = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def stored(directory: Path) -> dict[str, str]:
    """What the test's keyring holds (tests/testkeyring.py), as the next process would read it."""
    path = directory / "keyring.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


# -- password_file ---------------------------------------------------------------


def test_a_private_password_file_logs_in(imap_user: ImapUser, tmp_path: Path) -> None:
    secret = private_file(tmp_path / "pw", imap_user.password + "\nsecond line ignored\n")
    done = run_cli(["auth", "test", imap_user.name, *server_args(imap_user), "--password-file", str(secret)],
                   env=NULL_KEYRING)
    assert done.returncode == 0, done.stderr
    assert "OK: logged in" in done.stdout and imap_user.password not in done.stdout + done.stderr


@pytest.mark.skipif(os.name != "posix", reason="modes and owners are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_password_file_others_can_read_or_write_is_refused(imap_user: ImapUser, tmp_path: Path,
                                                             mode: int) -> None:
    secret = private_file(tmp_path / "pw", imap_user.password + "\n", mode)
    done = run_cli(["backup", imap_user.name, *server_args(imap_user), "--password-file", str(secret),
                    "--dest", str(tmp_path / "dest")], env=NULL_KEYRING)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert f"password_file {secret} can be read or written by others (mode {mode:04o})" in done.stderr
    assert f"chmod 600 {secret}" in done.stderr and done.stderr.count("\n") == 1
    assert imap_user.password not in done.stdout + done.stderr
    assert not (tmp_path / "dest").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file away")
def test_a_password_file_of_another_user_is_refused(imap_user: ImapUser, tmp_path: Path) -> None:
    secret = private_file(tmp_path / "pw", imap_user.password + "\n")
    os.chown(secret, 65534, 65534)
    done = run_cli(["auth", "test", imap_user.name, *server_args(imap_user), "--password-file", str(secret)],
                   env=NULL_KEYRING)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "belongs to another user" in done.stderr


def test_a_password_file_that_is_no_regular_file_is_refused(imap_user: ImapUser, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # a FIFO nobody writes to: reading it would hang the run
    config = tmp_path / "unit.yaml"
    config.write_text(f"defaults:\n  password_file: {tmp_path}\n", encoding="utf-8")  # a directory
    for option in (["--password-file", str(fifo)], ["--config", str(config)]):
        done = run_cli(["auth", "test", imap_user.name, *server_args(imap_user), *option], env=NULL_KEYRING,
                       timeout=60)
        assert done.returncode == ExitCode.USAGE, done.stderr
        assert "is not a regular file; refusing to read it" in done.stderr


def test_a_sweep_reads_each_accounts_password_file(imap_user: ImapUser, tmp_path: Path) -> None:
    """`{account}` in password_file, relative to the config: one file per mailbox, no keyring at all."""
    private_file(tmp_path / "passwords" / f"{imap_user.name}.pw", imap_user.password + "\n")
    config = tmp_path / "unit.yaml"
    config.write_text(f"defaults:\n  server: {imap_user.server_arg}\n  cafile: {imap_user.cafile}\n"
                      f"  dest: {tmp_path / 'dest'}\n  password_file: passwords/{{account}}.pw\n"
                      f"accounts:\n  - {imap_user.name}\n", encoding="utf-8")
    done = run_cli(["sweep", str(config)], env=NULL_KEYRING)
    assert done.returncode == 0, done.stderr
    assert imap_user.password not in done.stdout + done.stderr


def test_the_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBACKUP_TEST_KEYRING", str(tmp_path / "keyring.json"))
    monkeypatch.setattr(keyring.core, "_keyring_backend", SandboxKeyring())
    keyring.set_password(secrets.service_name("imap.example"), "a@coj.go.th", "from-keyring")
    secret = str(private_file(tmp_path / "pw", "from-file\n"))
    command = f"echo {'from-command'}"

    def lookup(**sources: str) -> str:
        return secrets.lookup("a@coj.go.th", "imap.example", **sources)  # type: ignore[arg-type]

    monkeypatch.setenv(secrets.ENV_VARIABLE, "from-env")
    assert lookup(password_command=command, password_file=secret) == "from-env"
    monkeypatch.delenv(secrets.ENV_VARIABLE)
    assert lookup(password_command=command, password_file=secret) == "from-command"
    assert lookup(password_file=secret) == "from-file"
    assert lookup() == "from-keyring"


# -- keyrings that would keep the password in the clear ----------------------------


class PlaintextKeyring(null.Keyring):
    """Stands for keyrings.alt's file keyring (not installed here: no user install pulls it in)."""


PlaintextKeyring.__module__ = "keyrings.alt.file"


def test_keyrings_that_keep_passwords_in_the_clear_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for backend in (PlaintextKeyring(), null.Keyring(), fail.Keyring()):
        monkeypatch.setattr(keyring.core, "_keyring_backend", backend)
        assert secrets.keyring_problem() is not None, backend
        with pytest.raises(UsageError, match="no safe keyring"):
            secrets.store_in_keyring("imap.example", "a@coj.go.th", "secret")
    monkeypatch.setattr(ChainerBackend, "backends", [SandboxKeyring(), PlaintextKeyring()])
    monkeypatch.setattr(keyring.core, "_keyring_backend", ChainerBackend())
    assert secrets.keyring_problem() == "keyring.backends.chainer.ChainerBackend"
    monkeypatch.setattr(ChainerBackend, "backends", [SandboxKeyring()])
    assert secrets.keyring_problem() is None


def test_auth_import_without_a_safe_keyring_stops_before_reading(tmp_path: Path) -> None:
    done = run_cli(["auth", "import"], env=NULL_KEYRING, input="a@coj.go.th s3cret\n")
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "no safe keyring on this machine" in done.stderr and "password_file" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr


def test_no_install_a_user_runs_pulls_in_keyrings_alt() -> None:
    setup = (Path(__file__).resolve().parent.parent / "setup.cfg").read_text(encoding="utf-8")
    assert "keyrings.alt" not in setup


# -- auth set: log in first ------------------------------------------------------


def test_auth_set_stores_only_a_password_the_server_accepted(imap_user: ImapUser, tmp_path: Path) -> None:
    env = keyring_env(tmp_path)
    refused = run_cli(["auth", "set", imap_user.name, *server_args(imap_user)], env=env, input="wrong-password\n")
    assert refused.returncode == ExitCode.AUTH, refused.stderr
    assert "login refused" in refused.stderr and "wrong-password" not in refused.stdout + refused.stderr
    assert stored(tmp_path) == {}

    accepted = run_cli(["auth", "set", imap_user.name, *server_args(imap_user)], env=env,
                       input=imap_user.password + "\n")
    assert accepted.returncode == 0, accepted.stderr
    assert stored(tmp_path) == {f"mailbackup/localhost\0{imap_user.name}": imap_user.password}


def test_auth_set_no_check_stores_without_logging_in(tmp_path: Path) -> None:
    """For a server that cannot be reached now: nothing listens on this port."""
    env = keyring_env(tmp_path)
    done = run_cli(["auth", "set", "a@coj.go.th", "--server", "127.0.0.1:9", "--no-check"], env=env,
                   input="later-password\n")
    assert done.returncode == 0, done.stderr
    assert stored(tmp_path) == {"mailbackup/127.0.0.1\0a@coj.go.th": "later-password"}
