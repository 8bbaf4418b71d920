#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of the code that reads bytes
mailbackup does not control.

Targets:

  fetch     the pipelined FETCH reader (imap/pipeline.py), fed a server's
            answer from a BytesIO: only a lost connection or a protocol
            violation may come out, every body reads back at its size, and no
            spooled body file is left behind
  items     imap/parse.py's parse_items on one FETCH response's text
  headers   headers.summarize on the start of a message: never raises
  mboxrd    store/mboxrd.py: iter_entries / read_entry / body_from_entry on
            an arbitrary mbox file (ValueError only); unquote(quote(x)) == x
  utf7      imap/utf7.decode on a folder name from LIST (ValueError only, and
            what it accepts encodes back to the same bytes)
  config    config.read_config on an arbitrary file (ConfigError only)

A failure is an uncaught exception or a broken invariant: libFuzzer stops,
prints the traceback and writes the input to ``crash-<sha1>`` in
--artifacts (default: the current directory).  Replay it with
``scripts/fuzz.py TARGET crash-<sha1>``.

  scripts/fuzz.py fetch --seconds 600                  one target, 10 minutes
  scripts/fuzz.py --all --seconds 3600 --corpus fuzz/  the long run: an hour
                                                       each, corpus kept
  scripts/fuzz.py --all --seconds 3                    what CI runs
                                                       (tests/test_fuzz_short.py)

Each target starts from a few seeds built in (a real FETCH answer, an mbox,
a config...) plus, with --corpus DIR, DIR/<target>/, where what it finds is
kept for the next run.  Anything after ``--`` goes to libFuzzer as is
(e.g. ``-- -jobs=4 -workers=4``).  Needs ``pip install atheris`` (it is in
the ``test`` extra).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("fetch", "items", "headers", "mboxrd", "utf7", "config", "archive")

FETCH_SEED = (b'* 1 FETCH (UID 1 FLAGS (\\Seen) INTERNALDATE "15-Jan-2024 09:30:00 +0700" RFC822.SIZE 12 '
              b"BODY[] {12}\r\nSubject: a\r\n)\r\n* 2 EXISTS\r\n* 2 FETCH (FLAGS (\\Seen))\r\n"
              b"MB1 OK Fetch completed.\r\n")
