"""What a run loads before it does anything: a nightly sweep starts the tool
once an account, and a no-op run is mostly start-up (docs/benchmark.md)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO

BACKUP_PATH = "import mailbackup.cli.common, mailbackup.cli.backup, mailbackup.sync.engine, mailbackup.cli.progress"


def loaded_after(statement: str) -> dict[str, object]:
    probe = (f"{statement}\nimport sys, json\n"
             "print(json.dumps({name: name in sys.modules for name in "
             "('yaml', 'tqdm', 'importlib.metadata', 'keyring')}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(done.stdout)


def test_a_backup_without_config_file_or_terminal_loads_no_yaml_tqdm_or_metadata():
    assert loaded_after(BACKUP_PATH) == {"yaml": False, "tqdm": False, "importlib.metadata": False,
                                         "keyring": False}


def test_imapclient_still_knows_its_version():
    probe = ("import json, mailbackup.imap, imapclient, importlib.metadata as m;"
             "print(json.dumps([imapclient.__version__, imapclient.version_info, m.version('imapclient')]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    ours, info, theirs = json.loads(done.stdout)
    assert ours == theirs
    assert info == [*map(int, theirs.split(".")), "final"]


def test_reading_a_config_file_still_works_with_yaml_loaded_late(tmp_path):
    config = tmp_path / "mailbackup.yaml"
    config.write_text("defaults:\n  format: mbox\naccounts:\n  - account: somchai.j@coj.go.th\n", encoding="utf-8")
    probe = (f"from pathlib import Path\nfrom mailbackup.config import load_sweep\n"
             f"print(load_sweep(Path({str(config)!r})).accounts[0].format)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "mbox"
