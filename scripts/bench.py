#!/usr/bin/env python3
"""Benchmark: mailbackup against mbsync and offlineimap on the same mailboxes.

One run starts a private Dovecot (``dovecot_server.py``, in a short /tmp
directory), writes the corpora straight into its Maildirs
(``make_corpus.py``), and runs every tool on the same data, each into its own
empty directory, ``--rounds`` times (median).  Per run it records wall time,
CPU time of the tool (user + sys from ``os.wait4``, children included), peak
RSS (``ru_maxrss``), the CPU the server spent (Dovecot's imap and imap-login
processes, from the master's reaped-children times) and how many messages the
tool stored.  It prints Markdown (results, then targets with PASS/FAIL) and
writes JSON (``--json``).

Scenarios (``--scenarios 1,3``; ``--quick`` makes every corpus ~20× smaller):

1. full backup: 10,000 messages / ~600 MB / 10 folders; Maildir for all,
   and mbox for mailbackup;
2. no-op incremental run on that mailbox;
3. incremental with 1% new messages (delivered into ``new/`` each round);
4. full backup of 2,000 messages through ``netproxy.Proxy(latency=0.025)``
   (25 ms each way), plus mailbackup ``--batch-size 1 --pipeline 1`` (one
   message per round trip, the baseline pipelining is measured against);
5. one folder of 100,000 small messages: first backup (mailbackup's
   throughput over its first and last 10%, from polling its state DB) and a
   no-op rerun (offlineimap only with ``--slow-peers``: ~25 min a round);
6. a mailbox with a 50 MB message: peak memory;
7. full backup of 1,500 messages / 90 MB / 12 folders on loopback, through
   the proxy without delay (the harness's own cost), and at 25 and 100 ms
   each way;
8. one folder of 100,000 small messages: no-op, and 1,000 new (mixed);
9. 10,000 folders four deep, half with Thai names, 5 messages each;
10. a sweep of 500 accounts of 50 messages, against mbsync under xargs -P 8.

Peers run only when installed (``apt-get install isync offlineimap3``) and
selected (``--peers mbsync,offlineimap`` by default; ``--peers none``).
See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import imaplib
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import site
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import make_corpus  # noqa: E402
from dovecot_server import DovecotServer, imap_utf7_encode  # noqa: E402
from netproxy import Proxy  # noqa: E402

__all__ = ["main"]

MB = 1024 * 1024
PEERS = ("mbsync", "offlineimap")
ALL_SCENARIOS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
SWEEP_JOBS = 8
QUICK_FACTOR = 20
LATENCY = 0.025
LATENCIES = (0.025, 0.100)  # scenario 7: an ordinary WAN link and a provincial court's
RUN_TIMEOUT = 4 * 3600.0
POLL_INTERVAL = 0.1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

TITLES = {
    1: "full backup",
    2: "no-op incremental",
    3: "incremental, 1% new",
    4: "full backup, 25 ms latency each way",
    5: "one folder of many small messages",
    6: "one 50 MB message: peak memory",
    7: "full backup, loopback against 25 and 100 ms latency each way",
    8: "big mailbox: no-op and new mail in one folder of many messages",
    9: "many folders: 4 deep, half Thai names, 5 messages each",
    10: "sweep of many small accounts, 8 at once, verification included",
}


# ---------------------------------------------------------------- records
@dataclass(frozen=True)
class Target:
    """Where a tool connects: an IMAP account over implicit TLS."""

    host: str
    port: int
    cafile: Path
    user: str
    password: str


@dataclass(frozen=True)
class Measurement:
    """One run of one tool."""

    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    server_cpu_s: float
    exit_code: int
    load_before: float  # 1-minute load average when the run started: other work on the machine

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


@dataclass
class Row:
    """All rounds of one tool in one phase of a scenario."""

    phase: str
    label: str
    tool: str
    runs: list[Measurement] = field(default_factory=list)
    stored: int | None = None
    expected: int | None = None
    identical: int | None = None  # stored byte for byte as the server has them (Maildir outputs)
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self, name: str) -> float:
        values = [getattr(run, name) for run in self.runs]
        return statistics.median(values) if values else math.nan

    def peak_rss_mb(self) -> float:
        return max((run.peak_rss_mb for run in self.runs), default=math.nan)

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.phase, "label": self.label, "tool": self.tool,
            "wall_s": _round(self.median("wall_s")), "cpu_s": _round(self.median("cpu_s")),
            "user_s": _round(self.median("user_s")), "sys_s": _round(self.median("sys_s")),
            "peak_rss_mb": _round(self.peak_rss_mb(), 1), "server_cpu_s": _round(self.median("server_cpu_s")),
            "stored": self.stored, "expected": self.expected, "identical_bytes": self.identical,
            "exit_codes": [run.exit_code for run in self.runs],
            "runs": [asdict(run) | {"cpu_s": run.cpu_s} for run in self.runs], **self.extra,
        }  # fmt: skip


@dataclass
class TargetCheck:
    text: str
    measured: str
    status: str  # PASS, FAIL or n/a


@dataclass
class ScenarioResult:
    number: int
    title: str
    corpus: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    targets: list[TargetCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, phase: str, label: str) -> Row | None:
        return next((row for row in self.rows if row.phase == phase and row.label == label), None)


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


# ------------------------------------------------------------------ tools
class Tool:
    """How to run one backup tool into a work directory and count its mail."""

    tool = ""
    label = ""
    writes_maildir = True  # one file per message: bytes comparable with the server's

    def message_files(self, workdir: Path) -> Iterator[Path]:
        for path in (workdir / "mail").rglob("*"):
            if path.parent.name in ("cur", "new") and not path.name.startswith(".") and path.is_file():
                yield path

    def command(self, target: Target, workdir: Path) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def stored(self, workdir: Path) -> int:
        """Messages stored in *workdir* (Maildir files in cur/ and new/)."""
        return sum(1 for _ in self.message_files(workdir))


class Mailbackup(Tool):
    tool = "mailbackup"

    def __init__(self, base_command: Sequence[str], fmt: str = "maildir", batch_size: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.base_command = list(base_command)
        self.env = dict(env or {})
        self.format = fmt
        self.batch_size = batch_size  # 1: also --pipeline 1, one message per round trip
        self.label = f"mailbackup ({fmt}" + (", one message per round trip)" if batch_size == 1
                                             else f", batch size {batch_size})" if batch_size else ")")
        self.writes_maildir = fmt == "maildir"

    def command(self, target: Target, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [*self.base_command, "backup", target.user, "--server", f"{target.host}:{target.port}",
                "--cafile", str(target.cafile), "--dest", str(workdir / "mail"), "--format", self.format, "--quiet"]
        if self.batch_size:
            argv += ["--batch-size", str(self.batch_size)]
        if self.batch_size == 1:
            argv += ["--pipeline", "1"]
        return argv, {**self.env, "MAILBACKUP_PASSWORD": target.password}

    def stored(self, workdir: Path) -> int:
        state = state_db(workdir)
        if state is None:
            return 0
        return _count_rows(state) or 0


def state_db(workdir: Path) -> Path | None:
    """``<dest>/<account>/state.sqlite3`` of a mailbackup work directory."""
    found = sorted((workdir / "mail").glob("*/state.sqlite3"))
    return found[0] if found else None


def _count_rows(path: Path) -> int | None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    except sqlite3.Error:  # not created yet, or mid-migration
        return None


class Mbsync(Tool):
    tool = "mbsync"

    def __init__(self, compress: bool = True) -> None:
        # mbsync 1.4 asks for COMPRESS=DEFLATE whenever the server offers it,
        # loopback included; mailbackup's default ("auto") does not on
        # loopback.  The variant without it shows what that costs.
        self.compress = compress
        self.label = "mbsync" if compress else "mbsync (no COMPRESS)"

    def command(self, target: Target, workdir: Path) -> tuple[list[str], dict[str, str]]:
        config = workdir / "mbsyncrc"
        mail = workdir / "mail"
        mail.mkdir(parents=True, exist_ok=True)
        # Defaults otherwise, as a user would start: FSync yes, no
        # CopyArrivalDate, pipelining unlimited.
        config.write_text(
            f"IMAPStore far\nHost {target.host}\nPort {target.port}\nUser {target.user}\n"
            f"PassCmd {_mbsync_quote('echo ' + shlex.quote(target.password))}\n"
            f"SSLType IMAPS\nCertificateFile {target.cafile}\n"
            + ("" if self.compress else "DisableExtensions COMPRESS=DEFLATE\n")
            + "\n"
            f"MaildirStore near\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n"
            "Channel bench\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\n",
            encoding="utf-8",
        )
        return ["mbsync", "-c", str(config), "-q", "bench"], {}


def _mbsync_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Offlineimap(Tool):
    tool = label = "offlineimap"

    def command(self, target: Target, workdir: Path) -> tuple[list[str], dict[str, str]]:
        config = workdir / "offlineimaprc"
        # One-way (readonly remote), nested folders ("sep = /"), every folder;
        # defaults otherwise (maxconnections 1, fsync on).
        config.write_text(
            f"[general]\naccounts = bench\nmetadata = {workdir / 'metadata'}\nui = quiet\n\n"
            "[Account bench]\nlocalrepository = local\nremoterepository = remote\n\n"
            f"[Repository local]\ntype = Maildir\nlocalfolders = {workdir / 'mail'}\nsep = /\n\n"
            f"[Repository remote]\ntype = IMAP\nremotehost = {target.host}\nremoteport = {target.port}\n"
            f"remoteuser = {target.user}\nremotepass = {target.password.replace('%', '%%')}\n"
            f"ssl = yes\nstarttls = no\nsslcacertfile = {target.cafile}\n"
            "folderfilter = lambda name: True\nreadonly = True\n",
            encoding="utf-8",
        )
        return ["offlineimap", "-c", str(config), "-o", "-u", "quiet"], {}


class MailbackupSweep(Tool):
    """`mailbackup sweep` over many accounts (backup, then verification, of each)."""

    tool = "mailbackup"
    writes_maildir = False  # many accounts: the byte comparison is per account, not done here

    def __init__(self, base_command: Sequence[str], env: dict[str, str], accounts: Sequence[Target]) -> None:
        self.base_command, self.env, self.accounts = list(base_command), dict(env), list(accounts)
        self.label = f"mailbackup sweep (--jobs {SWEEP_JOBS})"

    def command(self, target: Target, workdir: Path) -> tuple[list[str], dict[str, str]]:
        config = workdir / "sweep.yaml"
        lines = ["defaults:", f"  server: {json.dumps(f'{target.host}:{target.port}')}",
                 f"  cafile: {json.dumps(str(target.cafile))}", f"  dest: {json.dumps(str(workdir / 'mail'))}",
                 "  format: maildir", f"  jobs: {SWEEP_JOBS}", f"  max_connections_per_server: {SWEEP_JOBS}",
                 f"  password_command: {json.dumps('echo ' + shlex.quote(target.password))}", "accounts:"]
        lines += [f"  - {json.dumps(account.user)}" for account in self.accounts]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [*self.base_command, "sweep", str(config), "--quiet"], dict(self.env)

    def stored(self, workdir: Path) -> int:
        return sum(_count_rows(state) or 0 for state in (workdir / "mail").glob("*/state.sqlite3"))


class MbsyncMany(Mbsync):
    """mbsync over the same accounts, SWEEP_JOBS at once through `xargs -P`."""

    writes_maildir = False

    def __init__(self, accounts: Sequence[Target], compress: bool = True) -> None:
        super().__init__(compress)
        self.accounts = list(accounts)
        self.label += f" (xargs -P {SWEEP_JOBS})"

    def command(self, target: Target, workdir: Path) -> tuple[list[str], dict[str, str]]:
        config, channels = workdir / "mbsyncrc", workdir / "channels"
        sections = []
        for number, account in enumerate(self.accounts):
            mail = workdir / "mail" / account.user
            mail.mkdir(parents=True, exist_ok=True)
            sections.append(
                f"IMAPStore far{number}\nHost {account.host}\nPort {account.port}\nUser {account.user}\n"
                f"PassCmd {_mbsync_quote('echo ' + shlex.quote(account.password))}\n"
                f"SSLType IMAPS\nCertificateFile {account.cafile}\n"
                + ("" if self.compress else "DisableExtensions COMPRESS=DEFLATE\n") + "\n"
                f"MaildirStore near{number}\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n"
                f"Channel a{number}\nFar :far{number}:\nNear :near{number}:\nPatterns *\nCreate Near\n"
                "Sync Pull\nSyncState *\n")
        config.write_text("\n".join(sections), encoding="utf-8")
        channels.write_text("".join(f"a{number}\n" for number in range(len(self.accounts))), encoding="utf-8")
        return ["xargs", "-P", str(SWEEP_JOBS), "-n", "1", "-a", str(channels), "mbsync", "-c", str(config), "-q"], {}


# ---------------------------------------------------------------- running
class Runner:
    """Runs commands and measures them; knows the server's master process."""

    def __init__(self, server: DovecotServer) -> None:
        self.server = server

    def server_cpu(self) -> float:
        """CPU seconds of the master and every child it has reaped: each IMAP
        connection's imap and imap-login processes exit when it ends."""
        try:
            pid = int((self.server.base_dir / "run" / "master.pid").read_text().strip())
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            return math.nan
        # fields[11:15] are utime, stime, cutime, cstime (stat fields 14-17).
        return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS

    def measure(self, tool: Tool, target: Target, workdir: Path,
                watch: Callable[[threading.Event], None] | None = None) -> Measurement:
        argv, extra_env = tool.command(target, workdir)
        env = {**os.environ, **extra_env}
        os.sync()  # nobody pays for the previous run's dirty pages
        before = self.server_cpu()
        load = os.getloadavg()[0]
        done = threading.Event()
        watcher = threading.Thread(target=watch, args=(done,), daemon=True) if watch else None
        figures = workdir / "run.figures"
        figures.unlink(missing_ok=True)
        with open(workdir / "run.log", "ab") as log_file:
            proc = subprocess.Popen([sys.executable, "-S", "-I", "-c", LAUNCHER, str(figures), *argv],
                                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, env=env, cwd=workdir,
                                    start_new_session=True)
            if watcher:
                watcher.start()
            try:
                proc.wait(RUN_TIMEOUT)
            except BaseException:  # timeout or Ctrl-C: no tool may outlive the bench
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            finally:
                done.set()
                if watcher:
                    watcher.join()
        time.sleep(0.3)  # let the master reap the connection's processes
        wall, user, system, maxrss_kib, code = figures.read_text().split()
        return Measurement(wall_s=float(wall), user_s=float(user), sys_s=float(system),
                           peak_rss_mb=int(maxrss_kib) / 1024, server_cpu_s=self.server_cpu() - before,
                           exit_code=int(code), load_before=load)


