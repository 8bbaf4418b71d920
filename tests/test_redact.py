"""The password masks (imap/redact.py) hide every form of a password and
nothing else: a Thai password's stray ASCII digit must not make every server
text holding that digit look like a leak."""

from __future__ import annotations

from mailbackup.imap.redact import MASK, Redaction


def test_a_thai_passwords_ascii_leftover_does_not_hide_the_servers_words() -> None:
    redaction = Redaction.of("u8@coj.go.th", "รหัสผ่านไทย8")
    text = "[SERVERBUG] Internal error occurred. [2026-12-04 08:35:12] (0.001 + 0.000 secs)."
    assert redaction.server_text(text) == text
    assert redaction.server_text("you sent รหัสผ่านไทย8") == f"you sent {MASK}"


def test_short_and_ascii_passwords_keep_their_rules() -> None:
    assert "x" not in Redaction.of("t@x", "x").server_text("login refused for t@x: x")  # withheld whole
    long_thai = Redaction.of("a@b", "รหัสabcdefgh123")  # what imapclient's ASCII decoding leaves is masked
    assert long_thai.server_text("echo abcdefgh123") == f"echo {MASK}"
