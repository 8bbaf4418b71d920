"""mailbackup: back up, verify and migrate IMAP mailboxes."""

__version__ = "0.1.0"
