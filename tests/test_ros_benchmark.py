"""The policy-node benchmark runs end to end over real DDS (one short scenario, both paths) and reports figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from openpi_ros.benchmark import Scenario, missed_ticks

pytestmark = pytest.mark.ros

MS = 1_000_000


def test_missed_ticks_counts_the_gaps() -> None:
    assert missed_ticks([0, 100 * MS, 200 * MS], 100 * MS) == 0
    assert missed_ticks([0, 120 * MS, 180 * MS], 100 * MS) == 0  # jitter is no miss
    assert missed_ticks([0, 300 * MS, 400 * MS], 100 * MS) == 2
    assert missed_ticks([400 * MS, 0], 100 * MS) == 3  # order does not matter


def test_scenario_names_are_checked() -> None:
    assert Scenario.parse("jpegx3", "loaded", "old") == Scenario("jpeg", 3, True, "old")
    with pytest.raises(ValueError, match="rgb8x<N>"):
        Scenario.parse("rgb8x2", "idle", "new")
    with pytest.raises(ValueError, match="load"):
        Scenario.parse("rgb8x1", "busy", "new")


def test_benchmark_reports_both_paths() -> None:
    cmd = [sys.executable, "-m", "openpi_ros.benchmark", "--seconds", "2", "--scenarios", "jpegx1"]
    out = subprocess.run([*cmd, "--loads", "idle", "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    runs = {row["scenario"]: row for row in json.loads(out.stdout.splitlines()[-1])["runs"]}
    assert set(runs) == {"jpegx1 idle old", "jpegx1 idle new"}
    for row in runs.values():
        assert row["chunks"] >= 10  # 10 Hz for 2 s
        assert 0 < row["overhead_ms_p50"] <= row["overhead_ms_p99"]
        assert row["policy_node_cpu_percent"] > 0
        assert math.isfinite(row["executor_jitter_ms_p99"])
