"""The first run of a staff member who knows only their address, at a real
terminal (a pseudo-terminal): `mailbackup backup you@coj.go.th` asks for the
password once, offers to remember it, backs up, verifies and explains; the
second run asks nothing.  The keyring is the test's own (tests/testkeyring.py,
in this test's directory), read back by a separate process; on a machine
with no safe keyring, nothing is offered."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import ssl
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import sample_mail  # scripts/ is put on sys.path by conftest
from conftest import ImapUser
from helpers import REPO, keyring_env, run_cli, server_args
from imapclient import IMAPClient

from mailbackup.archive import account_dir
from mailbackup.errors import ExitCode


def terminal_env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("MAILBACKUP_PASSWORD", "MAILBACKUP_LANG", "LC_ALL", "LC_MESSAGES", "LANG")}
    env.update({**keyring_env(home), "HOME": str(home), "LANG": "C.UTF-8", **extra})
    return env


def run_in_terminal(args: list[str], env: dict[str, str], answers: list[tuple[str, str]],
                    timeout: float = 90) -> tuple[int, str]:
    """`python -m mailbackup ARGS` with a terminal of its own (controlling
    tty: getpass reads /dev/tty); each (prompt, reply) is typed once the
    prompt has appeared.  The exit code and everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else
        try:
            os.chdir(REPO)
            os.execve(sys.executable, [sys.executable, "-m", "mailbackup", *args], env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    output, answered, pending = b"", 0, list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"no end after {timeout} s:\n{output.decode('utf-8', 'replace')}")
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            output += chunk
            text = output.decode("utf-8", "replace")
            while pending and (found := text.find(pending[0][0], answered)) >= 0:
                answered = found + len(pending[0][0])
                os.write(fd, pending.pop(0)[1].encode("utf-8"))
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert not pending, f"never asked {pending[0][0]!r}:\n{output.decode('utf-8', 'replace')}"
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")


def stored_password(env: dict[str, str], host: str, account: str) -> str | None:
    """What the keyring holds, asked by another process, as the next run would."""
    done = subprocess.run([sys.executable, "-c", "import keyring, sys; "
                           "print(keyring.get_password(sys.argv[1], sys.argv[2]))", f"mailbackup/{host}", account],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    value = done.stdout.rstrip("\n")
    return None if value == "None" else value


@pytest.fixture
def newcomer(imap_user: ImapUser) -> ImapUser:
    context = ssl.create_default_context(cafile=str(imap_user.cafile))
    with IMAPClient(imap_user.host, port=imap_user.port, ssl=True, ssl_context=context, timeout=30) as client:
        client.plain_login(imap_user.name, imap_user.password)
        sample_mail.fill_mailbox(client, sample_mail.sample_mailbox())
        client.logout()
    return imap_user


def test_first_run_asks_once_remembers_and_explains(newcomer: ImapUser, tmp_path: Path) -> None:
    dest = tmp_path / "mail-backup"
    args = ["backup", newcomer.name, *server_args(newcomer), "--dest", str(dest)]
    count = sum(len(messages) for messages in sample_mail.sample_mailbox().values())

    env = terminal_env(tmp_path, LANG="th_TH.UTF-8")  # a Thai desktop: the locale chooses the language
    code, screen = run_in_terminal(args, env, [(f"รหัสผ่านของ {newcomer.name}:", newcomer.password + "\n"),
                                               ("จดจำรหัสผ่านไว้ในเครื่องนี้หรือไม่? [Y/n]", "\n")])
    assert code == 0, screen
    assert newcomer.password not in screen  # typed without echo
    assert "จดจำรหัสผ่านไว้ในเครื่องนี้แล้ว" in screen
    assert f"กำลังสำรองข้อมูล {newcomer.name} จาก {newcomer.server_arg} ไปไว้ที่ {dest}" in screen
    assert f"เรียบร้อยแล้ว: จดหมายของ {newcomer.name} ทั้ง {count} ฉบับอยู่ในข้อมูลสำรองครบถ้วน" in screen
    report = account_dir(dest, newcomer.name) / "reports" / "verify.html"
    assert f"ข้อมูลสำรองของท่านอยู่ที่: {account_dir(dest, newcomer.name)}" in screen
    assert f"รายงาน (เปิดด้วยเว็บเบราว์เซอร์): {report}" in screen and report.is_file()
    assert stored_password(env, "localhost", newcomer.name) == newcomer.password

    code, screen = run_in_terminal(args, terminal_env(tmp_path), [])  # English now; nothing to type
    assert code == 0, screen
    assert "Password" not in screen and "Remember" not in screen
    assert "saved 0 messages" in screen  # incremental: nothing new
    assert f"Done: all {count} messages of {newcomer.name} are in the backup" in screen
    assert f"Report (open it in a web browser): {report}" in screen


def test_a_mistyped_password_is_never_kept(imap_user: ImapUser, tmp_path: Path) -> None:
    env = terminal_env(tmp_path)
    code, screen = run_in_terminal(
        ["backup", imap_user.name, *server_args(imap_user), "--dest", str(tmp_path / "dest"), "--lang", "th"], env,
        [(f"รหัสผ่านของ {imap_user.name}:", "not-my-password\n"), ("[Y/n]", "y\n")])
    assert code == ExitCode.AUTH, screen
    assert "ปฏิเสธการเข้าสู่ระบบ" in screen and "mailadmin@coj.go.th" in screen
    assert stored_password(env, "localhost", imap_user.name) is None


def test_without_a_safe_keyring_nothing_is_offered(newcomer: ImapUser, tmp_path: Path) -> None:
    """A headless server (no desktop keyring): the password is asked for, the
    backup runs, and no "Remember?" is asked only to fail afterwards."""
    env = terminal_env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    code, screen = run_in_terminal(["backup", newcomer.name, *server_args(newcomer), "--dest", str(tmp_path / "d")],
                                   env, [(f"Password for {newcomer.name}:", newcomer.password + "\n")])
    assert code == 0, screen
    assert "Remember" not in screen and "could not be remembered" not in screen
    assert "no safe keyring, so the password will be asked for again next time" in screen
    assert "password_file" in screen


def test_auth_set_without_a_safe_keyring_fails_before_asking(imap_user: ImapUser, tmp_path: Path) -> None:
    env = terminal_env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    code, screen = run_in_terminal(["auth", "set", imap_user.name, *server_args(imap_user)], env, [])
    assert code == ExitCode.USAGE, screen
    assert "Password" not in screen
    assert "no safe keyring on this machine" in screen and "password_file" in screen


def test_an_unreachable_server_is_said_before_any_password_is_asked(tmp_path: Path) -> None:
    """A mistyped or unreachable server: at a terminal nobody is asked for a password (or "Remember?")
    only to hear afterwards that the server was never reached; without one, the refusal is said, not
    "no password"."""
    args = ["backup", "you@coj.go.th", "--server", "127.0.0.1:1", "--dest", str(tmp_path / "dest")]
    code, screen = run_in_terminal(args, terminal_env(tmp_path), [])
    assert code == ExitCode.CONNECTION, screen
    assert "refused" in screen and "Password" not in screen and "Remember" not in screen
    done = run_cli(args, env={"HOME": str(tmp_path)})
    assert done.returncode == ExitCode.CONNECTION, done.stderr
    assert "refused" in done.stderr and "password" not in done.stderr.lower()
    assert not (tmp_path / "dest").exists()
