"""The RTC benchmark: its motion figures on known signals, and a short real run through the ALOHA sim graph in which
the policy node's prefix and measured delay reach the model over the websocket server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openpi_msgs.msg import ExecutorStatus
from openpi_ros import rtc_benchmark

MS = 1_000_000
PERIOD_NS = 20 * MS


def test_motion_metrics_separate_switch_steps_from_within_chunk_steps() -> None:
    stamps = np.arange(100, dtype=np.int64) * PERIOD_NS
    commands = np.zeros((100, 2))
    commands[:, 0] = 0.01 * np.arange(100)  # a steady ramp: 0.01 per step
    commands[50:, 1] = 0.3  # a jump of 0.3 in joint 1 between commands 49 and 50
    arrival = 49 * PERIOD_NS + 5 * MS  # the chunk arrives just after command 49: step 49 -> 50 is its switch
    status = [
        (0, ExecutorStatus.STATE_EXECUTING),
        (60 * PERIOD_NS, ExecutorStatus.STATE_HOLDING),
        (70 * PERIOD_NS, ExecutorStatus.STATE_EXECUTING),
    ]
    figures = rtc_benchmark.motion_metrics(
        stamps, commands, np.array([arrival]), status=status, period_s=0.02, window_ns=(0, int(stamps[-1]))
    )
    assert figures["switch_step_max"] == pytest.approx(0.3)
    assert figures["within_step_max"] == pytest.approx(0.01)
    assert figures["within_step_p99"] == pytest.approx(0.01)
    assert figures["not_executing_s"] == pytest.approx(0.2)
    assert figures["switches"] == 1
    assert figures["commands"] == 100
    # Jerk: the ramp has none; the jump's third differences are 0.3, -0.6, 0.3, over 97 x 2 values.
    assert figures["jerk_rms"] == pytest.approx(np.sqrt((0.09 + 0.36 + 0.09) / 194) / 0.02**3)
    with pytest.raises(ValueError, match="commands in the measured window"):
        rtc_benchmark.motion_metrics(
            stamps, commands, np.array([arrival]), status=status, period_s=0.02, window_ns=(0, PERIOD_NS)
        )


@pytest.mark.ros
def test_short_rtc_run_sends_prefixes_with_a_measured_delay(tmp_path) -> None:
    """Strategy rtc through the ALOHA sim graph: requests carry the last chunk and a delay of at least one row
    (120 ms injected at 20 ms rows: 6 or more), and the executor switched between chunks."""
    out = tmp_path / "bench"
    code = rtc_benchmark.main(
        ["--strategies", "rtc", "--delays", "120", "--seconds", "2", "--warmup", "1", "--no-cost", "--out", str(out)]
    )
    assert code == 0
    (case,) = json.loads((out / "report.json").read_text())["cases"]
    assert case["prefixed"] >= 3
    assert case["prefixed"] >= case["requests"] - 1  # every request after the first
    assert case["delay_rows_p50"] >= 6
    assert case["switches"] >= 2
    assert np.isfinite(case["switch_step_max"])
    assert np.isfinite(case["within_step_max"])