# The tool is started by this small process, not by the bench itself:
# ru_maxrss of a forked child starts at its parent's RSS (the exec keeps the
# old high-water mark), so a 40 MB parent would make every tool look at
# least 40 MB big.  This launcher is ~8 MB, the floor of any figure.  On Linux
# it is a child subreaper: what a tool leaves running for a moment (a sweep's
# fork server, whose children are its worker processes) is reaped here, so
# the CPU figure is the whole tree's; the wall time ends with the tool itself.
LAUNCHER = """
import ctypes, os, resource, sys, time
out, argv = sys.argv[1], sys.argv[2:]
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, _usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as handle:
    handle.write(f"{wall} {usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


class BenchError(RuntimeError):
    """The benchmark cannot go on (e.g. the mailbackup under test is broken)."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- corpora
@dataclass
class Corpus:
    name: str
    target: Target
    info: make_corpus.CorpusInfo
    folders: int
    messages: int  # on the server now (grows with appends)
    bytes: int

    def describe(self) -> dict[str, Any]:
        return {"user": self.target.user, "messages": self.messages, "bytes": self.bytes,
                "mb": round(self.bytes / 1e6, 1), "folders": list(self.info.folders)}


class Bench:
    """The server, the corpora, the tools and the work directories of one run."""

    def __init__(self, args: argparse.Namespace, server: DovecotServer, workdir: Path) -> None:
        self.args = args
        self.server = server
        self.workdir = workdir
        self.runner = Runner(server)
        self.corpora: dict[str, Corpus] = {}
        self.synced: set[tuple[str, str]] = set()  # (corpus, tool label) whose workdir is up to date
        self.trash = workdir / "trash"  # what fresh rounds replaced, deleted after the scenario
        self._trashed = itertools.count()
        self.peers = [peer for peer in args.peers if shutil.which(peer)]
        # -S with the installed packages on PYTHONPATH: mailbackup as `pip install` leaves it.  The
        # development checkout's editable-install hook (a .pth import run at every start, ~15 ms)
        # is no part of the tool a user runs.
        self.mailbackup_command = shlex.split(args.mailbackup) if args.mailbackup else \
            [sys.executable, "-S", "-m", "mailbackup"]
        self.mailbackup_env: dict[str, str] = {}
        self.source: dict[str, Any] = {}
        if not args.mailbackup:
            self.source = snapshot_source(workdir.parent / "mailbackup-src")
            self.mailbackup_env["PYTHONPATH"] = os.pathsep.join(
                [str(workdir.parent / "mailbackup-src"), *site.getsitepackages()])

    def scale(self, full: int) -> int:
        return max(1, full // QUICK_FACTOR) if self.args.quick else full

    # -- corpora
    def corpus(self, name: str, **spec: Any) -> Corpus:
        if name in self.corpora:
            return self.corpora[name]
        user, password = f"bench-{name}@coj.go.th", f"bench-{name}-{os.getpid()}"
        self.server.add_user(user, password)
        started = time.monotonic()
        info = make_corpus.make_corpus(self.server, user, seed=self.args.seed, **spec)
        log(f"corpus {name}: {info.messages} messages, {info.bytes / 1e6:.0f} MB, {len(info.folders)} folders "
            f"written in {time.monotonic() - started:.1f} s")
        target = Target("localhost", self.server.port, self.server.cafile, user, password)
        warm_up(target, info.folders)
        corpus = Corpus(name, target, info, len(info.folders), info.messages, info.bytes)
        self.corpora[name] = corpus
        return corpus

    def append(self, corpus: Corpus, messages: int, seed: int) -> make_corpus.CorpusInfo:
        info = make_corpus.make_corpus(self.server, corpus.target.user, messages=messages, folders=corpus.folders,
                                       seed=seed, append=True)
        corpus.messages += info.messages
        corpus.bytes += info.bytes
        warm_up(corpus.target, corpus.info.folders)
        return info

    # -- tools
    def tools(self, *mailbackup_variants: tuple[str, int | None], peers: Sequence[str] | None = None,
              mbsync_without_compress: bool = False) -> list[Tool]:
        tools: list[Tool] = [Mailbackup(self.mailbackup_command, fmt, batch, self.mailbackup_env)
                             for fmt, batch in mailbackup_variants]
        chosen = self.peers if peers is None else [peer for peer in peers if peer in self.peers]
        if "mbsync" in chosen:
            tools.append(Mbsync())
            if mbsync_without_compress:
                tools.append(Mbsync(compress=False))
        if "offlineimap" in chosen:
            tools.append(Offlineimap())
        return tools

    def tool_dir(self, corpus: Corpus, tool: Tool) -> Path:
        slug = tool.label.replace(" ", "-").replace("(", "").replace(")", "").replace(",", "")
        return self.workdir / corpus.name / slug

    # -- rounds
    def rounds(self, scenario: ScenarioResult, phase: str, corpus: Corpus, tools: list[Tool], *, fresh: bool,
               target: Target | None = None, before_round: Callable[[int], None] | None = None,
               watch: Callable[[Tool, Path, Row], Callable[[threading.Event], None] | None] | None = None) -> None:
        """``--rounds`` rounds over *tools*, in a rotating order so no tool is
        always first; *fresh* runs start from an empty directory."""
        rows = {tool.label: Row(phase, tool.label, tool.tool) for tool in tools}
        scenario.rows.extend(rows.values())
        for number in range(self.args.rounds):
            if before_round:
                before_round(number)
            shift = number % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                workdir = self.tool_dir(corpus, tool)
                if fresh:
                    self.fresh_workdir(workdir)
                    self.synced.discard((corpus.name, tool.label))
                elif (corpus.name, tool.label) not in self.synced:
                    self.sync_untimed(corpus, tool)
                row = rows[tool.label]
                run = self.runner.measure(tool, target or corpus.target, workdir,
                                          watch(tool, workdir, row) if watch else None)
                row.runs.append(run)
                row.stored, row.expected = tool.stored(workdir), corpus.messages
                if fresh and tool.tool == "mailbackup" and not row.stored:
                    raise BenchError(f"{tool.label} stored nothing; its output:\n{_tail(workdir / 'run.log')}")
                if run.exit_code == 0:
                    self.synced.add((corpus.name, tool.label))
                log(f"[{scenario.number}] {phase}, round {number + 1}/{self.args.rounds}, {tool.label}: "
                    f"{run.wall_s:.2f} s wall, {run.cpu_s:.2f} s CPU, {run.peak_rss_mb:.0f} MB, "
                    f"exit {run.exit_code}, stored {row.stored}/{row.expected}, load {run.load_before:.1f}")
        if fresh or before_round:  # something new was stored: compare it with the server's bytes
            server = content_hashes(self.server.message_files(corpus.target.user))
            for tool in tools:
                if tool.writes_maildir:
                    stored = content_hashes(tool.message_files(self.tool_dir(corpus, tool)))
                    rows[tool.label].identical = sum(min(count, server[digest]) for digest, count in stored.items())

    def fresh_workdir(self, workdir: Path) -> None:
        """An empty *workdir* for a fresh round.  What the round before stored is
        moved aside, not deleted: ext4 does not hand out an inode again for a
        minute or more after its file was deleted, so creating thousands of files
        right after deleting as many made every creation scan past them (perf:
        `recently_deleted` under `ext4_create`: a sweep's system time grew from
        3.6 s to 6.9 s over six rounds of the same work)."""
        if workdir.exists():
            self.trash.mkdir(exist_ok=True)
            workdir.rename(self.trash / str(next(self._trashed)))
        workdir.mkdir(parents=True)

    def empty_trash(self) -> None:
        shutil.rmtree(self.trash, ignore_errors=True)

    def sync_untimed(self, corpus: Corpus, tool: Tool) -> None:
        workdir = self.tool_dir(corpus, tool)
        if not workdir.exists():
            workdir.mkdir(parents=True)
        log(f"bringing {tool.label} up to date on corpus {corpus.name} (not timed)")
        self.runner.measure(tool, corpus.target, workdir)
        self.synced.add((corpus.name, tool.label))


def content_hashes(paths: Iterable[Path]) -> Counter[bytes]:
    """How many files have each content (SHA-256)."""
    return Counter(hashlib.sha256(path.read_bytes()).digest() for path in paths)


def snapshot_source(destination: Path) -> dict[str, Any]:
    """Copy the mailbackup package aside and run that copy: the package may
    be edited while a long benchmark runs, and one run must measure one
    version.  Returns where it came from (commit, uncommitted changes, hash)."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(REPO / "mailbackup", destination / "mailbackup",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # Byte-compiled as `pip install` leaves an installed package: otherwise, with
    # PYTHONDONTWRITEBYTECODE set (as on CI machines), every run compiles every module again.
    compileall.compile_dir(destination / "mailbackup", quiet=1)
    digest = hashlib.sha256()
    for path in sorted((destination / "mailbackup").rglob("*.py")):
        digest.update(path.relative_to(destination).as_posix().encode() + b"\0" + path.read_bytes())

    def git(*command: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO), *command], capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    version = re.search(r'__version__ = "([^"]+)"', (destination / "mailbackup" / "__init__.py").read_text())
    return {"version": version.group(1) if version else None, "commit": git("rev-parse", "--short", "HEAD") or None,
            "uncommitted_changes": bool(git("status", "--porcelain", "--", "mailbackup")),
            "tree_sha256": digest.hexdigest()[:16]}


def warm_up(target: Target, folders: Sequence[str]) -> None:
    """SELECT every folder and FETCH its flags once: Dovecot builds its
    indexes now, so the first measured tool does not pay for that."""
    context = ssl.create_default_context(cafile=str(target.cafile))
    with imaplib.IMAP4_SSL(target.host, target.port, ssl_context=context) as client:
        client.login(target.user, target.password)
        for folder in folders:
            name = '"' + imap_utf7_encode(folder).replace("\\", "\\\\").replace('"', '\\"') + '"'
            status, data = client.select(name, readonly=True)
            if status != "OK":
                raise RuntimeError(f"warm-up: SELECT {folder} failed: {data!r}")
            if data and data[0] and int(data[0]) > 0:
                client.fetch("1:*", "(FLAGS RFC822.SIZE INTERNALDATE)")
        client.logout()


# --------------------------------------------------------------- scenarios
def full_corpus(bench: Bench) -> Corpus:
    return bench.corpus("full", messages=bench.scale(10_000), folders=10,
                        target_bytes=bench.scale(600 * 1000 * 1000))


def scenario_1(bench: Bench) -> ScenarioResult:
    corpus = full_corpus(bench)
    result = ScenarioResult(1, TITLES[1], corpus.describe())
    tools = bench.tools(("maildir", None), ("mbox", None), mbsync_without_compress=True)
    bench.rounds(result, "full backup", corpus, tools, fresh=True)
    mb, mbsync, plain, offlineimap = (result.row("full backup", label) for label in
                                      ("mailbackup (maildir)", "mbsync", "mbsync (no COMPRESS)", "offlineimap"))
    result.targets += [
        check_ratio("wall ≤ mbsync's", mb, mbsync, "wall_s", at_most=1.0),
        check_ratio("CPU ≤ 2× mbsync's", mb, mbsync, "cpu_s", at_most=2.0),
        check_speedup("≥ 10× faster than offlineimap", mb, offlineimap, at_least=10.0),
        check_ratio("(fair) wall ≤ mbsync's without COMPRESS", mb, plain, "wall_s", at_most=1.0),
        check_ratio("(fair) CPU ≤ 2× mbsync's without COMPRESS", mb, plain, "cpu_s", at_most=2.0),
    ]
    return result


def scenario_2(bench: Bench) -> ScenarioResult:
    corpus = full_corpus(bench)
    result = ScenarioResult(2, TITLES[2], corpus.describe())
    tools = bench.tools(("maildir", None), ("mbox", None))
    bench.rounds(result, "no-op", corpus, tools, fresh=False)
    mb, mbsync = result.row("no-op", "mailbackup (maildir)"), result.row("no-op", "mbsync")
    result.targets.append(check_ratio("wall ≤ mbsync's", mb, mbsync, "wall_s", at_most=1.0))
    return result


def scenario_3(bench: Bench) -> ScenarioResult:
    corpus = full_corpus(bench)
    new = max(1, math.ceil(corpus.messages / 100))
    result = ScenarioResult(3, TITLES[3], corpus.describe() | {"new_per_round": new})
    tools = bench.tools(("maildir", None), ("mbox", None))
    for tool in tools:  # every tool starts from a complete backup of the same mailbox
        if (corpus.name, tool.label) not in bench.synced:
            bench.sync_untimed(corpus, tool)

    def deliver(number: int) -> None:
        info = bench.append(corpus, new, seed=1000 + number)
        log(f"[3] delivered {info.messages} new messages ({info.bytes / 1e6:.1f} MB) into new/")

    bench.rounds(result, "1% new", corpus, tools, fresh=False, before_round=deliver)
    result.corpus = corpus.describe() | {"new_per_round": new}
    return result


def scenario_4(bench: Bench) -> ScenarioResult:
    corpus = bench.corpus("wan", messages=bench.scale(2_000), folders=10,
                          target_bytes=bench.scale(120 * 1000 * 1000))
    result = ScenarioResult(4, TITLES[4], corpus.describe() | {"latency_each_way_s": LATENCY})
    tools = bench.tools(("maildir", None), ("maildir", 1), mbsync_without_compress=True)
    with Proxy("127.0.0.1", bench.server.port, latency=LATENCY) as proxy:
        via_proxy = Target("localhost", proxy.port, corpus.target.cafile, corpus.target.user, corpus.target.password)
        bench.rounds(result, "full backup", corpus, tools, fresh=True, target=via_proxy)
    mb, mbsync = result.row("full backup", "mailbackup (maildir)"), result.row("full backup", "mbsync")
    plain = result.row("full backup", "mbsync (no COMPRESS)")
    one = result.row("full backup", "mailbackup (maildir, one message per round trip)")
    result.targets += [
        check_ratio("wall ≤ 1.2× mbsync's", mb, mbsync, "wall_s", at_most=1.2),
        check_speedup("≥ 20× faster than one message per round trip", mb, one, at_least=20.0),
        check_ratio("(fair) wall ≤ 1.2× mbsync's without COMPRESS", mb, plain, "wall_s", at_most=1.2),
    ]
    return result


def scenario_5(bench: Bench) -> ScenarioResult:
    corpus = bench.corpus("many", messages=bench.scale(100_000), folders=1, single_folder=True, profile="small")
    result = ScenarioResult(5, TITLES[5], corpus.describe())
    peers = [peer for peer in bench.peers if peer != "offlineimap" or bench.args.slow_peers]
    if "offlineimap" in bench.peers and not bench.args.slow_peers:
        result.notes.append("offlineimap skipped (about 25 minutes a round, estimated from scenario 1); "
                            "--slow-peers runs it")
    tools = bench.tools(("maildir", None), peers=peers, mbsync_without_compress=True)
    bench.rounds(result, "first backup", corpus, tools, fresh=True, watch=_throughput_watch(corpus))
    bench.rounds(result, "no-op", corpus, tools, fresh=False)
    first = result.row("first backup", "mailbackup (maildir)")
    noop = result.row("no-op", "mailbackup (maildir)")
    result.targets += [
        check_value("no-op < 2 s", noop.median("wall_s") if noop else math.nan, below=2.0, unit="s"),
        check_value("last-10% throughput ≥ 80% of first-10%",
                    first.extra.get("throughput", {}).get("last_over_first", math.nan) if first else math.nan,
                    at_least=0.8, unit="×"),
    ]
    return result


def _throughput_watch(corpus: Corpus) -> Callable[[Tool, Path, Row], Callable[[threading.Event], None] | None]:
    def make(tool: Tool, workdir: Path, row: Row) -> Callable[[threading.Event], None] | None:
        if tool.tool != "mailbackup":
            return None

        def watch(done: threading.Event) -> None:
            timeline = poll_count(workdir, done)
            rounds = row.extra.setdefault("throughput_rounds", [])
            rounds.append(throughput(timeline, corpus.messages))
            row.extra["throughput"] = _median_throughput(rounds)

        return watch

    return make


def poll_count(workdir: Path, done: threading.Event) -> list[tuple[float, int]]:
    """(seconds, messages in the state DB) until *done*, every POLL_INTERVAL."""
    start = time.perf_counter()
    timeline: list[tuple[float, int]] = []
    while True:
        finished = done.is_set()
        state = state_db(workdir)
        count = _count_rows(state) if state else None
        if count is not None:
            timeline.append((time.perf_counter() - start, count))
        if finished:
            return timeline
        done.wait(POLL_INTERVAL)


def throughput(timeline: list[tuple[float, int]], total: int) -> dict[str, float]:
    """Messages/s over the first and the last 10% of a run.

    Counts move in whole batches, so both windows run from one commit to
    another: the first from the first commit seen to the one that adds 10%
    more, the last from the commit reaching 90% to the one reaching 100%.
    """
    def reached(count: float) -> float:
        return next((seconds for seconds, seen in timeline if seen >= count), math.nan)

    started = next(((seconds, seen) for seconds, seen in timeline if seen > 0), None)
    if started is None or total <= 0:
        return {"first_10pct_per_s": math.nan, "last_10pct_per_s": math.nan, "last_over_first": math.nan}
    tenth = total / 10
    first_span = reached(started[1] + tenth) - started[0]
    last_span = reached(total) - reached(total - tenth)
    first = tenth / first_span if first_span > 0 else math.nan
    last = tenth / last_span if last_span > 0 else math.nan
    return {"first_10pct_per_s": round(first, 1), "last_10pct_per_s": round(last, 1),
            "last_over_first": round(last / first, 3) if first > 0 else math.nan}


def _median_throughput(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median last/first ratio, whole: medians taken per
    figure would pair one round's first 10% with another's last."""
    ordered = sorted(rounds, key=lambda figures: (math.isnan(figures["last_over_first"]), figures["last_over_first"]))
    return dict(ordered[(len(ordered) - 1) // 2])


def scenario_6(bench: Bench) -> ScenarioResult:
    big = bench.scale(50 * MB)
    corpus = bench.corpus("big", messages=20, folders=1, single_folder=True, big_message_bytes=big)
    result = ScenarioResult(6, TITLES[6], corpus.describe() | {"big_message_bytes": big})
    tools = bench.tools(("maildir", None), ("mbox", None), mbsync_without_compress=True)
    bench.rounds(result, "full backup", corpus, tools, fresh=True)
    for label in ("mailbackup (maildir)", "mailbackup (mbox)"):
        row = result.row("full backup", label)
        result.targets.append(check_value(f"{label}: peak RSS < 100 MB", row.peak_rss_mb() if row else math.nan,
                                          below=100.0, unit="MB"))
    return result


def _latency_phase(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms each way" if seconds else "proxy, no delay"


def scenario_7(bench: Bench) -> ScenarioResult:
    """Issue 18 target 1: the link's latency hidden (≤ 1.2× loopback, ≤ 0.5× mbsync on that link)."""
    corpus = bench.corpus("latency", messages=bench.scale(1_500), folders=12,
                          target_bytes=bench.scale(90 * 1000 * 1000))
    result = ScenarioResult(7, TITLES[7], corpus.describe() | {"latencies_each_way_s": list(LATENCIES)})
    tools = bench.tools(("maildir", None), peers=["mbsync"], mbsync_without_compress=True)
    bench.rounds(result, "loopback", corpus, tools, fresh=True)
    # The latency phases relay through netproxy.py (Python, on the same two cores): the same backup through
    # it without delay tells the link's cost from the harness's.
    for latency in (0.0, *LATENCIES):
        with Proxy("127.0.0.1", bench.server.port, latency=latency) as proxy:
            via_proxy = Target("localhost", proxy.port, corpus.target.cafile, corpus.target.user,
                               corpus.target.password)
            bench.rounds(result, _latency_phase(latency), corpus, tools, fresh=True, target=via_proxy)
    loopback = result.row("loopback", "mailbackup (maildir)")
    relayed = result.row(_latency_phase(0.0), "mailbackup (maildir)")
    for latency in LATENCIES:
        phase = _latency_phase(latency)
        mb = result.row(phase, "mailbackup (maildir)")
        result.targets += [
            check_ratio(f"{phase}: wall ≤ 1.2× mailbackup's on loopback", mb, loopback, "wall_s", at_most=1.2),
            check_ratio(f"{phase}: (the link alone) wall ≤ 1.2× mailbackup's through the proxy without delay", mb,
                        relayed, "wall_s", at_most=1.2),
            check_ratio(f"{phase}: wall ≤ 0.5× mbsync's", mb, result.row(phase, "mbsync"), "wall_s", at_most=0.5),
            check_ratio(f"{phase}: (fair) wall ≤ 0.5× mbsync's without COMPRESS", mb,
                        result.row(phase, "mbsync (no COMPRESS)"), "wall_s", at_most=0.5),
        ]
    return result


def scenario_8(bench: Bench) -> ScenarioResult:
    """Issue 18 target 4: a big folder's no-op (≤ 0.5× mbsync) and 1,000 new (≤ 0.7×, memory flat)."""
    corpus = bench.corpus("many", messages=bench.scale(100_000), folders=1, single_folder=True, profile="small")
    new = 100 if bench.args.quick else 1_000
    new_phase = f"{new:,} new"
    result = ScenarioResult(8, TITLES[8], corpus.describe() | {"new_per_round": new})
    tools = bench.tools(("maildir", None), peers=["mbsync"], mbsync_without_compress=True)
    bench.rounds(result, "no-op", corpus, tools, fresh=False)

    def deliver(number: int) -> None:
        info = bench.append(corpus, new, seed=2000 + number)
        log(f"[8] delivered {info.messages} new messages into INBOX/new")

    bench.rounds(result, new_phase, corpus, tools, fresh=False, before_round=deliver)
    result.corpus = corpus.describe() | {"new_per_round": new}
    noop, fresh_mail = result.row("no-op", "mailbackup (maildir)"), result.row(new_phase, "mailbackup (maildir)")
    growth = fresh_mail.peak_rss_mb() / noop.peak_rss_mb() if fresh_mail and noop else math.nan
    result.targets += [
        check_ratio("no-op: wall ≤ 0.5× mbsync's", noop, result.row("no-op", "mbsync"), "wall_s", at_most=0.5),
        check_ratio(f"{new_phase}: wall ≤ 0.7× mbsync's", fresh_mail, result.row(new_phase, "mbsync"), "wall_s",
                    at_most=0.7),
        check_value(f"{new_phase}: memory flat (peak RSS ÷ the no-op's < 1.25)", growth, below=1.25, unit="×"),
    ]
    return result


def scenario_9(bench: Bench) -> ScenarioResult:
    """Issue 18 target 2: thousands of small folders (full backup ≤ 0.7× mbsync's wall time)."""
    folders = 500 if bench.args.quick else 10_000
    corpus = bench.corpus("folders", messages=5 * folders, folders=folders, tree=True, profile="small")
    result = ScenarioResult(9, TITLES[9], corpus.describe() | {"folder_count": folders, "messages_per_folder": 5})
    tools = bench.tools(("maildir", None), peers=["mbsync"], mbsync_without_compress=True)
    bench.rounds(result, "full backup", corpus, tools, fresh=True)
    bench.rounds(result, "no-op", corpus, tools, fresh=False)
    mb = result.row("full backup", "mailbackup (maildir)")
    result.targets += [
        check_ratio("full backup: wall ≤ 0.7× mbsync's", mb, result.row("full backup", "mbsync"), "wall_s",
                    at_most=0.7),
        check_ratio("full backup: (fair) wall ≤ 0.7× mbsync's without COMPRESS", mb,
                    result.row("full backup", "mbsync (no COMPRESS)"), "wall_s", at_most=0.7),
        check_ratio("no-op: wall ≤ mbsync's", result.row("no-op", "mailbackup (maildir)"),
                    result.row("no-op", "mbsync"), "wall_s", at_most=1.0),
    ]
    return result


def sweep_corpus(bench: Bench, accounts: int) -> tuple[Corpus, list[Target]]:
    """*accounts* accounts of 50 small messages in two folders, one password for all."""
    password = f"bench-sweep-{os.getpid()}"
    targets, messages, size = [], 0, 0
    started = time.monotonic()
    for number in range(accounts):
        user = f"sweep{number:04d}@coj.go.th"
        bench.server.add_user(user, password)
        info = make_corpus.make_corpus(bench.server, user, messages=50, folders=2, seed=bench.args.seed + number,
                                       profile="small", processes=1)
        target = Target("localhost", bench.server.port, bench.server.cafile, user, password)
        warm_up(target, info.folders)
        targets.append(target)
        messages, size = messages + info.messages, size + info.bytes
    log(f"corpus sweep: {accounts} accounts, {messages} messages written in {time.monotonic() - started:.1f} s")
    return Corpus("sweep", targets[0], info, len(info.folders), messages, size), targets


def _accounts_done_watch(accounts: int, *, timeline: bool = True) -> Callable[
        [Tool, Path, Row], Callable[[threading.Event], None] | None]:
    """How each account's copies were verified (the totals of its verify.json),
    and with *timeline* the accounts finished over time, for the first and
    last 10%: the modification times of their verify.json, each written once
    its account is done."""
    def make(tool: Tool, workdir: Path, row: Row) -> Callable[[threading.Event], None] | None:
        if tool.tool != "mailbackup":
            return None

        def watch(done: threading.Event) -> None:
            start = time.time()
            done.wait()
            reports = list((workdir / "mail").glob("*/reports/verify.json"))
            row.extra["verification"] = verification_counts(reports)
            if not timeline:
                return
            finished = sorted(path.stat().st_mtime - start for path in reports)
            row.extra["throughput_unit"] = "accounts"
            rounds = row.extra.setdefault("throughput_rounds", [])
            rounds.append(throughput([(seconds, count) for count, seconds in enumerate(finished, 1)], accounts))
            row.extra["throughput"] = _median_throughput(rounds)

        return watch

    return make


def verification_counts(reports: Iterable[Path]) -> dict[str, int]:
    """Copies checked from the hashes computed at download, and copies read again, over all accounts."""
    counts = {"accounts": 0, "checked_at_download": 0, "checked": 0, "bytes_checked": 0}
    for path in reports:
        totals = json.loads(path.read_text(encoding="utf-8"))["totals"]
        counts["accounts"] += 1
        for key in ("checked_at_download", "checked", "bytes_checked"):
            counts[key] += int(totals.get(key) or 0)
    return counts


def scenario_10(bench: Bench) -> ScenarioResult:
    """Issue 18 target 3: a sweep with verification within mbsync's time through xargs -P, no slowing down."""
    accounts = 20 if bench.args.quick else 500
    corpus, targets = sweep_corpus(bench, accounts)
    result = ScenarioResult(10, TITLES[10], corpus.describe() | {"accounts": accounts, "jobs": SWEEP_JOBS,
                                                                 "folders": list(corpus.info.folders)})
    tools: list[Tool] = [MailbackupSweep(bench.mailbackup_command, bench.mailbackup_env, targets)]
    if "mbsync" in bench.peers:
        tools += [MbsyncMany(targets), MbsyncMany(targets, compress=False)]
    bench.rounds(result, "full sweep", corpus, tools, fresh=True, watch=_accounts_done_watch(accounts))
    bench.rounds(result, "no-op sweep", corpus, tools, fresh=False,
                 watch=_accounts_done_watch(accounts, timeline=False))
    ours = result.row("full sweep", tools[0].label)
    first = ours.extra.get("throughput", {}) if ours else {}
    for phase in ("full sweep", "no-op sweep"):
        mine = result.row(phase, tools[0].label)
        result.targets += [
            check_ratio(f"{phase}, verification included: wall ≤ mbsync's", mine,
                        result.row(phase, f"mbsync (xargs -P {SWEEP_JOBS})"), "wall_s", at_most=1.0),
            check_ratio(f"{phase}: (fair) wall ≤ mbsync's without COMPRESS", mine,
                        result.row(phase, f"mbsync (no COMPRESS) (xargs -P {SWEEP_JOBS})"), "wall_s", at_most=1.0),
        ]
    result.targets.append(check_value("accounts/s over the last 10% ≥ 80% of the first 10%",
                                      first.get("last_over_first", math.nan), at_least=0.8, unit="×"))
    for phase in ("full sweep", "no-op sweep"):
        mine = result.row(phase, tools[0].label)
        counts = mine.extra.get("verification") if mine else None
        if counts:
            result.notes.append(
                f"{phase}, last round: verification checked {counts['checked_at_download']:,} copies from the "
                f"hashes computed at download (written by that sweep's backup) and read {counts['checked']:,} "
                f"again ({counts['bytes_checked'] / 1e6:.1f} MB), over {counts['accounts']} accounts")
    return result


SCENARIOS: dict[int, Callable[[Bench], ScenarioResult]] = {
    1: scenario_1, 2: scenario_2, 3: scenario_3, 4: scenario_4, 5: scenario_5, 6: scenario_6,
    7: scenario_7, 8: scenario_8, 9: scenario_9, 10: scenario_10,
}


# ----------------------------------------------------------------- targets
def _usable(row: Row | None) -> bool:
    return row is not None and bool(row.runs) and all(run.exit_code in (0, 1) for run in row.runs)


def check_ratio(text: str, ours: Row | None, peer: Row | None, name: str, *, at_most: float) -> TargetCheck:
    """ours/peer of the median of *name* must be at most *at_most*."""
    if not (_usable(ours) and _usable(peer)):
        return TargetCheck(text, "peer not measured" if _usable(ours) else "not measured", "n/a")
    assert ours is not None and peer is not None
    mine, theirs = ours.median(name), peer.median(name)
    ratio = mine / theirs if theirs > 0 else math.inf
    unit = "s"
    return TargetCheck(text, f"{mine:.2f} {unit} vs {theirs:.2f} {unit} ({ratio:.2f}×)",
                       "PASS" if ratio <= at_most else "FAIL")


def check_speedup(text: str, ours: Row | None, slower: Row | None, *, at_least: float) -> TargetCheck:
    if not (_usable(ours) and _usable(slower)):
        return TargetCheck(text, "peer not measured" if _usable(ours) else "not measured", "n/a")
    assert ours is not None and slower is not None
    speedup = slower.median("wall_s") / ours.median("wall_s")
    return TargetCheck(text, f"{ours.median('wall_s'):.2f} s vs {slower.median('wall_s'):.2f} s ({speedup:.1f}×)",
                       "PASS" if speedup >= at_least else "FAIL")


def check_value(text: str, value: float, *, below: float | None = None, at_least: float | None = None,
                unit: str = "") -> TargetCheck:
    if math.isnan(value):
        return TargetCheck(text, "not measured", "n/a")
    passed = (below is None or value < below) and (at_least is None or value >= at_least)
    return TargetCheck(text, f"{value:.2f} {unit}".strip(), "PASS" if passed else "FAIL")


# ------------------------------------------------------------------ report
def ratio_against(scenario: ScenarioResult, row: Row) -> str:
    """mailbackup (maildir) ÷ *row*, wall and CPU, in the same phase."""
    ours = scenario.row(row.phase, "mailbackup (maildir)")
    if ours is None or ours is row or not row.runs or not ours.runs:
        return ""
    wall = ours.median("wall_s") / row.median("wall_s") if row.median("wall_s") > 0 else math.nan
    cpu = ours.median("cpu_s") / row.median("cpu_s") if row.median("cpu_s") > 0 else math.nan
    return f"{wall:.2f} / {cpu:.2f}"


def markdown(scenarios: list[ScenarioResult], rounds: int) -> str:
    lines = [
        f"Median of {rounds} round(s); peak RSS is the highest of the rounds; CPU is the tool's user+sys "
        "(children included); server CPU is Dovecot's imap + imap-login processes.",
        "",
        "| # | scenario | phase | tool | wall s | CPU s | peak RSS MB | server CPU s | stored | byte-identical | "
        "mailbackup ÷ tool (wall / CPU) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in scenarios:
        size = f"{scenario.corpus['messages']:,} msgs, {scenario.corpus['mb']:,} MB"
        for row in scenario.rows:
            stored = f"{row.stored:,}/{row.expected:,}" if row.stored is not None and row.expected else ""
            identical = f"{row.identical:,}" if row.identical is not None else ""
            failed = [run.exit_code for run in row.runs if run.exit_code not in (0,)]
            tool = row.label + (f" (exit {','.join(map(str, failed))})" if failed else "")
            lines.append(
                f"| {scenario.number} | {scenario.title} ({size}) | {row.phase} | {tool} | "
                f"{_fmt(row.median('wall_s'))} | {_fmt(row.median('cpu_s'))} | {_fmt(row.peak_rss_mb(), 0)} | "
                f"{_fmt(row.median('server_cpu_s'))} | {stored} | {identical} | {ratio_against(scenario, row)} |"
            )
    lines += ["", "| # | target | measured | result |", "|---|---|---|---|"]
    for scenario in scenarios:
        for target in scenario.targets:
            lines.append(f"| {scenario.number} | {target.text} | {target.measured} | **{target.status}** |")
        throughput_row = scenario.row("first backup", "mailbackup (maildir)") or \
            scenario.row("full sweep", f"mailbackup sweep (--jobs {SWEEP_JOBS})")
        if throughput_row and "throughput" in throughput_row.extra:
            figures = throughput_row.extra["throughput"]
            ratios = ", ".join(f"{r['last_over_first']}" for r in throughput_row.extra["throughput_rounds"])
            unit = throughput_row.extra.get("throughput_unit", "messages")
            lines.append(f"| {scenario.number} | (throughput, {unit}/s, median round) | first 10%: "
                         f"{figures['first_10pct_per_s']:,.0f}, last 10%: {figures['last_10pct_per_s']:,.0f} "
                         f"(last/first in each round: {ratios}) | |")
    notes = [f"- ({scenario.number}) {note}" for scenario in scenarios for note in scenario.notes]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def _fmt(value: float, digits: int = 2) -> str:
    return "" if math.isnan(value) else f"{value:,.{digits}f}"


def machine_info() -> dict[str, Any]:
    def first_line(command: list[str]) -> str:
        if shutil.which(command[0]) is None:
            return "not installed"
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr) else "?"

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0")
    return {
        "cpu": model, "cpus": os.cpu_count(), "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "dovecot": first_line(["dovecot", "--version"]), "mbsync": first_line(["mbsync", "--version"]),
        "offlineimap": first_line(["offlineimap", "--version"]),
    }  # fmt: skip


def to_json(scenarios: list[ScenarioResult], args: argparse.Namespace, peers: list[str],
            started: datetime, machine: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    return {
        "started": started.isoformat(timespec="seconds"),
        "mailbackup_source": source,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "options": {"rounds": args.rounds, "quick": args.quick, "scenarios": args.scenarios, "peers": peers,
                    "seed": args.seed, "slow_peers": args.slow_peers},
        "scenarios": [
            {"id": s.number, "title": s.title, "corpus": s.corpus, "results": [row.summary() for row in s.rows],
             "ratios": _ratios(s), "targets": [asdict(t) for t in s.targets], "notes": s.notes}
            for s in scenarios
        ],
    }


def _ratios(scenario: ScenarioResult) -> list[dict[str, Any]]:
    """mailbackup (maildir) ÷ every other row of the same phase."""
    out = []
    for row in scenario.rows:
        ours = scenario.row(row.phase, "mailbackup (maildir)")
        if ours is None or ours is row or not ours.runs or not row.runs:
            continue
        out.append({"phase": row.phase, "against": row.label,
                    **{name: _round(ours.median(name) / row.median(name)) if row.median(name) > 0 else None
                       for name in ("wall_s", "cpu_s")},
                    "peak_rss_mb": _round(ours.peak_rss_mb() / row.peak_rss_mb()) if row.peak_rss_mb() > 0 else None})
    return out


# ---------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark mailbackup against mbsync and offlineimap.")
    parser.add_argument("--scenarios", default=",".join(map(str, ALL_SCENARIOS)), help="e.g. 1,2,6 (default all)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per tool and phase; the median is reported")
    parser.add_argument("--quick", action="store_true", help=f"every corpus about {QUICK_FACTOR}× smaller (CI)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="peers to run if installed: mbsync,offlineimap (default) or none")
    parser.add_argument("--slow-peers", action="store_true", help="also run offlineimap in scenario 5")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="also write the Markdown tables here")
    parser.add_argument("--workdir", type=Path, help="server and outputs (default: a new short /tmp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mailbackup", help="command to run mailbackup (default: this python -m mailbackup)")
    args = parser.parse_args(argv)
    try:
        args.scenarios = sorted({int(part) for part in args.scenarios.split(",") if part.strip()})
    except ValueError:
        parser.error("--scenarios takes numbers, e.g. 1,2,6")
    if not args.scenarios or not set(args.scenarios) <= set(ALL_SCENARIOS):
        parser.error(f"--scenarios: choose from {ALL_SCENARIOS}")
    peers = [part.strip() for part in args.peers.split(",") if part.strip() and part.strip() != "none"]
    if not set(peers) <= set(PEERS):
        parser.error(f"--peers: choose from {', '.join(PEERS)} or none")
    args.peers = peers
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


@contextlib.contextmanager
def bench_environment(args: argparse.Namespace) -> Iterator[Bench]:
    own = args.workdir is None
    base = Path(tempfile.mkdtemp(prefix="mbb", dir="/tmp")) if own else args.workdir.resolve()
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # Dovecot's mail user (nobody) must get through to the server's directory
        os.chmod(base, 0o711)
    server = DovecotServer(base / "srv")
    server.start()
    try:
        yield Bench(args, server, base / "out")
    finally:
        server.stop(remove_dir=False)
        if own and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"work directory kept: {base}")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the server is stopped and no tool outlives the run


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = datetime.now(UTC)
    machine = machine_info()
    missing = [peer for peer in args.peers if shutil.which(peer) is None]
    if missing:
        log(f"not installed, not measured: {', '.join(missing)}")
    results: list[ScenarioResult] = []
    try:
        with bench_environment(args) as bench:
            for number in args.scenarios:
                log(f"scenario {number}: {TITLES[number]}")
                results.append(SCENARIOS[number](bench))
                bench.empty_trash()
            peers, source = bench.peers, bench.source
    except BenchError as exc:
        log(f"stopped: {exc}")
        return 1
    text = markdown(results, args.rounds)
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        data = to_json(results, args, peers, started, machine, source)
        args.json.write_text(json.dumps(_no_nan(data), indent=2, ensure_ascii=False, default=str) + "\n",
                             encoding="utf-8")
    return 0


def _no_nan(value: Any) -> Any:
    """NaN is not JSON: a figure that could not be measured is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_no_nan(item) for item in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