SEEDS: dict[str, list[bytes]] = {
    "fetch": [b"\x01\x00" + FETCH_SEED, b"\x02\x02* BYE shutting down\r\n",
              b"\x00\x00* 1 FETCH (UID 2 BODY[] {99999999999}\r\n", b"\x01\x01" + FETCH_SEED.replace(b"{12}", b"{3}"),
              b'\x80\x00* 1 FETCH (UID 1 RFC822.SIZE 12 FLAGS (\\Seen) INTERNALDATE "15-Jan-2024 09:30:00 +0700")\r\n'
              b"* 2 FETCH (UID 2 FLAGS ())\r\nMB1 OK done\r\n"],
    "items": [b'(UID 1 FLAGS (\\Seen $x) INTERNALDATE "15-Jan-2024 09:30:00 +0700" BODY[] \x000\x00)',
              b'(UID 7 BODY[HEADER] NIL RFC822.SIZE 3 X-GM-LABELS ("a b" c))'],
    "headers": [b"From: =?UTF-8?B?4Lio4Liy4Lil?= <court@coj.go.th>\r\nSubject: =?TIS-620?B?vdLF?=\r\n"
                b"Message-ID: <1@x>\r\nReturn-Path: <a@b>\r\nDate: Mon, 15 Jan 2024 09:30:00 +0700\r\n\r\nbody",
                b"Subject: \xc3\xa0 raw\r\n continued\r\n\r\n"],
    "mboxrd": [b"From a@b Thu Jan  4 09:03:07 2024\nSubject: x\n\n>From here\n\nFrom b@c Thu Jan  4 09:03:07 2024\n"
               b"y\n\n"],
    "utf7": [b"INBOX", b"&DhcOFA4qDi0OGg-", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-", b"A&-B"],
    "config": ["defaults:\n  server: imap.mail.go.th:993\n  format: mbox\n  jobs: 4\naccounts:\n"
               "  - account: somchai.j@coj.go.th\n    name: สมชาย\n    exclude: [Trash]\n  - malee.s@coj.go.th\n"
               .encode()],
    # what a state row says about where a message is (the archive is untrusted): a byte choosing the store,
    # 16 bytes of mbox offset and length, then the Maildir location
    "archive": [b"\x00" + bytes(16) + b"1700000000.M1P1Q1.host,S=5", b"\x00" + bytes(16) + b"../../../secret",
                b"\x01" + bytes(8) + (60).to_bytes(8, "big", signed=True), b"\x00" + bytes(16) + b"/etc/passwd"],
}
DICTIONARY = [b"FETCH", b"UID", b"FLAGS", b"BODY[]", b"RFC822.SIZE", b"INTERNALDATE", b"NIL", b"{", b"}", b"\r\n",
              b"* ", b"MB1 OK", b"MB1 NO", b"BYE", b"\x00", b"From ", b">From ", b"\n\n", b"&", b"-", b"defaults:",
              b"accounts:", b"- account: ", b"server: ", b"=?UTF-8?B?", b"?=", b"Subject: ", b"\xe0\xb8"]


# -- the harnesses (each takes one input; an exception that escapes is a finding) ----
def harness(target: str, workdir: Path) -> Callable[[bytes], None]:
    """The test function of `target`, with mailbackup imported under atheris' instrumentation."""
    import atheris

    with atheris.instrument_imports(include=["mailbackup"]):
        from mailbackup import config, headers
        from mailbackup.errors import ConfigError, ConnectionLost, ServerError, StorageError
        from mailbackup.imap import utf7
        from mailbackup.imap.lexer import ProtocolViolation
        from mailbackup.imap.parse import parse_items
        from mailbackup.imap.pipeline import FetchPipeline
        from mailbackup.model import StoredMessage
        from mailbackup.store import mboxrd
        from mailbackup.store.body import MessageBody
        from mailbackup.store.maildir import MaildirStore
        from mailbackup.store.mbox import MboxStore

    spool = workdir / "spool"
    spool.mkdir()

    def fetch(data: bytes) -> None:
        depth, spool_above = (data[0] % 3) + 1 if data else 1, (data[1] if len(data) > 1 else 0) * 4
        progress = [0]  # the deadline for progress (imap/deadline.py) moves on with every body delivered

        def made_progress() -> None:
            progress[0] += 1
        pipeline = FetchPipeline(io.BytesIO(data[2:]), lambda command: None, spool_dir=spool,
                                 spool_above=spool_above, depth=depth, progress=made_progress)
        try:
            if data and data[0] & 0x80:  # the size/flags/date listing that comes before the bodies
                for row in pipeline.fetch_meta("1:*"):
                    assert row.uid >= 0 and row.size >= 0
                return
            for result in pipeline.run([[1, 2], [3], [4, 5, 7]]):
                assert progress[0] >= len(result.messages)
                for message in result.messages:
                    assert sum(len(chunk) for chunk in message.body.chunks()) == message.size
                    message.body.discard()
        except (ConnectionLost, StorageError):
            pass  # ProtocolViolation is a ConnectionLost
        except ServerError:
            assert data and data[0] & 0x80  # only the listing turns a tagged NO into an error
        leftover = list(spool.iterdir())
        assert not leftover, f"spooled bodies left behind: {leftover}"

    def items(data: bytes) -> None:
        literals = [MessageBody.from_bytes(b"literal zero"), MessageBody.from_bytes(b"")]
        try:
            parsed = parse_items(data, literals)
        except ProtocolViolation:
            return
        assert all(key == key.upper() for key in parsed)

    def summarize(data: bytes) -> None:
        headers.summarize(data)  # must never raise: a broken header is still saved and reported

    def mbox(data: bytes) -> None:
        assert mboxrd.unquote(mboxrd.quote(data)) == data
        handle = io.BytesIO(data)
        try:
            spans = list(mboxrd.iter_entries(handle, chunk_size=7))
        except ValueError:
            return
        assert sum(span.length for span in spans) == len(data)
        for span in spans:
            entry = mboxrd.read_entry(handle, span)
            for size in (0, len(entry) // 2, len(entry)):
                try:
                    mboxrd.body_from_entry(entry, size)
                except ValueError:
                    pass

    def decode(data: bytes) -> None:
        try:
            name = utf7.decode(data)
        except ValueError:
            return
        assert utf7.encode(name) == data

    config_file = workdir / "config.yaml"

    def read_config(data: bytes) -> None:
        config_file.write_bytes(data)
        try:
            config.read_config(config_file)
        except ConfigError:
            pass

    archive, message = _untrusted_archive(workdir, MaildirStore, MboxStore, StoredMessage)

    def stored_place(data: bytes) -> None:
        """Whatever a state row says, a store reads the archived copy or refuses; never a byte from outside."""
        store = archive[data[:1] == b"\x01"]
        offset, length = (int.from_bytes(data[start:start + 8], "big", signed=True) for start in (1, 9))
        row = replace(message, location=data[17:].decode("utf-8", "replace"), mbox_offset=offset,
                      mbox_length=length)
        try:
            body = store.read_verified("INBOX", row)
        except (OSError, ValueError):
            return
        assert body == BODY and SECRET not in body

    return {"fetch": fetch, "items": items, "headers": summarize, "mboxrd": mbox, "utf7": decode,
            "config": read_config, "archive": stored_place}[target]


BODY = b"Subject: a\n\nhello\n"
SECRET = b"SECRET OUTSIDE THE ARCHIVE"


def _untrusted_archive(workdir: Path, maildir: Any, mbox: Any, stored: Any) -> tuple[dict[bool, Any], Any]:
    """One message in a Maildir and in an mbox under workdir/archive/mail, and files outside it
    named as an edited location would reach them (with the Maildir info suffix too)."""
    import hashlib
    from datetime import UTC, datetime

    from mailbackup.store.body import MessageBody

    mail_root = workdir / "archive" / "mail"
    mail_root.mkdir(parents=True)
    message = stored(folder_id=1, uidvalidity=1, uid=1, size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest(),
                     internaldate=datetime(2024, 1, 4, tzinfo=UTC), flags=(), message_id=None, subject="a",
                     sender="a@b", location=None)
    stores = {False: maildir(mail_root, ":"), True: mbox(mail_root)}
    for store in stores.values():
        store.prepare("INBOX")
        planned = store.plan("INBOX", [message])
        [written] = store.write("INBOX", [(planned[0], MessageBody.from_bytes(BODY))], 0)
        message = replace(message, location=written.location or message.location)
    for name in ("secret", "secret:2,", "passwd:2,", "archive/secret:2,"):
        (workdir / name).write_bytes(SECRET)
    (mail_root / "INBOX" / "cur" / "link:2,").symlink_to(workdir / "secret")
    return stores, message


def run_one(target: str, seconds: float, corpus: Path | None, artifacts: Path, extra: list[str],
            workdir: Path) -> int:
    """Fuzz one target in this process: libFuzzer ends the process when done, so
    everything temporary lives in `workdir`, which the parent removes."""
    import atheris

    seeds = workdir / "seeds"
    seeds.mkdir()
    for number, seed in enumerate(SEEDS[target]):
        (seeds / f"seed{number}").write_bytes(seed)
    dictionary = workdir / "tokens.dict"
    dictionary.write_text("".join(f'"{_escaped(token)}"\n' for token in DICTIONARY), encoding="ascii")
    directories = [str(seeds)]
    if corpus is not None:
        (corpus / target).mkdir(parents=True, exist_ok=True)
        directories.insert(0, str(corpus / target))  # the first directory receives new finds
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], f"-max_total_time={max(int(seconds), 1)}", "-timeout=10", "-rss_limit_mb=1024",
            f"-artifact_prefix={artifacts}{os.sep}", f"-dict={dictionary}", "-print_final_stats=1", *extra]
    replay = [arg for arg in extra if not arg.startswith("-")]
    atheris.Setup(argv if replay else [*argv, *directories], harness(target, workdir))
    atheris.Fuzz()
    return 0


