"""Export: a Thunderbird Local Folders tree that Python's mailbox.mbox reads
back message for message and whose shape keeps Thunderbird's rules, and
mbox ↔ Maildir conversions that match the other archive format byte for byte."""

from __future__ import annotations

import mailbox
import os
import unicodedata
from pathlib import Path

import pytest
import sample_mail
from helpers import archive_contents, backup, mbox_bodies, run_cli

from mailbackup.archive import account_dir, open_archive
from mailbackup.errors import ExitCode
from mailbackup.restore.export import thunderbird_hash, thunderbird_name

ODD_FOLDERS = {
    "Project: Q1": "Project_ Q1",  # ':' cannot be in a Windows file name
    "หนังสือเวียน #7": "หนังสือเวียน _7",  # '#' is one Thunderbird will not use
    "ประกาศ" * 12: None,  # 72 UTF-16 units: cut and hashed as Thunderbird does
}


@pytest.fixture(scope="module")
def archives(dovecot_server, tmp_path_factory):
    """One mailbox (the Thai samples plus awkward names) backed up in both formats."""
    from conftest import new_user, tls_context
    from imapclient import IMAPClient

    user = new_user(dovecot_server)
    client = IMAPClient(user.host, port=user.port, ssl=True, ssl_context=tls_context(user.cafile), timeout=30)
    client.plain_login(user.name, user.password)
    box = sample_mail.sample_mailbox()
    for index, name in enumerate(ODD_FOLDERS):
        box[name] = [sample_mail.SampleMessage(sample_mail.thai_letter(index, sample_mail._DEFAULT_DATE))]
    sample_mail.fill_mailbox(client, box)
    client.logout()
    root = tmp_path_factory.mktemp("archives")
    for fmt in ("maildir", "mbox"):
        assert backup(user, root / fmt, "--format", fmt).returncode == 0
    return user, root


def export(user, dest: Path, *args: str):
    return run_cli(["export", user.name, "--dest", str(dest), *args])


def tb_keeps(name: str) -> bool:
    """Thunderbird's NS_MsgHashIfNecessary leaves the name alone, and its
    folder discovery (nsShouldIgnoreFile) does not skip the file."""
    illegal = set('/\\:*?"<>|;#') | {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]}
    units = len(name.encode("utf-16-le")) // 2
    skipped = name.endswith((".msf", ".sbd", ".snm", ".toc", ".mozmsgs")) or name.lower() in {"rules.dat",
                                                                                               "popstate.dat"}
    return (bool(name) and not set(name) & illegal and name[0] != "." and name[-1] not in ".~ "
            and units <= 55 and not skipped)


def check_thunderbird_shape(out: Path) -> None:
    for directory, subdirectories, files in os.walk(out):
        here = Path(directory)
        keys = [unicodedata.normalize("NFC", name.casefold()) for name in files]
        assert len(keys) == len(set(keys)), f"names clash on a case-insensitive disk in {here}"
        for name in files:
            assert tb_keeps(name), name
            assert not name.endswith(".mbox")
        for name in subdirectories:
            assert name.endswith(".sbd"), name
            assert (here / name.removesuffix(".sbd")).is_file(), f"{name} without its folder file"


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_thunderbird_tree_reads_back_message_for_message(archives, tmp_path, fmt):
    user, root = archives
    out = tmp_path / "Local Folders"

    done = export(user, root / fmt, "--thunderbird", str(out))

    assert done.returncode == 0, done.stderr
    check_thunderbird_shape(out)
    assert (out / "กล่องขาเข้า").read_bytes() == b""  # only holds a subfolder: an empty mbox
    assert (out / "กล่องขาเข้า.sbd" / "สำคัญ").is_file()
    assert (out / "งานคดี.sbd" / "2566").read_bytes() == b""
    assert (out / "ว่าง").read_bytes() == b""  # the empty folder is there
    long_name = "ประกาศ" * 12
    expected_files = {
        "Inbox": "INBOX", "Sent": "Sent", "Drafts": "Drafts", "Project Notes": "Project Notes",
        "กล่องขาเข้า.sbd/สำคัญ": "กล่องขาเข้า/สำคัญ", "งานคดี": "งานคดี",
        "งานคดี.sbd/2566.sbd/มกราคม": "งานคดี/2566/มกราคม", "Project_ Q1": "Project: Q1",
        "หนังสือเวียน _7": "หนังสือเวียน #7", long_name[:47] + thunderbird_hash(long_name): long_name,
    }
    stored = archive_contents(root / fmt, user.name)
    for relative, folder in expected_files.items():
        read_back = mbox_bodies(out / relative)
        # an mbox needs a newline after a message that lacked one; mailbox.mbox keeps it
        archived = [m.body if m.body.endswith(b"\n") else m.body + b"\n" for m in stored[folder].values()]
        # Thunderbird's status lines come first; the rest is the archived message
        assert [without_status(body, b"X-Mozilla-") for body in read_back] == archived, folder
        messages = mailbox.mbox(str(out / relative), create=False)
        assert len(messages) == len(archived)
        messages.close()


