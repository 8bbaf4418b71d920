#!/usr/bin/env python3
"""What each kind of IMAP command costs Dovecot, over thousands of folders.

Starts a private Dovecot (``dovecot_server.py``), writes a tree corpus
(``make_corpus.py --tree``: folders four deep, half with Thai names, five
small messages each), opens every folder once as ``bench.py`` does, then runs
ONE kind of command sequence at a time over all folders on one fresh
connection and prints the CPU Dovecot spent on it (as ``bench.py`` reads it: the
master and the children it reaped, from ``/proc/<pid>/stat``) and the wall
time.  Kinds are ``+``-joined steps, for example::

    python scripts/server_cost.py --folders 2000 liststatus examine \\
        condstore+examine+listing+bodies select+listing+bodies examine+unselect

Steps: ``condstore``/``qresync`` (ENABLE first); ``list``, ``liststatus``
(LIST ... RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE)),
as mailbackup sends it), ``liststatusnosize``, ``liststatusmin`` (MESSAGES
UIDNEXT UIDVALIDITY only); per folder: ``status``, ``examine`` or
``select``, then ``listing`` (UID FETCH 1:* of UID, sizes, flags, dates),
``modseq`` (MODSEQ in it too), ``bodies`` (FETCH 1:5 BODY.PEEK[]),
``close``/``unselect``.  The commands of one folder go out together (one
round trip), as mailbackup sends them.  ``--repeat`` runs every kind again:
the first access to a state Dovecot has not indexed yet costs more than the
second, so whoever runs first after a change pays for it.  Linux only
(``/proc``).  Stdlib only.
"""

from __future__ import annotations

import argparse
import re
import socket
import ssl
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import make_corpus  # noqa: E402
from bench import Runner, Target, warm_up  # noqa: E402
from dovecot_server import DovecotServer, imap_utf7_encode  # noqa: E402

USER, PASSWORD = "cost@coj.go.th", "cost-secret"
LIST_STATUS = {
    "liststatus": "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE",
    "liststatusnosize": "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ",
    "liststatusmin": "MESSAGES UIDNEXT UIDVALIDITY",
}
LITERAL = re.compile(rb"\{(\d+)\}\r\n\Z")


class Connection:
    """A bare IMAP client: tagged commands, answers read and dropped."""

    def __init__(self, server: DovecotServer) -> None:
        context = ssl.create_default_context(cafile=str(server.cafile))
        raw = socket.create_connection((server.hostname, server.port))
        self.sock = context.wrap_socket(raw, server_hostname=server.hostname)
        self.reader = self.sock.makefile("rb")
        self.number = 0
        self.finished: set[bytes] = set()  # tags Dovecot completed out of order
        self.reader.readline()
        self.command(f"LOGIN {USER} {PASSWORD}")

    def send(self, text: str) -> bytes:
        self.number += 1
        tag = b"C%d" % self.number
        self.sock.sendall(tag + b" " + text.encode("ascii") + b"\r\n")
        return tag

    def wait(self, tag: bytes) -> None:
        while tag not in self.finished:
            line = self.reader.readline()
            if not line:
                raise EOFError("server closed the connection")
            literal = LITERAL.search(line)
            if literal:
                self.reader.read(int(literal.group(1)))
            elif line[:1] == b"C":
                done, _space, rest = line.partition(b" ")
                if not rest.startswith(b"OK"):
                    print(f"  {line.decode(errors='replace').strip()}", file=sys.stderr)
                self.finished.add(done)
        self.finished.discard(tag)

    def command(self, text: str) -> None:
        self.wait(self.send(text))


def per_folder(steps: set[str], wire_name: str) -> list[str]:
    opener = "SELECT" if "select" in steps else "EXAMINE"
    commands = [f'{opener} "{wire_name}"']
    if "listing" in steps:
        items = "UID RFC822.SIZE FLAGS INTERNALDATE" + (" MODSEQ" if "modseq" in steps else "")
        commands.append(f"UID FETCH 1:* ({items})")
    if "bodies" in steps:
        commands.append("FETCH 1:5 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    commands += [word.upper() for word in ("close", "unselect") if word in steps]
    return commands


def run_kind(server: DovecotServer, folders: list[str], kind: str) -> str:
    steps = set(kind.split("+"))
    connection = Connection(server)
    for extension in ("condstore", "qresync"):
        if extension in steps:
            connection.command(f"ENABLE {extension.upper()}")
    runner = Runner(server)
    before, started = runner.server_cpu(), time.monotonic()
    if "list" in steps:
        connection.command('LIST "" "*"')
    for step, items in LIST_STATUS.items():
        if step in steps:
            connection.command(f'LIST "" "*" RETURN (STATUS ({items}))')
    wire_names = ["INBOX" if name == "INBOX" else imap_utf7_encode(name) for name in folders]
    if "status" in steps:
        for wire_name in wire_names:
            connection.command(f'STATUS "{wire_name}" ({LIST_STATUS["liststatus"]})')
    if steps & {"examine", "select"}:
        for wire_name in wire_names:
            for tag in [connection.send(command) for command in per_folder(steps, wire_name)]:
                connection.wait(tag)
    wall = time.monotonic() - started
    connection.command("LOGOUT")
    time.sleep(0.3)  # the imap process exits and is reaped: only then are its times the master's
    cpu = runner.server_cpu() - before
    return f"| {kind} | {wall:.2f} | {cpu:.2f} | {1000 * cpu / len(folders):.2f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kinds", nargs="+", help="command kinds, e.g. examine+listing+bodies")
    parser.add_argument("--folders", type=int, default=2000)
    parser.add_argument("--repeat", action="store_true", help="run every kind a second time")
    args = parser.parse_args()
    with DovecotServer() as server:
        server.add_user(USER, PASSWORD)
        info = make_corpus.make_corpus(server, USER, messages=5 * args.folders, folders=args.folders, tree=True,
                                       profile="small")
        folders = list(info.folders)
        warm_up(Target(server.hostname, server.port, server.cafile, USER, PASSWORD), folders)
        print(f"{len(folders)} folders, 5 messages each\n")
        print("| kind | wall s | Dovecot CPU s | ms a folder |\n|---|--:|--:|--:|")
        for kind in args.kinds * (2 if args.repeat else 1):
            print(run_kind(server, folders, kind), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
