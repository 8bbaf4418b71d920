"""The only package that talks IMAP (and imports imapclient)."""
