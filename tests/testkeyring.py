"""A keyring backend for the tests only: the OS keyring of a test's own,
kept in the JSON file named by ``MAILBACKUP_TEST_KEYRING`` so that the
process that stores a password and the one that reads it share it.

Selected with ``PYTHON_KEYRING_BACKEND=testkeyring.SandboxKeyring`` and this
directory on ``PYTHONPATH`` (`helpers.keyring_env`).  mailbackup cannot tell it
from a desktop keyring, which is the point: the tests exercise the real
keyring code paths without keyrings.alt, whose file backends mailbackup
refuses to store in (and which no user install pulls in).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class SandboxKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["MAILBACKUP_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        path = self._path()
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def _save(self, entries: dict[str, str]) -> None:
        path = self._path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entries), encoding="utf-8")
        path.chmod(0o600)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._load()
        entries[f"{service}\0{username}"] = password
        self._save(entries)

    def delete_password(self, service: str, username: str) -> None:
        entries = self._load()
        if entries.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError(username)
        self._save(entries)
