"""The policy node's real-time-chunking planner: the prefix it sends, the delay it measures, when it asks again."""

from __future__ import annotations

import numpy as np
import pytest

from openpi_core.policies.protocol import DELAY_KEY, HORIZON_KEY, PREFIX_KEY
from openpi_ros.rtc_planner import RtcConfig, RtcPlanner

MS = 1_000_000
PERIOD = 20 * MS  # 50 Hz rows


def _chunk(rows: int = 10, dim: int = 3) -> np.ndarray:
    """Row i = i in every column plus the column index: interpolation is easy to read off."""
    return (np.arange(rows)[:, None] + np.arange(dim)[None, :] * 100).astype(np.float32)


def test_no_prefix_before_the_first_chunk_and_due_at_once() -> None:
    planner = RtcPlanner(RtcConfig(PERIOD))
    assert planner.request(5 * MS) == {}
    assert planner.due(0)
    assert planner.delay_rows() == 0


@pytest.mark.parametrize(
    ("offset_ns", "first_row", "count"),
    [(0, 0.0, 10), (40 * MS, 2.0, 8), (50 * MS, 2.5, 7), (180 * MS, 9.0, 1), (181 * MS, None, 0)],
)
def test_prefix_is_the_last_chunk_resampled_at_the_observation_time(
    offset_ns: int, first_row: float | None, count: int
) -> None:
    planner = RtcPlanner(RtcConfig(PERIOD))
    chunk = _chunk()
    planner.record_chunk(chunk, stamp_ns=1_000 * MS, latency_s=0.05)
    request = planner.request(1_000 * MS + offset_ns)
    if first_row is None:
        assert request == {}  # the chunk has run out by then: nothing to continue
        return
    prefix = request[PREFIX_KEY]
    assert prefix.shape == (count, 3)
    assert prefix.dtype == np.float32
    expected = (first_row + np.arange(count))[:, None] + np.arange(3)[None, :] * 100
    np.testing.assert_allclose(prefix, expected, atol=1e-5)
    assert request[DELAY_KEY] == min(3, count)  # 50 ms at 20 ms rows: 3 rows
    assert request[HORIZON_KEY] == count


def test_delay_is_a_latency_percentile_in_rows_and_bounded_by_the_prefix() -> None:
    planner = RtcPlanner(RtcConfig(PERIOD, delay_percentile=90.0, window=10))
    for i, latency in enumerate([0.030] * 9 + [0.300]):
        planner.record_chunk(_chunk(50), stamp_ns=(i + 1) * 100 * MS, latency_s=latency)
    # p90 of nine 30 ms and one 300 ms = 57 ms -> 3 rows of 20 ms (ceil)
    assert planner.delay_rows() == 3
    for i in range(10):  # the window forgets the old latencies
        planner.record_chunk(_chunk(50), stamp_ns=(30 + i) * 100 * MS, latency_s=0.300)
    assert planner.delay_rows() == 15
    request = planner.request(3_900 * MS + 40 * PERIOD)
    assert len(request[PREFIX_KEY]) == 10
    assert request[DELAY_KEY] == 10  # never more rows than the prefix has


def test_execution_horizon_limits_the_matched_rows() -> None:
    planner = RtcPlanner(RtcConfig(PERIOD, execution_horizon=4))
    planner.record_chunk(_chunk(), stamp_ns=0, latency_s=0.01)
    assert planner.request(0)[HORIZON_KEY] == 4
    assert planner.request(8 * PERIOD)[HORIZON_KEY] == 2


def test_due_when_the_remaining_rows_fall_to_delay_plus_margin() -> None:
    planner = RtcPlanner(RtcConfig(PERIOD, margin_rows=2))
    planner.record_chunk(_chunk(10), stamp_ns=0, latency_s=0.060)  # delay 3 rows: due at 5 rows left
    assert planner.remaining_rows(0) == 10
    assert not planner.due(4 * PERIOD)
    assert planner.due(5 * PERIOD)
    assert planner.remaining_rows(50 * PERIOD) == 0.0


def test_an_older_chunk_never_replaces_a_newer_one_and_reset_forgets() -> None:
    planner = RtcPlanner(RtcConfig(PERIOD))
    planner.record_chunk(_chunk(), stamp_ns=100 * MS, latency_s=0.01)
    planner.record_chunk(_chunk() + 1000, stamp_ns=50 * MS, latency_s=0.01)
    np.testing.assert_allclose(planner.request(100 * MS)[PREFIX_KEY], _chunk())
    assert planner.request(60 * MS) == {}  # an observation before the chunk's stamp: no extrapolation
    planner.reset()
    assert planner.request(100 * MS) == {}
    assert planner.due(100 * MS)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("control_period", {"control_period_ns": 0}),
        ("rtc_delay_percentile", {"delay_percentile": 101.0}),
        ("rtc_execution_horizon", {"execution_horizon": -1}),
        ("rtc_margin_rows", {"margin_rows": -2}),
    ],
)
def test_bad_settings_name_the_parameter(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=field):
        RtcConfig(**{"control_period_ns": PERIOD, **kwargs})
