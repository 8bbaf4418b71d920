"""`insecure: true` in a config is never silent in a sweep: a warning per
account on stderr and in the log file, and a record in sweep.json, sweep.csv
and the summary report (JSON and the page people read), against real
Dovecot; an account whose certificate is checked carries none of it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from conftest import new_user
from dovecot_server import DovecotServer
from helpers import run_cli

WARNING = "the server's certificate is NOT checked"


def test_an_insecure_account_is_named_everywhere(dovecot_server: DovecotServer, tmp_path: Path) -> None:
    careless, careful = new_user(dovecot_server), new_user(dovecot_server)
    passwords = tmp_path / "pw"
    passwords.mkdir(mode=0o700)
    for user in (careless, careful):
        (passwords / user.name).write_text(user.password + "\n", encoding="utf-8")
        (passwords / user.name).chmod(0o600)
    config = tmp_path / "unit.yaml"
    config.write_text(f"defaults:\n  server: {careless.server_arg}\n  cafile: {careless.cafile}\n"
                      f"  dest: {tmp_path / 'dest'}\n  password_file: pw/{{account}}\n"
                      f"accounts:\n  - account: {careless.name}\n    insecure: true\n  - {careful.name}\n",
                      encoding="utf-8")
    log_file = tmp_path / "sweep.log"
    done = run_cli(["sweep", str(config), "--log-file", str(log_file)])
    assert done.returncode == 0, done.stderr

    for text in (done.stderr, log_file.read_text(encoding="utf-8")):
        warned = [line for line in text.splitlines() if WARNING in line]
        assert len(warned) == 1 and careless.name in warned[0], text
    reports = tmp_path / "dest" / "reports"
    rows = {row["account"]: row for row in json.loads((reports / "sweep.json").read_text("utf-8"))["accounts"]}
    assert rows[careless.name]["insecure"] is True and rows[careful.name]["insecure"] is False
    problems = {row["account"]: row["problem"] for row in
                csv.DictReader(io.StringIO((reports / "sweep.csv").read_text("utf-8-sig")))}
    assert WARNING in problems[careless.name] and WARNING not in problems[careful.name]
    summary = {row["account"]: row for row in json.loads((reports / "summary.json").read_text("utf-8"))["accounts"]}
    assert any(WARNING in text for text in summary[careless.name]["problems"])
    assert not any(WARNING in text for text in summary[careful.name]["problems"])
    page = (reports / "summary.html").read_text("utf-8")
    assert page.count("certificate is NOT checked") == 1
    assert page.index(careless.name) < page.index("certificate is NOT checked")
