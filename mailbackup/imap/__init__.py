"""The only package that talks IMAP (and imports imapclient).

Importing it installs the limits and fixes of wire.py on imaplib, before any
connection exists, and spares imapclient's import of importlib.metadata."""

from __future__ import annotations

from mailbackup.imap import wire

wire.spare_importlib_metadata()
