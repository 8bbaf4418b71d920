"""Windows path rules, checked on any platform: an archive made the way a
Windows machine makes it (Maildir info separator ";", since ":" is illegal
there) holds only names Windows can create, and the commands work on it.

Names are judged with `PureWindowsPath` and the Win32 naming rules: no
``< > : " / \\ | ? *`` or control characters, no device names (CON, NUL,
COM1, ... with or without an extension), no trailing dot or space, at most
255 UTF-16 units per component, and no two names in one directory that differ
only in case (NTFS does not tell them apart)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
import sample_mail  # scripts/ is put on sys.path by conftest
from conftest import ImapUser
from helpers import backup, run_cli, server_args
from imapclient import IMAPClient

from mailbackup.archive import account_dir, open_archive
from mailbackup.store import maildir

FORBIDDEN = set('<>:"/\\|?*') | {chr(code) for code in range(32)}
DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"{port}{digit}" for port in ("COM", "LPT") for digit in "123456789¹²³")}
HOSTILE_FOLDERS = ["Project: Q1", "CON", "a*b?", "ข่าว|ประกาศ", "<x>", "trail.", "Nul.txt", "sent", "Sent",
                   'say "hi"', "งานคดี/2566/มกราคม"]
MAIL_FILE = re.compile(r"\d+\.[^:;/\\]+;2,[A-Za-z]*")


def windows_problems(relative: PurePosixPath) -> list[str]:
    problems = []
    if PureWindowsPath(relative.as_posix()).parts != relative.parts:
        problems.append("read differently by Windows")
    for part in relative.parts:
        if set(part) & FORBIDDEN:
            problems.append(f"{part!r}: forbidden character")
        if part.split(".")[0].rstrip(" ").upper() in DEVICES:
            problems.append(f"{part!r}: device name")
        if part.endswith((".", " ")):
            problems.append(f"{part!r}: trailing dot or space")
        if len(part.encode("utf-16-le")) // 2 > 255:
            problems.append(f"{part!r}: longer than 255")
    return problems


def test_the_rules_catch_what_windows_refuses() -> None:
    for bad in ("a:b", "CON", "con.txt", "COM1.log", "x.", "x ", "a|b", "x/ab\\c"):
        assert windows_problems(PurePosixPath("mail", bad)), bad
    assert not windows_problems(PurePosixPath("mail", "กล่องขาเข้า", "สำคัญ", "cur", "1700000000.M1P2Q3.host,S=9;2,FS"))


@pytest.fixture
def hostile_mailbox(imap_user: ImapUser, imap_client_factory: Callable[..., IMAPClient]) -> tuple[ImapUser, int]:
    client = imap_client_factory(imap_user)
    box = dict(sample_mail.sample_mailbox())
    sample_mail.fill_mailbox(client, box)
    count = sum(len(messages) for messages in box.values())
    for name in HOSTILE_FOLDERS:
        try:
            client.create_folder(name)
        except Exception:  # Dovecot keeps a few names to itself; the rest is what a server can send
            continue
        client.append(name, f"Subject: {name}\r\n\r\nbody\r\n".encode())
        count += 1
    return imap_user, count


def test_an_archive_made_as_on_windows_has_only_windows_names(
        hostile_mailbox: tuple[ImapUser, int], imap_client_factory: Callable[..., IMAPClient], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    user, count = hostile_mailbox
    dest = tmp_path / "mail-backup"
    with monkeypatch.context() as windows:  # what open_archive records on a new archive under Windows
        windows.setattr(maildir, "default_info_separator", lambda: ";")
        open_archive(dest, user.name, format="maildir").close()

    done = backup(user, dest)
    assert done.returncode == 0, done.stderr
    client = imap_client_factory(user)
    client.select_folder("INBOX")
    client.add_flags(client.search("ALL"), [b"\\Flagged"])  # a flag change renames the files: still ";"
    done = backup(user, dest)
    assert done.returncode == 0 and "flag changes" in done.stdout, done.stderr
    verified = run_cli(["verify", user.name, "--dest", str(dest), *server_args(user)], password=user.password)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    offline = run_cli(["verify", user.name, "--dest", str(dest), "--offline"])
    assert offline.returncode == 0, offline.stdout + offline.stderr

    root = account_dir(dest, user.name)
    assert not windows_problems(PurePosixPath(root.name))
    mail_files = []
    for path in sorted(root.rglob("*")):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        assert not windows_problems(relative), (relative, windows_problems(relative))
        if path.parent.name == "cur":
            assert MAIL_FILE.fullmatch(path.name), path.name
            mail_files.append(path)
    assert len(mail_files) == count
    inbox = [path.name for path in (root / "mail" / "INBOX" / "cur").iterdir()]
    assert inbox and all(name.rpartition(";2,")[2].count("F") == 1 for name in inbox)
    for directory in [root, *(path for path in root.rglob("*") if path.is_dir())]:
        names = [child.name.casefold() for child in directory.iterdir()]
        assert len(names) == len(set(names)), f"names differing only in case in {directory}"


def test_windows_gets_the_semicolon_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as windows:  # only for this call: pathlib reads os.name too
        windows.setattr(os, "name", "nt")
        separator = maildir.default_info_separator()
    assert separator == ";" and maildir.info_suffix(("\\Seen", "\\Flagged"), separator) == ";2,FS"
