"""The README's first command, as a new user runs it: scripts/demo.sh sets up,
starts the demo server, backs up, verifies, and cleans up after itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from helpers import REPO


def test_demo_backs_up_says_each_thing_once_and_leaves_no_debris(tmp_path: Path) -> None:
    # A short temporary directory of the test's own: Dovecot's socket paths must stay short, and other
    # runs on the machine may have demo directories of their own in /tmp.
    scratch = Path(tempfile.mkdtemp(prefix="mbt", dir="/tmp"))
    scratch.chmod(0o755)  # Dovecot's unprivileged mail processes reach the demo homes through it
    env = {**os.environ, "DEST": str(tmp_path / "backup"), "TMPDIR": str(scratch)}
    try:
        done = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                              timeout=600, cwd=REPO)
        leftovers = list(scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert out.count("verify.html") == 1, out  # the report's path, said once
    assert "setup: installing mailbackup" in out  # setup says what it is doing while it takes its time
    assert (tmp_path / "backup" / "demo@coj.go.th" / "reports" / "verify.html").is_file()
    assert leftovers == []  # the demo server's files are gone
