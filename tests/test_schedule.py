"""`mailbackup schedule`: the printed crontab line parses and runs, the
systemd units pass `systemd-analyze verify`, the schtasks command names this
installation; and a running sweep keeps a second one out."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sample_mail
from helpers import run_cli

from mailbackup.config import load_sweep
from mailbackup.errors import ExitCode
from mailbackup.sweep.run import sweep_lock
from mailbackup.sweep.schedule import ScheduleSpec, crontab_line, parse_at, systemd_units

CRON_FIELDS = (range(0, 60), range(0, 24))


def config(tmp_path: Path, name: str = "unit config.yaml", body: str = "accounts:\n  - a@coj.go.th\n",
           directory_name: str = "mail 100%", dest: str | None = None) -> Path:
    """A config in a directory with a space and a % in its name (both need quoting)."""
    directory = tmp_path / directory_name
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"defaults:\n  dest: {dest or json.dumps(str(directory / 'dest'))}\n{body}", encoding="utf-8")
    return path


def cron_entries(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip() and not line.startswith("#")]


def test_crontab_line_has_five_time_fields_and_absolute_paths(tmp_path: Path) -> None:
    path = config(tmp_path)
    done = run_cli(["schedule", str(path), "--cron", "--at", "22:05"])
    assert done.returncode == 0, done.stderr
    (line,) = cron_entries(done.stdout)
    fields = line.split(None, 5)
    assert fields[:5] == ["5", "22", "*", "*", "*"]
    assert int(fields[0]) in CRON_FIELDS[0] and int(fields[1]) in CRON_FIELDS[1]
    # cron turns a bare % into a newline; the shell then sees the escaped one as a plain %.
    assert "%" not in fields[5].replace("\\%", "")
    argv = shlex.split(fields[5].replace("\\%", "%"))
    assert argv[:5] == [sys.executable, "-m", "mailbackup", "sweep", str(path.resolve())]
    assert Path(argv[0]).is_absolute() and "--quiet" in argv
    assert argv[argv.index("--log-file") + 1] == str(path.parent / "dest" / "reports" / "sweep.log")


def test_the_crontab_command_runs_from_any_directory(tmp_path: Path, imap_user, imap_client_factory) -> None:
    """What cron would run, run through /bin/sh from / with a file keyring."""
    letter = sample_mail.thai_letter(1, sample_mail._DEFAULT_DATE)
    sample_mail.fill_mailbox(imap_client_factory(imap_user), {"INBOX": [letter]})
    secret = tmp_path / "secret"
    secret.write_text(imap_user.password + "\n", encoding="utf-8")
    path = config(tmp_path, body=f"  server: {imap_user.server_arg}\n  cafile: {imap_user.cafile}\n"
                                 f"  password_command: cat {secret}\naccounts:\n  - {imap_user.name}\n")
    (line,) = cron_entries(run_cli(["schedule", str(path), "--cron"]).stdout)
    command = line.split(None, 5)[5].replace("\\%", "%")
    done = subprocess.run(["/bin/sh", "-c", command], cwd="/", capture_output=True, text=True, timeout=120,
                          env={key: value for key, value in os.environ.items() if key != "MAILBACKUP_PASSWORD"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # --quiet: cron mails nothing on a good night
    log = (path.parent / "dest" / "reports" / "sweep.log").read_text(encoding="utf-8")
    assert f"{imap_user.name}: backup ok" in log and imap_user.password not in log
    assert (path.parent / "dest" / "reports" / "summary.html").is_file()


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    path = config(tmp_path)
    out = tmp_path / "units"
    done = run_cli(["schedule", str(path), "--systemd", "--at", "01:30", "--shard", "2/3", "--output-dir", str(out)])
    assert done.returncode == 0, done.stderr
    name = "mailbackup-sweep-unit-config-shard-2-of-3"
    assert sorted(item.name for item in out.iterdir()) == [f"{name}.service", f"{name}.timer"]
    service, timer = out / f"{name}.service", out / f"{name}.timer"
    text = service.read_text(encoding="utf-8")
    assert "Type=oneshot" in text and f"ExecStart={sys.executable} -m mailbackup sweep" in text
    assert "%%" in text  # the % of the directory name, escaped for systemd
    assert "OnCalendar=*-*-* 01:30:00" in timer.read_text(encoding="utf-8")
    printed = run_cli(["schedule", str(path), "--systemd", "--shard", "2/3"]).stdout
    assert f"# ---- {service.name} ----" in printed and text in printed
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: only its verification is skipped")
    verified = subprocess.run(["systemd-analyze", "verify", service.name, timer.name], cwd=out, capture_output=True,
                              text=True, timeout=60)
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr


def test_windows_command_names_this_installation(tmp_path: Path) -> None:
    path = config(tmp_path, directory_name="mail (unit 7)")  # a % is refused for Windows: see test_schedule_windows
    done = run_cli(["schedule", str(path), "--windows", "--at", "3:07", "-j", "6"])
    assert done.returncode == 0, done.stderr
    command = next(line for line in done.stdout.splitlines() if line.startswith("schtasks "))
    assert '/Create /F /TN "mailbackup\\mailbackup-sweep-unit-config" /SC DAILY /ST 03:07' in command
    assert f'/TR "{sys.executable} -m mailbackup sweep \\"{path.resolve()}\\"' in command
    assert "--jobs 6" in command and command.endswith('--quiet"')


@pytest.mark.parametrize("args", [["--cron", "--at", "25:00"], ["--cron", "--at", "1.30"], [],
                                  ["--cron", "--shard", "4/3"]])
def test_bad_schedule_requests_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    done = run_cli(["schedule", str(config(tmp_path)), *args])
    assert done.returncode == ExitCode.USAGE, done.stderr


def test_parse_at_and_quoting_units() -> None:
    assert parse_at("01:30") == (1, 30) and parse_at(" 7:05 ") == (7, 5)
    spec = ScheduleSpec(python="/opt/py 3/bin/python", config=Path("/etc/mail$backup/unit.yaml"), hour=1, minute=30)
    assert crontab_line(spec).startswith("30 1 * * * '/opt/py 3/bin/python' -m mailbackup sweep")
    service = systemd_units(spec)["mailbackup-sweep.service"]
    assert 'ExecStart="/opt/py 3/bin/python" -m mailbackup sweep "/etc/mail$$backup/unit.yaml"' in service


def test_a_second_sweep_of_the_same_config_stops_at_once(tmp_path: Path) -> None:
    """Overlapping scheduled runs: the sweep lock keeps the second one out (exit 6)."""
    path = config(tmp_path)
    lock = sweep_lock(load_sweep(path), None).acquire()
    try:
        done = run_cli(["sweep", str(path)])
    finally:
        lock.release()
    assert done.returncode == ExitCode.LOCKED
    assert "another sweep of" in done.stderr and f"pid {os.getpid()}" in done.stderr