def _escaped(token: bytes) -> str:
    return "".join(chr(byte) if 0x20 <= byte < 0x7F and byte not in b'"\\' else f"\\x{byte:02x}" for byte in token)


def child(target: str, seconds: float, corpus: Path | None, artifacts: Path, extra: list[str],
          workdir: Path) -> list[str]:
    command = [sys.executable, __file__, target, "--seconds", str(seconds), "--artifacts", str(artifacts),
               "--workdir", str(workdir)]
    if corpus is not None:
        command += ["--corpus", str(corpus)]
    return [*command, "--", *extra]


def run_all(seconds: float, corpus: Path | None, artifacts: Path, extra: list[str]) -> int:
    """Every target in its own process, as many at once as there are CPUs."""
    pending = list(TARGETS)
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    failed: list[str] = []
    parallel = max(1, min(len(TARGETS), os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="mailbackup-fuzz-") as scratch:
        while pending or running:
            while pending and len(running) < parallel:
                target = pending.pop(0)
                workdir = Path(scratch) / target
                workdir.mkdir()
                with open(workdir.with_suffix(".log"), "wb") as output:
                    process = subprocess.Popen(child(target, seconds, corpus, artifacts, extra, workdir),
                                               stdout=output, stderr=subprocess.STDOUT)
                running.append((target, process, workdir.with_suffix(".log")))
            target, process, log = running.pop(0)
            code = process.wait()
            text = log.read_text(encoding="utf-8", errors="replace")
            runs = [line.split()[1] for line in text.splitlines() if line.startswith("Done ")]
            print(f"{target}: {'ok' if code == 0 else f'FAILED (exit {code})'}"
                  f"{f', {runs[-1]} inputs' if runs else ''}", flush=True)
            if code != 0:
                failed.append(target)
                print(text[-6000:], file=sys.stderr)
    if failed:
        print(f"fuzzing found problems in: {', '.join(failed)} (inputs in {artifacts})", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    extra = args[args.index("--") + 1:] if "--" in args else []
    args = args[:args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", choices=TARGETS, help="what to fuzz (or --all)")
    parser.add_argument("inputs", nargs="*", type=Path, help="replay these inputs instead of fuzzing")
    parser.add_argument("--all", action="store_true", help="every target, each in its own process")
    parser.add_argument("--seconds", type=float, default=60, help="time per target (default 60)")
    parser.add_argument("--corpus", type=Path, help="keep and reuse what the fuzzer finds, in DIR/<target>/")
    parser.add_argument("--artifacts", type=Path, default=Path.cwd(), help="where crash inputs are written")
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)  # set for the process that fuzzes
    options = parser.parse_args(args)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    if options.all:
        return run_all(options.seconds, options.corpus, options.artifacts.resolve(), extra)
    if options.target is None:
        parser.error("name a target or give --all")
    extra = [*extra, *(str(path.resolve()) for path in options.inputs)]
    if options.workdir is None:  # libFuzzer ends the process: fuzz in a child, clean up here
        with tempfile.TemporaryDirectory(prefix="mailbackup-fuzz-") as scratch:
            command = child(options.target, options.seconds, options.corpus, options.artifacts.resolve(), extra,
                            Path(scratch))
            return subprocess.call(command)
    sys.path.insert(0, str(REPO))
    return run_one(options.target, options.seconds, options.corpus, options.artifacts.resolve(), extra,
                   options.workdir)


if __name__ == "__main__":
    sys.exit(main())
