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


def _collector_after(argv: list[str]) -> tuple[int, list[object]]:
    """Run the entry point on `argv` in a fresh interpreter: its exit code, and
    at exit whether collection was on and something was frozen."""
    probe = ("import atexit, gc, json, sys\n"
             "atexit.register(lambda: print(json.dumps([gc.isenabled(), gc.get_freeze_count() > 0])))\n"
             f"sys.argv = {['mailbackup', *argv]!r}\n"
             "from mailbackup.__main__ import main\n"
             "main()\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    return done.returncode, json.loads(done.stdout.splitlines()[-1])


def test_collection_is_back_on_once_the_command_is_loaded():
    """Start-up runs without the garbage collector (__main__.py); a run that
    lasts hours must not: once the command's module is loaded it is on again,
    with what start-up made frozen out of its passes."""
    assert _collector_after(["folders", "--help"]) == (0, [True, True])


def test_a_run_that_loads_no_command_still_ends_normally():
    code, (_enabled, frozen) = _collector_after(["--version"])
    assert code == 0 and not frozen  # nothing ran that could leave garbage behind
