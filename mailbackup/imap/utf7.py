"""Folder names on the wire: modified UTF-7 (RFC 3501 §5.1.3), through
imapclient's codec, which is what imapclient uses when it sends a name back.

imapclient's decoder accepts anything: raw 8-bit bytes come out as Latin-1
mojibake, a base64 run without its closing ``-`` as whatever UTF-7 makes of
it, and the name it returns then names no folder on the server.  `decode`
accepts exactly the names `encode` gives back byte for byte, so a name the
server could not recognise when we send it back is caught where it arrives.
"""

from __future__ import annotations

from imapclient import imap_utf7


def encode(name: str) -> bytes:
    """The wire form of `name`; ValueError for text that is not valid Unicode (lone surrogates)."""
    try:
        encoded: bytes = imap_utf7.encode(name)
    except UnicodeEncodeError:
        raise ValueError(f"folder name is not valid Unicode: {name!r}") from None
    return encoded


def decode(raw: bytes) -> str:
    """The folder name `raw` stands for; ValueError unless `encode` gives `raw` back."""
    try:
        name: str = imap_utf7.decode(raw)
    except UnicodeDecodeError:
        raise ValueError(f"folder name is not valid modified UTF-7: {raw!r}") from None
    try:
        canonical = encode(name)
    except ValueError:
        raise ValueError(f"folder name is not valid modified UTF-7: {raw!r}") from None
    if canonical != raw:
        raise ValueError(f"folder name is not valid modified UTF-7: {raw!r}")
    return name
