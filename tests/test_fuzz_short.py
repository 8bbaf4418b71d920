"""A short, bounded fuzzing run of every target of scripts/fuzz.py (atheris):
about 15 seconds in all.  The long run is documented in
``scripts/fuzz.py --help`` and docs/faults.md."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECONDS_PER_TARGET = 3  # the targets run side by side, one process each per CPU


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install -e '.[test]' installs it on Python 3.11)")
def test_a_short_fuzzing_run_finds_nothing(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "fuzz.py"), "--all", "--seconds",
                           str(SECONDS_PER_TARGET), "--artifacts", str(tmp_path)],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    crashes = sorted(path.name for path in tmp_path.iterdir())
    assert done.returncode == 0 and not crashes, f"{done.stdout}\n{done.stderr[-8000:]}\ninputs kept: {crashes}"
    for target in ("fetch", "items", "headers", "mboxrd", "utf7", "config", "archive"):
        assert f"{target}: ok" in done.stdout, done.stdout