def without_status(body: bytes, prefix: bytes) -> bytes:
    """`body` without the leading header lines whose names start with `prefix`."""
    lines = body.splitlines(keepends=True)
    while lines and lines[0].startswith(prefix):
        lines.pop(0)
    return b"".join(lines)


def test_mbox_export_of_a_maildir_archive_is_the_mbox_archive(archives, tmp_path):
    user, root = archives
    out = tmp_path / "as-mbox"

    done = export(user, root / "maildir", "--mbox", str(out), "--exact")

    assert done.returncode == 0, done.stderr
    archived = account_dir(root / "mbox", user.name) / "mail"
    files = sorted(p.relative_to(archived) for p in archived.rglob("*"))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files
    for relative in files:
        if (archived / relative).is_file():
            assert (out / relative).read_bytes() == (archived / relative).read_bytes(), relative


def test_maildir_export_of_an_mbox_archive_is_the_maildir_archive(archives, tmp_path):
    user, root = archives
    out = tmp_path / "as-maildir"

    done = export(user, root / "mbox", "--maildir", str(out))

    assert done.returncode == 0, done.stderr
    archived = account_dir(root / "maildir", user.name) / "mail"
    with open_archive(root / "maildir", user.name, lock=False, create=False) as archive:
        local_paths = {folder.name: folder.local_path for folder in archive.state.folders()}
    assert "Project%3A Q1" in local_paths.values()  # the archive's own escaped layout
    for folder, relative in local_paths.items():

        def files(base: Path, relative: str = relative) -> list[tuple[bytes, str, int]]:
            cur = base / relative / "cur"  # content, flags in the name, mtime = INTERNALDATE
            return sorted((p.read_bytes(), p.name.split(":2,")[1], int(p.stat().st_mtime)) for p in cur.iterdir())

        assert files(out) == files(archived), folder
        assert not list((out / relative / "new").iterdir()) and not list((out / relative / "tmp").iterdir())


def test_export_refuses_a_used_directory_and_needs_one_kind(archives, tmp_path):
    user, root = archives
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "something").write_text("x")
    assert export(user, root / "maildir", "--thunderbird", str(tmp_path / "used")).returncode == ExitCode.USAGE
    both = export(user, root / "maildir", "--mbox", str(tmp_path / "a"), "--maildir", str(tmp_path / "b"))
    assert both.returncode == ExitCode.USAGE and "exactly one" in both.stderr
    assert export(user, tmp_path / "nowhere", "--mbox", str(tmp_path / "c")).returncode == ExitCode.USAGE


@pytest.mark.parametrize(("folder", "file_name"), [
    ("กล่องขาเข้า", "กล่องขาเข้า"), ("Project: Q1", "Project_ Q1"), (".hidden", "_hidden"), ("done.", "done_"),
    ("backup~", "backup_"), ("Inbox.msf", "Inbox.msf_"), ("rules.dat", "rules.dat_"), ("CON", "_CON"),
    ("a/b\\c", "a_b_c"), ("", "_"),
])
def test_thunderbird_names(folder, file_name):
    assert thunderbird_name(folder) == file_name
    assert tb_keeps(file_name)


def test_thunderbird_hash_of_long_names():
    assert thunderbird_hash("a") == "fd600c1c"  # worked by hand from nsMsgUtils.cpp's StringHash
    name = "สำนักงานศาลยุติธรรม ฝ่ายบริหารทั่วไป กลุ่มงานสารบรรณ ปีงบประมาณ 2567"
    shortened = thunderbird_name(name)
    assert len(shortened) == 55 and shortened == name[:47] + thunderbird_hash(name)
    emoji = "📁" * 30  # surrogate pairs are never cut in half
    assert thunderbird_name(emoji) == "📁" * 23 + thunderbird_hash(emoji)


