"""The one-page guides (docs/guide-en.md, docs/guide-th.md) cannot go stale:
every command in their ```sh and ```bat blocks is run, in order, in one shell,
against a real Dovecot, and must succeed.

The convention, also written at the top of each guide:

* every ``NAME@coj.go.th`` in a command or in the config stands for a fresh
  test mailbox holding the demo mail (scripts/sample_mail.demo_mailbox());
* the test adds ``--server``/``--cafile`` of the test server to every command
  that takes them, and types the account's password into ``auth set``;
* the ```yaml block that starts with ``# FILE`` is saved as FILE, with its
  ``server:`` pointed at the test server (plus its ``cafile:``) and its
  ``dest:`` in the test's directory;
* ``pip install ./mailbackup`` installs a copy of this source tree (offline,
  so its build compiles the catalogue as a real installation does), and the
  commands after it run that installed copy;
* ```bat lines are the Windows spelling: their ``mailbackup`` commands run
  too, and ``py -m pip`` must match a ``pip`` line of a ```sh block.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sample_mail  # scripts/ is put on sys.path by conftest
from conftest import ImapUser, new_filled_user
from dovecot_server import DovecotServer
from helpers import keyring_env, subcommands

from mailbackup.cli import cli

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
ADDRESS = re.compile(r"[\w.+-]+@coj\.go\.th")
SOURCE_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md")
GUIDES = {"en": ("guide-en.md", "C.UTF-8"), "th": ("guide-th.md", "th_TH.UTF-8")}


def fenced(path: Path) -> list[tuple[str, str]]:
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(path.read_text(encoding="utf-8"))]


def commands(blocks: list[tuple[str, str]]) -> list[str]:
    """The shell lines to run: every ```sh line, and the mailbackup lines of ```bat blocks."""
    lines: list[str] = []
    sh_lines = {line.strip() for kind, text in blocks if kind == "sh" for line in text.splitlines()}
    for kind, text in blocks:
        if kind == "sh":
            lines += [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        elif kind == "bat":
            for line in (line.strip() for line in text.splitlines() if line.strip()):
                if line.startswith("py -m pip "):
                    assert line.removeprefix("py -m ") in sh_lines, f"{line!r} has no ```sh twin"
                else:
                    assert line.startswith("mailbackup "), f"a ```bat line the test cannot run: {line!r}"
                    lines.append(line)
    return lines


def server_command_paths() -> list[str]:
    """`backup`, `auth set`, ...: the commands that take --server (so the test's is added)."""
    found: list[str] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        for name, child in subcommands(command).items():
            walk(child, (*path, name))
        if any("--server" in getattr(param, "opts", ()) for param in getattr(command, "params", ())):
            found.append(" ".join(path))

    walk(cli, ())
    return sorted(found)


def prelude(users: dict[str, ImapUser], server: DovecotServer) -> str:
    passwords = " ".join(f"[{user.name}]={shlex.quote(user.password)}" for user in users.values())
    patterns = "|".join(f'" {path} "*' for path in server_command_paths())
    return f"""set -euo pipefail
set -x
export PATH="$SITE/bin:$PATH" PYTHONPATH="$SITE:$PYTHONPATH"  # then the test's keyring (helpers.keyring_env)
pip() {{ "$PYTHON" -m pip "$@" --quiet --no-deps --no-build-isolation --no-index --target "$SITE"; }}
declare -A PASSWORD=({passwords})
mailbackup() {{
  local extra=()
  case " $* " in {patterns}) extra=(--server {shlex.quote(server.server_arg)} --cafile "$CAFILE");; esac
  if [ "$1 ${{2:-}}" = "auth set" ]; then
    printf '%s\\n' "${{PASSWORD[$3]}}" | command mailbackup "$@" "${{extra[@]}}"
  else
    command mailbackup "$@" "${{extra[@]}}" </dev/null
  fi
}}
"""


def config_file(text: str, server: DovecotServer, dest: Path) -> tuple[str, str]:
    """The name a ```yaml block gives itself, and its text pointed at the test server."""
    first, _, _rest = text.partition("\n")
    name = first.removeprefix("#").strip()
    lines = []
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        if line.strip().startswith("server:"):
            lines += [f"{indent}server: {server.server_arg}", f"{indent}cafile: {server.cafile}"]
        elif line.strip().startswith("dest:"):
            lines.append(f"{indent}dest: {dest}")
        else:
            lines.append(line)
    return name, "\n".join(lines) + "\n"


def source_copy(target: Path) -> Path:
    target.mkdir()
    for name in SOURCE_FILES:
        shutil.copy(ROOT / name, target / name)
    (target / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "thunderbird.md", target / "docs" / "thunderbird.md")  # shipped in the package
    shutil.copytree(ROOT / "mailbackup", target / "mailbackup",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.mo"))
    return target


def demo_user(server: DovecotServer) -> ImapUser:
    return new_filled_user(server, sample_mail.demo_mailbox())


@pytest.mark.parametrize("language", sorted(GUIDES))
def test_every_command_of_the_guide_runs(language: str, dovecot_server: DovecotServer, tmp_path: Path) -> None:
    guide, locale = GUIDES[language]
    blocks = fenced(ROOT / "docs" / guide)
    lines = commands(blocks)
    assert any(line.startswith("pip install ") for line in lines) and "mailbackup backup you@coj.go.th" in lines

    names = sorted({address for kind, text in blocks if kind in ("sh", "bat", "yaml")
                    for address in ADDRESS.findall(text)})
    users = {name: demo_user(dovecot_server) for name in names}
    dest = tmp_path / "unit-backup"
    for kind, text in blocks:
        if kind == "yaml" and text.startswith("#"):
            name, content = config_file(text, dovecot_server, dest)
            (tmp_path / name).write_text(content, encoding="utf-8")
    body = "\n".join(lines) + "\n"
    config = tmp_path / "unit.yaml"
    for name in sorted(users, key=len, reverse=True):
        body = body.replace(name, users[name].name)
        config.write_text(config.read_text(encoding="utf-8").replace(name, users[name].name), encoding="utf-8")
    script = prelude(users, dovecot_server) + body
    source_copy(tmp_path / "mailbackup")
    site = tmp_path / "site"

    env = {key: value for key, value in os.environ.items()
           if key not in ("MAILBACKUP_PASSWORD", "MAILBACKUP_LANG", "LC_ALL", "LC_MESSAGES", "PYTHONPATH")}
    env.update({"LANG": locale, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
                **keyring_env(tmp_path), "PYTHON": sys.executable,
                "SITE": str(site), "CAFILE": str(dovecot_server.cafile),
                "MAILBACKUP_PASSWORD": users["you@coj.go.th"].password})
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    ran = [line for line in done.stderr.splitlines() if line.startswith("+ mailbackup ")]
    assert len(ran) == sum(1 for line in lines if line.startswith("mailbackup ")), done.stderr

    # The installed copy ran, with the catalogue its build compiled, in the guide's language.
    assert (site / "mailbackup" / "locale" / "th" / "LC_MESSAGES" / "mailbackup.mo").is_file()
    assert ("บันทึก" if language == "th" else "saved") in done.stdout
    assert (tmp_path / "thunderbird-export" / "Inbox").is_file()
    summary = json.loads((dest / "reports" / "summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["accounts"] == summary["totals"]["complete"] == 2, summary["totals"]
