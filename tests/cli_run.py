"""Run `python -m mailbackup` in a subprocess, as an officer would, and read
the reports it leaves.  Shared by test_verify.py and test_report.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
from untranslated import check_thai_output

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = {name: json.loads((ROOT / "docs" / f"{name}.schema.json").read_text(encoding="utf-8"))
           for name in ("verify", "summary")}


def mailbackup(*args: str | Path, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MAILBACKUP_PASSWORD"}
    if password is not None:
        env["MAILBACKUP_PASSWORD"] = password
    done = subprocess.run([sys.executable, "-m", "mailbackup", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    check_thai_output([str(arg) for arg in args], env, done.stdout, done.stderr)
    return done


def server_args(user: Any) -> list[str]:
    """--server/--cafile for an ImapUser of the Dovecot fixtures."""
    return ["--server", user.server_arg, "--cafile", str(user.cafile)]


def backup(user: Any, dest: Path, format_: str = "maildir") -> None:
    done = mailbackup("backup", user.name, *server_args(user), "--dest", dest, "--format", format_,
                      password=user.password)
    assert done.returncode == 0, done.stderr


def validated(path: Path, schema: str) -> dict[str, Any]:
    """A JSON report, checked against its documented schema."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(SCHEMAS[schema]).validate(data)
    return data