def archive_fingerprint(dest: Path, account: str) -> dict[str, bytes]:
    base = account_dir(dest, account) / "mail"
    return {str(path.relative_to(base)): path.read_bytes() for path in base.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def flagged_archive(dovecot_server, tmp_path_factory):
    """INBOX with a message in each state a reader shows: new, read, replied+flagged, deleted, tagged."""
    from conftest import new_user, tls_context
    from imapclient import IMAPClient

    user = new_user(dovecot_server)
    letters = [sample_mail.thai_letter(i, sample_mail._DEFAULT_DATE) for i in range(5)]
    flags = [(), ("\\Seen",), ("\\Seen", "\\Answered", "\\Flagged"), ("\\Seen", "\\Deleted"), ("\\Seen", "Work")]
    with IMAPClient(user.host, port=user.port, ssl=True, ssl_context=tls_context(user.cafile), timeout=30) as client:
        client.plain_login(user.name, user.password)
        for letter, flag in zip(letters, flags, strict=True):
            client.append("INBOX", letter, flags=flag)
        client.logout()
    root = tmp_path_factory.mktemp("flagged")
    assert backup(user, root, "--format", "mbox").returncode == 0
    return user, root, [letter if letter.endswith(b"\n") else letter + b"\n" for letter in letters]


def test_thunderbird_shows_read_replied_flagged_as_on_the_server(flagged_archive, tmp_path):
    user, root, letters = flagged_archive
    before = archive_fingerprint(root, user.name)

    assert export(user, root, "--thunderbird", str(tmp_path / "tb")).returncode == 0

    messages = list(mailbox.mbox(str(tmp_path / "tb" / "Inbox"), create=False))
    # nsMsgMessageFlags: Read 0x1, Replied 0x2, Marked 0x4; IMAP-deleted 0x200000 (still shown)
    assert [m["X-Mozilla-Status"] for m in messages] == ["0000", "0001", "0007", "0001", "0001"]
    assert [m["X-Mozilla-Status2"] for m in messages] == ["00000000"] * 3 + ["00200000", "00000000"]
    assert [m["X-Mozilla-Keys"] for m in messages] == [None] * 4 + ["Work"]
    assert [without_status(m.as_bytes(), b"X-Mozilla-") for m in messages] == \
        [mailbox.mboxMessage(letter).as_bytes() for letter in letters]
    assert archive_fingerprint(root, user.name) == before  # the archive stays byte-exact


def test_mbox_export_tells_mutt_and_dovecot_what_was_read(flagged_archive, tmp_path):
    user, root, _ = flagged_archive
    before = archive_fingerprint(root, user.name)

    assert export(user, root, "--mbox", str(tmp_path / "out")).returncode == 0

    messages = list(mailbox.mbox(str(tmp_path / "out" / "INBOX.mbox"), create=False))
    # Python's mailbox reads Status/X-Status as mutt does: R read, O old, A answered, F flagged, D deleted
    assert [sorted(m.get_flags()) for m in messages] == [["O"], ["O", "R"], sorted("ROAF"), sorted("ROD"),
                                                         ["O", "R"]]
    assert archive_fingerprint(root, user.name) == before

    exact = tmp_path / "exact"
    assert export(user, root, "--mbox", str(exact), "--exact").returncode == 0
    assert (exact / "INBOX.mbox").read_bytes() == before["INBOX.mbox"]


@pytest.mark.parametrize(("lang", "first_step", "other"), [("en", "### Step 1: export", "ขั้นตอนที่ 1"),
                                                           ("th", "### ขั้นตอนที่ 1", "Step 1: export")])
def test_export_prints_the_thunderbird_guide_in_the_users_language(lang, first_step, other):
    done = run_cli(["export", "--help-thunderbird", "--lang", lang])
    assert done.returncode == 0, done.stderr
    assert first_step in done.stdout and other not in done.stdout
    assert "docs/thunderbird.md" not in done.stdout + run_cli(["export", "--help"]).stdout
