"""Sweeps against real Dovecot servers: many accounts in parallel, one failing
account never stopping the others, the worst exit code, combined reports;
`check`; a server that pushes back (too many connections, throttling) waited
out within a bound; connection and bandwidth limits; shards; stopping.

Unit tests of the pieces (pushback recognition, budgets, token bucket,
shards, severity, dispatcher) come last."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
import sample_mail
from cli_run import validated
from conftest import ImapUser, new_user
from dovecot_server import DovecotServer
from helpers import REPO, archive_contents, run_cli
from netproxy import Proxy

from mailbackup.archive import account_dir
from mailbackup.cli.auth import parse_password_lines
from mailbackup.config import AccountSettings, SweepSettings
from mailbackup.errors import (
    AuthError,
    ConnectError,
    ExitCode,
    FolderError,
    Interrupted,
    PasswordUnavailable,
    ServerBusy,
    ServerError,
    TLSError,
    UsageError,
)
from mailbackup.imap.pushback import WaitBudget, pushback_of, recognise, told_wait
from mailbackup.model import ConnectionSettings, ServerAddress
from mailbackup.sweep.dispatch import Again, Dispatcher, Job
from mailbackup.sweep.limits import ServerLimits, TokenBucket
from mailbackup.sweep.logins import CHECK_COLUMNS, login_problem
from mailbackup.sweep.options import Shard, select_accounts

STAFF = [("นาย", "สมชาย", "ใจดี", "นิติกรชำนาญการ"), ("นางสาว", "มาลี", "ศรีสุข", "เจ้าพนักงานศาลยุติธรรม"),
         ("นาง", "วิภา", "ทองดี", "ผู้อำนวยการ"), ("นาย", "ประเสริฐ", "มั่นคง", "ผู้พิพากษา")]
THROTTLED = b"NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 200 milliseconds"
# The representative sweeps run both ways: accounts in threads of the sweep's process, and in worker processes.
BOTH_WAYS = pytest.mark.parametrize("workers", ["threads", "processes"])


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def letters(count: int, start: int) -> list[bytes]:
    return [sample_mail.thai_letter(start + i, sample_mail._DEFAULT_DATE) for i in range(count)]


def mailboxes(server: DovecotServer, count: int, connect: Callable[..., Any]) -> list[ImapUser]:
    """`count` fresh users, each with three letters in INBOX and one in งานคดี."""
    users = [new_user(server) for _ in range(count)]
    for index, user in enumerate(users):
        client = connect(user)
        sample_mail.fill_mailbox(client, {"INBOX": letters(3, index * 10), "งานคดี": letters(1, index * 10 + 5)})
        client.logout()
    return users


def keyring_env(tmp_path: Path) -> dict[str, str]:
    """A keyring of this test's own (tests/testkeyring.py): what `auth import` fills and the sweep reads."""
    return {**helpers.keyring_env(tmp_path), "HOME": str(tmp_path)}


