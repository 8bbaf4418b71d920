"""scripts/bench.py in its quick form: the benchmark runs end to end against a
real Dovecot and reports every figure, target and ratio it promises.

Timings are not asserted (CI machines differ); that every tool stored every
message is.  Peers (mbsync, offlineimap) are measured when installed.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
PEERS = [peer for peer in ("mbsync", "offlineimap") if shutil.which(peer)]
STATUSES = {"PASS", "FAIL", "n/a"}

pytestmark = pytest.mark.skipif(shutil.which("dovecot") is None, reason="needs the dovecot binary")


def run_quick(directory: Path, scenarios: str, timeout: float) -> tuple[dict[str, Any], str]:
    """bench.py --quick, one round, of *scenarios*: its JSON and its Markdown."""
    out = directory / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench.py"), "--quick", "--rounds", "1", "--scenarios", scenarios,
         "--json", str(out)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), proc.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    return run_quick(tmp_path_factory.mktemp("bench"), "1,2,6", timeout=170)


def scenario(data: dict[str, Any], number: int) -> dict[str, Any]:
    (found,) = [entry for entry in data["scenarios"] if entry["id"] == number]
    return found


def row(entry: dict[str, Any], label: str, phase: str | None = None) -> dict[str, Any]:
    (found,) = [r for r in entry["results"] if r["label"] == label and (phase is None or r["phase"] == phase)]
    return found


def is_figure(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def test_run_is_described(report: tuple[dict[str, Any], str]) -> None:
    data, _ = report
    assert data["options"] == data["options"] | {"rounds": 1, "quick": True, "scenarios": [1, 2, 6]}
    assert sorted(data["options"]["peers"]) == sorted(PEERS)
    assert data["machine"]["cpus"] >= 1 and data["machine"]["dovecot"]
    assert data["mailbackup_source"]["tree_sha256"]
    assert [entry["id"] for entry in data["scenarios"]] == [1, 2, 6]


def labels(number: int) -> set[str]:
    """The rows a scenario reports: mbsync also without COMPRESS in the full backups."""
    extra = {"mbsync (no COMPRESS)"} if "mbsync" in PEERS and number in (1, 6) else set()
    return {"mailbackup (maildir)", "mailbackup (mbox)", *PEERS} | extra


@pytest.mark.parametrize("number", [1, 2, 6])
def test_every_tool_has_its_figures_and_stored_everything(report: tuple[dict[str, Any], str], number: int) -> None:
    entry = scenario(report[0], number)
    assert {r["label"] for r in entry["results"]} == labels(number)
    assert entry["corpus"]["messages"] > 0 and entry["corpus"]["bytes"] > 0
    for result in entry["results"]:
        for name in ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mb", "server_cpu_s"):
            assert is_figure(result[name]), (result["label"], name, result[name])
        assert result["wall_s"] > 0 and result["peak_rss_mb"] > 0
        assert len(result["runs"]) == 1
        assert result["exit_codes"] == [0], result["label"]
        assert result["stored"] == result["expected"] == entry["corpus"]["messages"], result["label"]
        if result["label"] == "mailbackup (maildir)" and number != 2:  # byte for byte, as the README promises
            assert result["identical_bytes"] == result["stored"]


@pytest.mark.parametrize("number", [1, 2, 6])
def test_ratios_to_each_installed_peer(report: tuple[dict[str, Any], str], number: int) -> None:
    ratios = {ratio["against"]: ratio for ratio in scenario(report[0], number)["ratios"]}
    assert set(ratios) == labels(number) - {"mailbackup (maildir)"}
    for ratio in ratios.values():
        assert is_figure(ratio["wall_s"]) and is_figure(ratio["cpu_s"]) and is_figure(ratio["peak_rss_mb"])


def test_targets_are_judged(report: tuple[dict[str, Any], str]) -> None:
    data, markdown = report
    targets = {number: scenario(data, number)["targets"] for number in (1, 2, 6)}
    assert [len(targets[number]) for number in (1, 2, 6)] == [5, 1, 2]
    for checks in targets.values():
        for check in checks:
            assert check["status"] in STATUSES and check["text"] and check["measured"]
    # A peer's target is judged exactly when the peer was measured.
    for index, peer in enumerate(["mbsync", "mbsync", "offlineimap", "mbsync", "mbsync"]):
        assert (targets[1][index]["status"] == "n/a") == (peer not in PEERS), targets[1][index]
    assert all(check["status"] != "n/a" for check in targets[6])  # peak RSS needs no peer
    assert "| # | target | measured | result |" in markdown
    assert markdown.count("**PASS**") + markdown.count("**FAIL**") + markdown.count("**n/a**") == 8


# Issue 18's scenarios: latency hidden (7), a big mailbox (8), many folders (9), a sweep of many accounts
# (10); mbsync is their only peer.
NEW_TARGETS = {7: 8, 8: 3, 9: 3, 10: 5}
NEW_PHASES = {7: ["loopback", "proxy, no delay", "25 ms each way", "100 ms each way"], 8: ["no-op", "100 new"],
              9: ["full backup", "no-op"], 10: ["full sweep", "no-op sweep"]}


def new_labels(number: int) -> set[str]:
    if number == 10:
        mbsync = {"mbsync (xargs -P 8)", "mbsync (no COMPRESS) (xargs -P 8)"} if "mbsync" in PEERS else set()
        return {"mailbackup sweep (--jobs 8)"} | mbsync
    return {"mailbackup (maildir)"} | ({"mbsync", "mbsync (no COMPRESS)"} if "mbsync" in PEERS else set())


@pytest.fixture(scope="module")
def issue18_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_quick(tmp_path_factory.mktemp("bench18"), "7,8,9,10", timeout=400)[0]


@pytest.mark.parametrize("number", [7, 8, 9, 10])
def test_issue18_scenarios_measure_every_phase_side_by_side(issue18_report: dict[str, Any], number: int) -> None:
    entry = scenario(issue18_report, number)
    for phase in NEW_PHASES[number]:
        rows = [r for r in entry["results"] if r["phase"] == phase]
        assert {r["label"] for r in rows} == new_labels(number), phase
        for result in rows:
            assert is_figure(result["wall_s"]) and result["wall_s"] > 0 and is_figure(result["peak_rss_mb"])
            assert result["exit_codes"] == [0], (phase, result["label"])
            assert result["stored"] == result["expected"] > 0, (phase, result["label"])
    if number == 9:
        assert entry["corpus"]["messages"] == 5 * 500
        assert max(name.count("/") for name in entry["corpus"]["folders"]) == 3  # four deep
    if number == 10:
        assert entry["corpus"]["accounts"] == 20 and entry["corpus"]["messages"] == 20 * 50
        assert is_figure(row(entry, "mailbackup sweep (--jobs 8)", "full sweep")["throughput"]["last_over_first"])
    targets = entry["targets"]
    assert len(targets) == NEW_TARGETS[number]
    for check in targets:
        assert check["status"] in STATUSES and check["measured"]
        assert (check["status"] == "n/a") == ("mbsync" not in PEERS and "mbsync" in check["text"]), check
