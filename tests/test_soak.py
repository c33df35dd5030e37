"""The fault-injection soak, short version: real nodes over DDS, about 3,000 messages with every fault kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openpi_ros.soak import BAD_KINDS, FAULTS, SIM_FAULTS, Report

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_short_soak_finds_no_unsafe_command(tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    cmd = [sys.executable, "-m", "openpi_ros.soak", "--messages", "1000", "--json", str(report_file)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert report_file.exists(), result.stdout + result.stderr
    report = json.loads(report_file.read_text())
    for counter in Report.MUST_BE_ZERO:
        assert report[counter] == 0, (counter, report["examples"], result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-3000:]
    assert sum(report["messages"].values()) >= 1000
    assert set(report["faults"]) == set(FAULTS) | set(SIM_FAULTS)  # every fault kind was injected
    assert set(report["bad_chunks"]) == set(BAD_KINDS)  # and every kind of bad chunk
    assert report["commands"] > 500
    assert report["policy_chunks"] > 20
    assert report["resume_s"]["n"] >= len(FAULTS)
