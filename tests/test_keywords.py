"""Keywords ($Label1, Work) reach the archive's Maildir file names the way
Dovecot keeps them (a dovecot-keywords file, lower-case letters after the
flags), so Dovecot and mail readers that follow it see them.  Checked
against the Maildir the test Dovecot itself writes for the same messages."""

from __future__ import annotations

from pathlib import Path

import sample_mail
from helpers import backup

from mailbackup.archive import account_dir
from mailbackup.store.keywords import KEYWORDS_FILE, KeywordTable
from mailbackup.store.maildir import INFO_SEPARATORS

FLAGS = [(), ("\\Seen", "$Label1"), ("\\Seen", "\\Flagged", "Work", "$Label1"), ("work",), ("\\Answered", "Urgent")]


def keywords_by_body(folder: Path, keywords_file: Path) -> dict[bytes, set[str]]:
    """What a Maildir says of each message's keywords: its letters, looked up in the folder's file."""
    table = {}
    for line in keywords_file.read_text(encoding="utf-8").splitlines():
        number, _, name = line.partition(" ")
        table[chr(ord("a") + int(number))] = name.casefold()
    found = {}
    for path in [*(folder / "cur").iterdir(), *(folder / "new").iterdir()]:  # new/: no flags yet, no info
        info = next((path.name.split(sep + "2,", 1)[1] for sep in INFO_SEPARATORS if sep + "2," in path.name), "")
        # Dovecot stores lines with LF alone; the archive keeps the bytes the server sent (CRLF)
        found[path.read_bytes().replace(b"\r\n", b"\n")] = {table[letter] for letter in info if letter.islower()}
    return found


def test_keywords_are_in_the_file_names_as_dovecot_writes_them(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    letters = [sample_mail.thai_letter(i, sample_mail._DEFAULT_DATE) for i in range(len(FLAGS))]
    for letter, flags in zip(letters, FLAGS, strict=True):
        client.append("INBOX", letter, flags=flags)
    assert backup(imap_user, tmp_path).returncode == 0

    inbox = account_dir(tmp_path, imap_user.name) / "mail" / "INBOX"
    ours = keywords_by_body(inbox, inbox / KEYWORDS_FILE)
    dovecots = keywords_by_body(imap_user.maildir, imap_user.maildir / KEYWORDS_FILE)
    assert ours == dovecots
    assert sorted(map(sorted, ours.values())) == [[], ["$label1"], ["$label1", "work"], ["urgent"], ["work"]]


def test_a_keyword_set_later_renames_the_file(imap_user, imap_client_factory, tmp_path):
    client = imap_client_factory(imap_user)
    client.append("INBOX", sample_mail.thai_letter(1, sample_mail._DEFAULT_DATE), flags=("\\Seen",))
    assert backup(imap_user, tmp_path).returncode == 0
    client.select_folder("INBOX")
    client.add_flags(client.search("ALL"), ["Work"])
    assert backup(imap_user, tmp_path).returncode == 0

    inbox = account_dir(tmp_path, imap_user.name) / "mail" / "INBOX"
    assert list(keywords_by_body(inbox, inbox / KEYWORDS_FILE).values()) == [{"work"}]


def test_the_table_keeps_letters_stable_and_stops_at_26(tmp_path):
    (tmp_path / KEYWORDS_FILE).write_text("0 $Label1\n2 Later\n", encoding="utf-8")  # a gap Dovecot may leave
    table = KeywordTable(tmp_path)
    assert table.letters(("$label1", "Later")) == "ac"  # case does not matter; letters keep their meaning
    assert table.letters(("New",)) == "d"
    many = tuple(f"k{number}" for number in range(40))
    assert len(table.letters(many)) == 26 - 4  # the rest have no letter (the state keeps them all)
    again = KeywordTable(tmp_path)
    assert again.letters(("New",), add=False) == "d"
    assert again.letters(("Unknown",), add=False) == ""
    assert not list(tmp_path.glob(".*tmp"))
