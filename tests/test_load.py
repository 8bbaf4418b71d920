"""Load: a sweep of 50 accounts, several at once under a connection cap,
against Dovecot on loopback, with the server restarted in the middle.

The server comes back on new ports (DovecotServer.start picks free ones), so
the sweep talks to it through a loopback proxy that is pointed at the new
port.  Every account must end complete after at most one rerun, with every
message archived exactly once."""

from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sample_mail
from dovecot_server import DovecotServer, imap_utf7_encode
from helpers import REPO, state_rows
from netproxy import Proxy

from mailbackup.archive import account_dir

ACCOUNTS = 50
JOBS, CONNECTIONS = 8, 4
PASSWORD = "ทดสอบ-โหลด-50"
FOLDERS = {"INBOX": 8, "งานคดี": 4}


def names() -> list[str]:
    return [f"load{number:02d}@coj.go.th" for number in range(ACCOUNTS)]


def deliver(server: DovecotServer, user: str) -> dict[str, list[bytes]]:
    """Write the user's mail straight into the Maildir (50 IMAP logins would cost more than the test)."""
    box: dict[str, list[bytes]] = {}
    for folder, count in FOLDERS.items():
        directory = server.maildir(user) if folder == "INBOX" else server.maildir(user) / imap_utf7_encode(folder)
        for sub in ("cur", "new", "tmp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        bodies = [sample_mail.thai_letter(hash((user, folder, n)) % 10_000, sample_mail._DEFAULT_DATE)
                  for n in range(count)]
        for number, body in enumerate(bodies):
            (directory / "cur" / f"1700000000.M{number}P1.load,S={len(body)}:2,S").write_bytes(body)
        box[folder] = bodies
    server.fix_ownership(server.home(user))
    return box


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DovecotServer, dict[str, dict]]]:
    server = DovecotServer()
    server.start()
    try:
        mailboxes = {}
        for user in names():
            server.add_user(user, PASSWORD)
            mailboxes[user] = deliver(server, user)
        yield server, mailboxes
    finally:
        server.stop()


def sweep(config: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mailbackup", "sweep", str(config), "--retry-delay", "0.2",
                             "--log-file", str(log)], cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={k: v for k, v in os.environ.items()
                                                         if k != "MAILBACKUP_PASSWORD"})


def test_fifty_accounts_survive_a_server_restart(loaded, tmp_path):
    server, mailboxes = loaded
    dest = tmp_path / "dest"
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    with Proxy("127.0.0.1", server.port) as proxy:
        config = tmp_path / "sweep.yaml"
        config.write_text(
            f"defaults:\n  server: localhost:{proxy.port}\n  cafile: {server.cafile}\n  dest: {dest}\n"
            f"  password_command: cat {password_file}\n  jobs: {JOBS}\n"
            f"  max_connections_per_server: {CONNECTIONS}\n  timeout: 5\n"
            "accounts:\n" + "".join(f"  - {user}\n" for user in names()), encoding="utf-8")

        first = sweep(config, tmp_path / "first.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            started = len(list(dest.glob("*/state.sqlite3"))) if dest.exists() else 0
            if started >= ACCOUNTS // 3:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the sweep ended before the restart: make the mailboxes bigger"
        server.stop(remove_dir=False)  # mid-sweep: accounts in flight lose their connection
        time.sleep(0.5)
        server.start()
        proxy.target = ("127.0.0.1", server.port)
        out, err = first.communicate(timeout=240)
        assert first.returncode in (0, 1, 4), (first.returncode, out, err[-4000:])
        assert "Traceback" not in err

        rerun = sweep(config, tmp_path / "rerun.log")
        out, err = rerun.communicate(timeout=240)
        assert rerun.returncode == 0, (out, err[-4000:])
        assert proxy.max_active <= CONNECTIONS, proxy.max_active

    for user, box in mailboxes.items():
        expected = collections.Counter(hashlib.sha256(body).hexdigest() for bodies in box.values() for body in bodies)
        rows = state_rows(dest, user, "SELECT sha256 FROM messages WHERE gone_at IS NULL")
        assert collections.Counter(sha for (sha,) in rows) == expected, user  # all there, none twice
        files = [path for path in (account_dir(dest, user) / "mail").rglob("*") if path.parent.name == "cur"]
        assert len(files) == sum(expected.values()), user  # no stray second copy on disk either