def write_config(path: Path, users: list[ImapUser], *, server: str, cafile: Path, dest: Path,
                 defaults: str = "", per_account: Callable[[ImapUser], str] | None = None) -> Path:
    lines = ["defaults:", f"  server: {server}", f"  cafile: {cafile}", f"  dest: {dest}", "  unit: ศาลแพ่ง",
             *(f"  {line}" for line in defaults.splitlines()), "accounts:"]
    for index, user in enumerate(users):
        title, name, surname, position = STAFF[index % len(STAFF)]
        lines += [f"  - account: {user.name}", f"    title: {title}", f"    name: {name}{index}",
                  f"    surname: {surname}", f"    position: {position}"]
        lines += [f"    {line}" for line in (per_account(user) if per_account else "").splitlines()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def import_passwords(config: Path, env: dict[str, str], passwords: dict[str, str]) -> None:
    lines = "".join(f"{account}\t{password}\n" for account, password in passwords.items())
    done = run_cli(["auth", "import", "--config", str(config)], env=env, input=lines)
    assert done.returncode == 0, done.stderr
    assert f"Stored {len(passwords)} passwords" in done.stdout
    assert not any(password in done.stdout + done.stderr for password in passwords.values())


def sweep_rows(report_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((report_dir / "sweep.json").read_text(encoding="utf-8"))
    return {row["account"]: row for row in data["accounts"]}


def csv_rows(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel on Thai Windows needs the BOM
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


# ---------------------------------------------------------------------------
# A sweep of twenty accounts
# ---------------------------------------------------------------------------


@BOTH_WAYS
def test_sweep_of_twenty_accounts(dovecot_server: DovecotServer, imap_client_factory: Callable[..., Any],
                                  tmp_path: Path, workers: str) -> None:
    """Twenty accounts, four at once, at most three connections toward the
    server; one wrong password and one folder the server cannot read are
    reported while the rest complete; the exit code is the worst (3)."""
    users = mailboxes(dovecot_server, 20, imap_client_factory)
    wrong, broken = users[3], users[7]
    env = keyring_env(tmp_path)
    dest, log_file = tmp_path / "dest", tmp_path / "logs" / "sweep.log"
    with Proxy("127.0.0.1", dovecot_server.port) as proxy:  # only to count the connections
        config = write_config(tmp_path / "unit.yaml", users, server=f"localhost:{proxy.port}",
                              cafile=dovecot_server.cafile, dest=dest, defaults="max_connections_per_server: 3")
        import_passwords(config, env, {user.name: "ผิด" + user.password if user is wrong else user.password
                                       for user in users})
        folder = dovecot_server.folder_dir(broken.name, "งานคดี")
        mode = folder.stat().st_mode
        folder.chmod(0)
        try:
            started = time.monotonic()
            done = run_cli(["sweep", str(config), "--jobs", "4", "--log-file", str(log_file),
                            "--retry-delay", "0.05", "-v", "--workers", workers], env=env)
            seconds = time.monotonic() - started
        finally:
            folder.chmod(mode)
        peak = proxy.max_active
    assert done.returncode == ExitCode.AUTH, done.stdout + done.stderr
    assert peak <= 3, f"{peak} connections at once toward one server"
    rows = sweep_rows(dest / "reports")
    assert len(rows) == 20
    for user in users:
        row = rows[user.name]
        if user is wrong:
            assert (row["backup"], row["exit_code"]) == ("failed", ExitCode.AUTH)
            assert "AUTHENTICATIONFAILED" in row["error"]
        elif user is broken:
            # (After the failed access Dovecot lists the folder \Noselect, and verify/check.py then skips it as
            # "excluded"; so the backup's finding is what reports the folder here.)
            assert (row["backup"], row["exit_code"]) == ("warnings", ExitCode.WARNINGS)
            assert any("งานคดี" in problem and "SERVERBUG" in problem for problem in row["problems"]), row["problems"]
            stored = archive_contents(dest, user.name)
            assert {name: len(messages) for name, messages in stored.items()} == {"INBOX": 3, "งานคดี": 0}
        else:
            assert (row["backup"], row["verify"], row["exit_code"], row["messages"]) == ("ok", "complete", 0, 4), row
            stored = archive_contents(dest, user.name)
            assert {name: len(messages) for name, messages in stored.items()} == {"INBOX": 3, "งานคดี": 1}
        assert row["staff"]["unit"] == "ศาลแพ่ง" and row["staff"]["name"].endswith(str(users.index(user)))
    summary = validated(dest / "reports" / "summary.json", "summary")  # the schema of `mailbackup report`
    totals = summary["totals"]
    assert (totals["accounts"], totals["never_verified"]) == (20, 1) and totals["complete"] >= 18
    table = csv_rows(dest / "reports" / "sweep.csv")
    assert table[0]["ชื่อ/name"] == "สมชาย0" and {row["account"] for row in table} == set(rows)
    assert "20 accounts" in done.stdout and "Exit code 3 (auth)" in done.stdout
    log = log_file.read_text(encoding="utf-8")
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in log.splitlines())
    assert all(f"{user.name}: backup" in log for user in users)
    assert not any(user.password in log + done.stdout + done.stderr for user in users)
    print(f"sweep of 20 accounts, --jobs 4: {seconds:.1f} s")


def test_check_lists_who_cannot_log_in(dovecot_server: DovecotServer, imap_user_factory: Callable[..., Any],
                                       tmp_path: Path) -> None:
    """The survey form: wrong password, account gone, no password here,
    server down; Thai and English columns; exit code the worst (3)."""
    good, wrong, unstored = (imap_user_factory(dovecot_server) for _ in range(3))
    gone = ImapUser("left.last.year@coj.go.th", "x", good.server_arg, good.cafile, good.maildir, good.server)
    with socket.socket() as probe:  # a port where nothing listens: the server is down
        probe.bind(("127.0.0.1", 0))
        down_port = probe.getsockname()[1]
    users = [good, wrong, unstored, gone]
    config = write_config(tmp_path / "unit.yaml", users, server=good.server_arg, cafile=good.cafile,
                          dest=tmp_path / "dest")
    down = f"  - account: archive@coj.go.th\n    name: สารบรรณ\n    server: 127.0.0.1:{down_port}\n"
    config.write_text(config.read_text(encoding="utf-8") + down, encoding="utf-8")
    env = keyring_env(tmp_path)
    import_passwords(config, env, {good.name: good.password, wrong.name: "รหัสเก่า", gone.name: "anything",
                                   "archive@coj.go.th": "x"})
    report = tmp_path / "แจ้งรายชื่อ.csv"
    done = run_cli(["check", str(config), "--csv", str(report)], env=env)
    assert done.returncode == ExitCode.AUTH, done.stdout + done.stderr  # auth is worse than a server down
    assert "1 of 5 accounts can log in." in done.stdout
    assert "สมชาย0" not in done.stdout and "มาลี1" in done.stdout  # only who cannot, with Thai names
    rows = csv_rows(report)
    assert list(rows[0]) == list(CHECK_COLUMNS)
    problems = {row["บัญชี/account"]: row["ปัญหา/problem"] for row in rows}
    assert set(problems) == {wrong.name, unstored.name, gone.name, "archive@coj.go.th"}
    assert problems[wrong.name].startswith("รหัสผ่านไม่ถูกต้อง") and "wrong password" in problems[wrong.name]
    assert problems[gone.name] == problems[wrong.name]  # servers do not tell the two apart
    assert "no password stored" in problems[unstored.name]
    assert "server down" in problems["archive@coj.go.th"]
    assert rows[0]["คำนำหน้า/title"] == "นางสาว" and rows[0]["หน่วยงาน/unit"] == "ศาลแพ่ง"
    assert not any(user.password in report.read_text(encoding="utf-8-sig") for user in users)


# ---------------------------------------------------------------------------
# Server pushback
# ---------------------------------------------------------------------------


@pytest.fixture
def crowded_server() -> Iterator[DovecotServer]:
    """A real Dovecot allowing two connections per user and IP (Dovecot's own
    default is ten): the third login gets ``NO [LIMIT] Maximum number of
    connections from user+IP exceeded``."""
    server = DovecotServer()
    server.start()
    try:
        text = server.conf_path.read_text(encoding="utf-8")
        server.conf_path.write_text(re.sub(r"mail_max_userip_connections = \d+", "mail_max_userip_connections = 2",
                                           text), encoding="utf-8")
        server.reload()
        yield server
    finally:
        server.stop()


@BOTH_WAYS
def test_too_many_connections_is_waited_out_while_others_run(crowded_server: DovecotServer,
                                                             imap_client_factory: Callable[..., Any],
                                                             tmp_path: Path, workers: str) -> None:
    """Somchai has Thunderbird open at the office and at home: his server
    refuses a third connection.  The sweep puts him back in the queue, backs
    up the others meanwhile, and gets him once a Thunderbird closes."""
    users = mailboxes(crowded_server, 3, imap_client_factory)
    busy = users[0]
    held = [imap_client_factory(busy), imap_client_factory(busy)]
    threading.Timer(1.5, lambda: [client.logout() for client in held]).start()
    env = keyring_env(tmp_path)
    config = write_config(tmp_path / "unit.yaml", users, server=crowded_server.server_arg,
                          cafile=crowded_server.cafile, dest=tmp_path / "dest")
    import_passwords(config, env, {user.name: user.password for user in users})
    log_file = tmp_path / "sweep.log"
    done = run_cli(["sweep", str(config), "--jobs", "1", "--retry-delay", "0.2", "--log-file", str(log_file),
                    "--workers", workers], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = sweep_rows(tmp_path / "dest" / "reports")
    assert rows[busy.name]["attempts"] >= 2 and rows[busy.name]["busy_waited_seconds"] > 0
    assert rows[busy.name]["verify"] == "complete"
    log = log_file.read_text(encoding="utf-8")
    assert "Maximum number of connections from user+IP exceeded" in log and "back in the queue" in log
    finished = [log.index(f"{user.name}: backup ok") for user in users]
    assert finished[0] > max(finished[1:])  # the others did not wait for him


def sweep_through(proxy: Proxy, server: DovecotServer, users: list[ImapUser], tmp_path: Path,
                  *options: str) -> subprocess.CompletedProcess[str]:
    """`mailbackup sweep` of `users`, reaching `server` through `proxy`."""
    env = keyring_env(tmp_path)
    config = write_config(tmp_path / "unit.yaml", users, server=f"localhost:{proxy.port}", cafile=server.cafile,
                          dest=tmp_path / "dest")
    import_passwords(config, env, {user.name: user.password for user in users})
    return run_cli(["sweep", str(config), "--retry-delay", "0.1", *options], env=env)


def test_accounts_that_start_while_the_server_is_down_are_tried_again(dovecot_server: DovecotServer,
                                                                      imap_client_factory: Callable[..., Any],
                                                                      tmp_path: Path) -> None:
    """The server restarts just as the night's sweep begins: the first
    connections are closed before a greeting.  Those accounts go back in the
    queue and are backed up when the server answers again."""
    users = mailboxes(dovecot_server, 2, imap_client_factory)
    log_file = tmp_path / "sweep.log"
    with Proxy(dovecot_server.host, dovecot_server.port, reject_first=3) as proxy:
        done = sweep_through(proxy, dovecot_server, users, tmp_path, "--jobs", "2", "--log-file", str(log_file))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = sweep_rows(tmp_path / "dest" / "reports")
    assert sum(row["attempts"] for row in rows.values()) >= 4  # three refused, then one each
    assert all(row["verify"] == "complete" for row in rows.values())
    assert "cannot reach the server" in log_file.read_text(encoding="utf-8")


def test_a_server_down_for_good_fails_the_account_after_its_retries(dovecot_server: DovecotServer,
                                                                     imap_client_factory: Callable[..., Any],
                                                                     tmp_path: Path) -> None:
    users = mailboxes(dovecot_server, 1, imap_client_factory)
    with Proxy(dovecot_server.host, dovecot_server.port, reject_first=1000) as proxy:
        done = sweep_through(proxy, dovecot_server, users, tmp_path, "--retries", "2")
        connections = proxy.connections
    assert done.returncode == ExitCode.CONNECTION, done.stdout + done.stderr
    assert connections == 3  # the first try and two more, then it gave up
    assert not account_dir(tmp_path / "dest", users[0].name).exists()  # no empty archive either


def test_bye_too_many_connections_before_starttls_is_retried(dovecot_server: DovecotServer,
                                                              imap_client_factory: Callable[..., Any],
                                                              tmp_path: Path) -> None:
    """A server that greets with ``* BYE Too many connections`` (plain text,
    before STARTTLS): each account is tried again until it gets in."""
    users = mailboxes(dovecot_server, 2, imap_client_factory)
    banner = b"* BYE Too many connections, try again later\r\n"
    env = keyring_env(tmp_path)
    with Proxy(dovecot_server.starttls_host, dovecot_server.starttls_port, reject_first=3,
               reject_banner=banner) as proxy:
        config = write_config(tmp_path / "unit.yaml", users, server=f"localhost:{proxy.port}",
                              cafile=dovecot_server.cafile, dest=tmp_path / "dest", defaults="starttls: true")
        import_passwords(config, env, {user.name: user.password for user in users})
        done = run_cli(["sweep", str(config), "--jobs", "2", "--retry-delay", "0.1"], env=env)
        connections = proxy.connections
    assert done.returncode == 0, done.stdout + done.stderr
    assert connections >= 5  # three refused, then one per account
    rows = sweep_rows(tmp_path / "dest" / "reports")
    assert sum(row["attempts"] for row in rows.values()) >= 5
    assert all(row["verify"] == "complete" for row in rows.values())


class ThrottlingFront:
    """TLS in front of the REAL Dovecot, answering EXAMINE/SELECT itself with
    Office 365's ``NO [UNAVAILABLE] Request is throttled. Suggested Backoff
    Time: 200 milliseconds`` the first `times` times (None: always).  No
    server we can run here says this, so only that reply is scripted; every
    other byte is Dovecot's.  (The loopback proxy cannot do it: it never sees
    inside TLS.)  Like a server, it answers in the order it was asked: its
    reply waits until Dovecot has answered every command sent before."""

    def __init__(self, server: DovecotServer, times: int | None, *, in_order: bool = True) -> None:
        self.server = server
        self.times = times
        self.in_order = in_order  # False: the reply goes out at once, ahead of earlier commands' answers
        self.throttled = 0
        cert, key = server.make_cert("good")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        upstream_context = ssl.create_default_context(cafile=str(self.server.cafile))
        try:
            with self.context.wrap_socket(raw, server_side=True) as client, upstream_context.wrap_socket(
                    socket.create_connection(("127.0.0.1", self.server.port)), server_hostname="localhost") as up:
                lock = threading.Condition()
                waiting: set[bytes] = set()  # tags sent to Dovecot, not answered yet
                threading.Thread(target=self._down, args=(up, client, lock, waiting), daemon=True).start()
                self._up(client, up, lock, waiting)
        except OSError:
            pass

    def _down(self, up: ssl.SSLSocket, client: ssl.SSLSocket, lock: threading.Condition, waiting: set[bytes]) -> None:
        partial = b""
        try:
            while data := up.recv(65536):
                with lock:
                    client.sendall(data)
                    *lines, partial = (partial + data).split(b"\r\n")
                    waiting.difference_update(line.split(b" ", 1)[0] for line in lines
                                              if re.match(rb"\S+ (OK|NO|BAD)\b", line, re.I))
                    lock.notify_all()
        except OSError:
            pass
        finally:
            with lock:
                client.close()

    def _up(self, client: ssl.SSLSocket, up: ssl.SSLSocket, lock: threading.Condition, waiting: set[bytes]) -> None:
        reader = client.makefile("rb")
        while line := reader.readline():
            command = re.match(rb"(\S+) (?:EXAMINE|SELECT) ", line, re.I)
            if command and (self.times is None or self.throttled < self.times):
                self.throttled += 1
                with lock:
                    lock.wait_for(lambda: not (waiting and self.in_order), timeout=5)
                    client.sendall(command.group(1) + b" " + THROTTLED + b"\r\n")
                continue
            if tagged := re.match(rb"([A-Za-z0-9]+) [A-Za-z]", line):
                with lock:
                    waiting.add(tagged.group(1))
            up.sendall(line)
            literal = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if literal:
                up.sendall(reader.read(int(literal.group(1))))


def test_throttling_is_waited_as_told_and_bounded(dovecot_server: DovecotServer,
                                                  imap_client_factory: Callable[..., Any], tmp_path: Path) -> None:
    """One server throttles three times: the sweep waits 200 ms each time, as
    told, and completes.  Another throttles forever: its account gives up
    once it has waited --max-busy-wait in all, and is reported."""
    patient, hopeless = mailboxes(dovecot_server, 2, imap_client_factory)
    fronts = {patient.name: ThrottlingFront(dovecot_server, 3), hopeless.name: ThrottlingFront(dovecot_server, None)}
    env = keyring_env(tmp_path)
    try:
        config = write_config(tmp_path / "unit.yaml", [patient, hopeless], server=dovecot_server.server_arg,
                              cafile=dovecot_server.cafile, dest=tmp_path / "dest",
                              per_account=lambda user: f"server: localhost:{fronts[user.name].port}")
        import_passwords(config, env, {user.name: user.password for user in (patient, hopeless)})
        started = time.monotonic()
        done = run_cli(["sweep", str(config), "--jobs", "2", "--retry-delay", "0.05", "--max-busy-wait", "1.5"],
                       env=env)
        seconds = time.monotonic() - started
    finally:
        for front in fronts.values():
            front.close()
    assert done.returncode == ExitCode.WARNINGS, done.stdout + done.stderr
    rows = sweep_rows(tmp_path / "dest" / "reports")
    assert fronts[patient.name].throttled == 3
    assert (rows[patient.name]["backup"], rows[patient.name]["verify"]) == ("ok", "complete")
    assert rows[patient.name]["busy_waited_seconds"] == pytest.approx(0.6)
    assert rows[hopeless.name]["backup"] == "warnings" and rows[hopeless.name]["exit_code"] == ExitCode.WARNINGS
    assert 1.2 <= rows[hopeless.name]["busy_waited_seconds"] <= 1.5
    assert any("Request is throttled" in problem for problem in rows[hopeless.name]["problems"])
    assert seconds < 20


# ---------------------------------------------------------------------------
# Limits, shards, stopping
# ---------------------------------------------------------------------------


@BOTH_WAYS
def test_bandwidth_limit_is_shared_by_the_accounts_of_a_server(dovecot_server: DovecotServer,
                                                               imap_client_factory: Callable[..., Any],
                                                               tmp_path: Path, workers: str) -> None:
    users = [new_user(dovecot_server) for _ in range(2)]
    for seed, user in enumerate(users):
        client = imap_client_factory(user)
        sample_mail.fill_mailbox(client, {"INBOX": [sample_mail.big_message(300_000, seed=seed)]})
    env = keyring_env(tmp_path)
    config = write_config(tmp_path / "unit.yaml", users, server=dovecot_server.server_arg,
                          cafile=dovecot_server.cafile, dest=tmp_path / "dest",
                          defaults="max_bytes_per_second: 200000")
    import_passwords(config, env, {user.name: user.password for user in users})
    started = time.monotonic()
    done = run_cli(["sweep", str(config), "--jobs", "2", "--no-verify", "--workers", workers], env=env)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    # 600 KB through one 200 KB/s bucket (a 200 KB burst free): 2 s at least, both accounts at once or not.
    assert seconds >= 2.0
    assert all(row["verify"] == "skipped" for row in sweep_rows(tmp_path / "dest" / "reports").values())


def test_shards_split_the_accounts_between_machines(dovecot_server: DovecotServer,
                                                    imap_client_factory: Callable[..., Any], tmp_path: Path) -> None:
    users = mailboxes(dovecot_server, 6, imap_client_factory)
    env = keyring_env(tmp_path)
    config = write_config(tmp_path / "unit.yaml", users, server=dovecot_server.server_arg,
                          cafile=dovecot_server.cafile, dest=tmp_path / "dest")
    import_passwords(config, env, {user.name: user.password for user in users})
    done: dict[int, set[str]] = {}
    for index in (1, 2):
        result = run_cli(["sweep", str(config), "--shard", f"{index}/2", "--no-verify", "-q"], env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout == result.stderr == ""  # --quiet and all well: nothing for cron to mail
        done[index] = set(sweep_rows(tmp_path / "dest" / "reports" / f"shard-{index}-of-2"))
    assert done[1] | done[2] == {user.name for user in users} and not done[1] & done[2]


@BOTH_WAYS
def test_sigterm_stops_the_sweep_and_reports_what_was_done(dovecot_server: DovecotServer,
                                                           imap_client_factory: Callable[..., Any],
                                                           tmp_path: Path, workers: str) -> None:
    """systemd stopping the service: running accounts finish their batch,
    the others are listed as not done, the reports are written, exit 130."""
    users = mailboxes(dovecot_server, 4, imap_client_factory)
    env = keyring_env(tmp_path)
    with Proxy("127.0.0.1", dovecot_server.port, latency=0.05) as proxy:
        config = write_config(tmp_path / "unit.yaml", users, server=f"localhost:{proxy.port}",
                              cafile=dovecot_server.cafile, dest=tmp_path / "dest")
        import_passwords(config, env, {user.name: user.password for user in users})
        log_file = tmp_path / "sweep.log"
        environment = {**{k: v for k, v in os.environ.items() if k != "MAILBACKUP_PASSWORD"}, **env}
        process = subprocess.Popen([sys.executable, "-m", "mailbackup", "sweep", str(config), "--jobs", "1",
                                    "--log-file", str(log_file), "--workers", workers], cwd=REPO, env=environment,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (log_file.exists() and
                                                   "backup started" in log_file.read_text(encoding="utf-8")):
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, out + err
    rows = sweep_rows(tmp_path / "dest" / "reports")
    assert any("not done: the sweep was stopped" in row["problems"] for row in rows.values())
    assert all(row["exit_code"] in (ExitCode.OK, ExitCode.INTERRUPTED) for row in rows.values())
    assert "Interrupted" in err


# ---------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------

PUSHBACK = [
    ("Request is throttled. Suggested Backoff Time: 1500 milliseconds", "throttled", 1.5),
    ("[LIMIT] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)",
     "limit reached", None),
    ("Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)",
     "too many connections", None),
    ("[UNAVAILABLE] Temporary authentication failure. [host:2026-01-01 10:00:00]", "unavailable", None),
    ("[OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)", "over quota", None),
    ("* BYE [ALERT] Too many simultaneous connections. (Failure)", "too many connections", None),
    ("* BYE Too many connections, try again in 30 seconds", "too many connections", 30.0),
    ("[INUSE] Mailbox in use, try again later", "in use", None),
    ("Server busy, please wait 2 minutes", "server busy", 120.0),
]
NOT_PUSHBACK = [
    "[AUTHENTICATIONFAILED] Authentication failed.",
    "[SERVERBUG] Internal error occurred. Refer to server log for more information.",
    "[NONEXISTENT] Mailbox doesn't exist: Archive",
    "socket error: EOF",
    "[ALERT] Please log in via your web browser",
]


@pytest.mark.parametrize(("text", "reason", "wait"), PUSHBACK)
def test_pushback_is_recognised(text: str, reason: str, wait: float | None) -> None:
    pushback = recognise(text)
    assert pushback is not None and pushback.reason == reason and pushback.wait_seconds == wait


@pytest.mark.parametrize("text", NOT_PUSHBACK)
def test_other_refusals_are_not_pushback(text: str) -> None:
    assert recognise(text) is None


def test_told_waits_are_read_in_any_unit_and_capped() -> None:
    assert told_wait("Suggested Backoff Time: 250 ms") == 0.25
    assert told_wait("retry after 5 s") == 5.0
    assert told_wait("try again in 100000 minutes") == 3600.0


def test_pushback_is_found_behind_a_folder_error() -> None:
    busy = ServerBusy("throttled", wait_seconds=0.2)
    try:
        try:
            raise busy
        except ServerError as exc:
            raise FolderError(f"cannot open folder 'INBOX': {exc.message}") from None
    except FolderError as wrapped:
        assert pushback_of(wrapped) is busy
    assert pushback_of(FolderError("no such folder")) is None and pushback_of(AuthError("no")) is None


def test_wait_budget_waits_as_told_then_gives_up() -> None:
    slept: list[float] = []
    budget = WaitBudget(limit=1.0)
    for tries in (1, 2, 3, 4):
        budget.wait_or_raise(ServerBusy("throttled", wait_seconds=0.25), tries=tries, first_delay=1, sleep=slept.append)
    with pytest.raises(ServerBusy):
        budget.wait_or_raise(ServerBusy("throttled", wait_seconds=0.25), tries=5, first_delay=1, sleep=slept.append)
    assert slept == [0.25] * 4 and budget.spent == 1.0
    backoff = WaitBudget(limit=100)
    for tries in (1, 2, 3):
        backoff.wait_or_raise(ServerBusy("busy"), tries=tries, first_delay=0.5, sleep=slept.append)
    assert slept[4:] == [0.5, 1.0, 2.0]  # exponential when the server does not say
    with pytest.raises(AuthError):
        backoff.wait_or_raise(AuthError("wrong password"), tries=1, first_delay=1, sleep=slept.append)


def test_a_long_pause_is_deferred_not_sat_out_and_stop_interrupts() -> None:
    budget = WaitBudget(limit=600, in_place_limit=30)
    with pytest.raises(ServerBusy):
        budget.wait_or_raise(ServerBusy("throttled", wait_seconds=120), tries=1, first_delay=1)
    assert budget.deferred == 120 and budget.spent == 0  # the sweep requeues and charges it
    assert budget.reserve(120) and not budget.reserve(500)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        budget.wait_or_raise(ServerBusy("busy", wait_seconds=5), tries=1, first_delay=1, stop=stop)


def test_token_bucket_paces_to_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(1000, clock=lambda: now[0])
    assert bucket.charge(1000) == 0.0  # the burst
    assert bucket.charge(500) == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.charge(1000) == pytest.approx(1.0)  # debt paid by time, shared by every caller


def test_server_limits_count_connections_per_host() -> None:
    limits = ServerLimits(2, 1000)
    assert limits.try_acquire("IMAP.mail.go.th") and limits.try_acquire("imap.mail.go.th")
    assert not limits.try_acquire("imap.MAIL.go.th")  # one server, whatever the case
    assert limits.try_acquire("other.example")
    limits.release("imap.mail.go.th")
    assert limits.try_acquire("imap.mail.go.th") and limits.peak["imap.mail.go.th"] == 2
    assert limits.bucket("imap.mail.go.th") is limits.bucket("IMAP.mail.go.th")
    assert ServerLimits(1).bucket("x") is None


def test_shards_are_stable_and_split_every_account_once() -> None:
    names = [f"staff{number}@coj.go.th" for number in range(200)]
    shards = [Shard.parse(f"{index}/3") for index in (1, 2, 3)]
    owners = [[shard for shard in shards if shard.holds(name)] for name in names]
    assert all(len(owner) == 1 for owner in owners)
    assert all(40 < sum(1 for owner in owners if owner[0] is shard) < 90 for shard in shards)
    # sha256, not hash(): the same on every machine and run.  This value must never change:
    # printf %s somchai.j@coj.go.th | sha256sum → first 16 hex digits as a number, mod 3, plus 1.
    assert [index for index in (1, 2, 3) if Shard(index, 3).holds("somchai.j@coj.go.th")] == [1]
    assert Shard(1, 3).holds("  SOMCHAI.J@coj.go.th ")


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "2", "1/2/3"])
def test_bad_shards_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        Shard.parse(text)


@pytest.mark.parametrize(("error", "key"), [
    (AuthError("login refused: [AUTHENTICATIONFAILED] Authentication failed."), "wrong_password"),
    (AuthError("login refused: [AUTHORIZATIONFAILED] Account disabled"), "locked"),
    (AuthError("login refused: [EXPIRED] Password expired"), "expired"),
    (PasswordUnavailable("no password for a@coj.go.th"), "no_password"),
    (ConnectError("connection to x refused"), "server_down"),
    (TLSError("certificate not trusted"), "tls"),
    (ServerBusy("busy: [LIMIT] Maximum number of connections"), "busy"),
    (ServerError("refused"), "server_error"),
])
def test_login_problems_are_classified(error: Exception, key: str) -> None:
    assert login_problem(error).key == key  # type: ignore[arg-type]


def test_password_lines_split_at_the_first_tab_or_space() -> None:
    text = "# unit passwords\n\na@coj.go.th\tpass with spaces \nb@coj.go.th รหัส ไทย\n"
    assert parse_password_lines(text) == [("a@coj.go.th", "pass with spaces "), ("b@coj.go.th", "รหัส ไทย")]
    with pytest.raises(UsageError) as caught:
        parse_password_lines("a@coj.go.th\n b@coj.go.th\tsecret1\nB@coj.go.th secret2\n")
    message = caught.value.message
    assert "line 1: expected ACCOUNT" in message and "line 3: B@coj.go.th given twice" in message
    assert "secret" not in caught.value.message


def account(name: str, host: str) -> AccountSettings:
    return AccountSettings(name, ConnectionSettings(ServerAddress(host, 993)))


def test_dispatcher_limits_each_server_and_requeues_without_blocking() -> None:
    """A job that is pushed back goes to the end of the queue; the others run
    meanwhile; never more than the limit toward one host."""
    accounts = [account(f"a{n}", "one") for n in range(6)] + [account("b0", "two")]
    limits = ServerLimits(2)
    active: dict[str, int] = {}
    order: list[str] = []
    lock = threading.Lock()

    def work(job: Job) -> Again | None:
        with lock:
            active[job.settings.host] = active.get(job.settings.host, 0) + 1
            assert active[job.settings.host] <= 2
        time.sleep(0.02)
        with lock:
            active[job.settings.host] -= 1
            order.append(job.settings.account)
        if job.settings.account == "a0" and job.attempts == 0:
            job.attempts += 1
            return Again(0.1, "busy")
        return None

    jobs = [Job(settings, WaitBudget(), "backup") for settings in accounts]
    Dispatcher(4, limits, threading.Event(), _Silent()).run(jobs, work, lambda job: None)
    assert sorted(order) == sorted(["a0", *(s.account for s in accounts)])
    assert order[-1] == "a0" and order.count("a0") == 2
    assert limits.peak == {"one": 2, "two": 1}


class _Silent:
    def sweep_start(self, accounts: int) -> None: ...
    def account_start(self, account: str, stage: str, attempt: int) -> None: ...
    def folder_start(self, account: str, folder: str, messages: int, size: int) -> None: ...
    def saved(self, account: str, messages: int, size: int) -> None: ...
    def warning(self, account: str, text: str) -> None: ...
    def account_waiting(self, account: str, seconds: float, reason: str) -> None: ...
    def account_done(self, account: str, exit_code: ExitCode, summary: str) -> None: ...


def test_select_accounts_keeps_config_order() -> None:
    settings = SweepSettings(path=Path("/x.yaml"), accounts=tuple(account(f"s{n}@coj.go.th", "h") for n in range(9)),
                             dest=Path("/d"))
    assert [a.account for a in select_accounts(settings, None)] == [f"s{n}@coj.go.th" for n in range(9)]
    picked = select_accounts(settings, Shard(1, 2))
    assert picked == [a for a in settings.accounts if Shard(1, 2).holds(a.account)]


def test_sweep_modules_import_inward_only() -> None:
    """sweep, pushback, schedule and config never print, never import the CLI;
    imap/pushback.py sits at the bottom of imap/ (every IMAP module imports it): errors and
    i18n, the innermost modules, are all it may use."""
    import ast

    package = REPO / "mailbackup"
    sweep = [f"sweep/{path.name}" for path in sorted((package / "sweep").glob("*.py"))]
    for name in (*sweep, "imap/pushback.py", "config/__init__.py"):
        source = (package / name).read_text(encoding="utf-8")
        tree = ast.parse(source)
        imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {module for module in imported
                    if module.split(".")[0] in ("click", "tqdm") or module.startswith("mailbackup.cli")}, name
        assert "print(" not in source, name
        if name == "imap/pushback.py":
            assert {module for module in imported if module.startswith("mailbackup")} <= {"mailbackup.errors",
                                                                                         "mailbackup.i18n"}


def test_terminal_progress_reuses_lines_and_survives_every_event(capsys: pytest.CaptureFixture[str]) -> None:
    from mailbackup.cli.sweep import TqdmSweepProgress

    progress = TqdmSweepProgress(2)
    progress.sweep_start(3)
    progress.account_start("a@coj.go.th", "backup", 1)
    progress.account_start("b@coj.go.th", "backup", 1)
    assert progress.positions == {"a@coj.go.th": 1, "b@coj.go.th": 2}
    progress.folder_start("a@coj.go.th", "งานคดี/2566", 10, 20_000)
    progress.saved("a@coj.go.th", 10, 20_000)
    progress.warning("b@coj.go.th", "folder 'x': refused")
    progress.account_waiting("b@coj.go.th", 2.0, "server busy")
    progress.account_start("c@coj.go.th", "backup", 1)
    assert progress.positions["c@coj.go.th"] == 2  # the line b left
    for name in ("a@coj.go.th", "c@coj.go.th", "b@coj.go.th"):
        progress.account_done(name, ExitCode.OK, "backup ok")
    assert progress.overall.n == 3 and progress.messages == 10 and not progress.lines
    progress.close()
