"""`ChunkExecutor`: time alignment, the three strategies, safety clamps, the watchdog and the e-stop."""

from __future__ import annotations

import re

import numpy as np
import pytest

from openpi_ros.executor import ChunkExecutor, ChunkRejected, ExecutorConfig, ExecutorState, SafetyLimits, Strategy

NS = 1_000_000_000
MS = 1_000_000
JOINTS = ("a", "b")
T0 = 100 * NS


def _executor(**kwargs: object) -> ChunkExecutor:
    kwargs.setdefault("stale_timeout", 2.0)
    return ChunkExecutor(ExecutorConfig(joint_names=JOINTS, control_period=0.02, **kwargs))


def _ramp(start: float, horizon: int = 50, slope: float = 1.0) -> np.ndarray:
    """Chunk whose row i is start + slope * i for joint a, and its negative for joint b."""
    values = start + slope * np.arange(horizon, dtype=np.float32)
    return np.stack([values, -values], axis=1)


def _add(ex: ChunkExecutor, actions: np.ndarray, stamp_ns: int, now_ns: int, names: tuple = JOINTS) -> None:
    ex.add_chunk(actions, stamp_ns=stamp_ns, control_period=0.02, joint_names=names, now_ns=now_ns)


def test_rows_are_aligned_by_stamp_and_interpolated() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    assert ex.step(T0) is None
    assert ex.state is ExecutorState.IDLE
    # Observation at T0, chunk arrives 50 ms later (inference latency): rows 0-2 are in the past and skipped.
    _add(ex, _ramp(0.0), T0, T0 + 50 * MS)
    np.testing.assert_allclose(ex.step(T0 + 50 * MS), [2.5, -2.5])  # halfway between rows 2 and 3
    np.testing.assert_allclose(ex.step(T0 + 60 * MS), [3.0, -3.0])
    assert ex.state is ExecutorState.EXECUTING
    np.testing.assert_allclose(ex.step(T0 + 980 * MS), [49.0, -49.0])  # the last row
    # Past the last row: nothing to execute; the watchdog holds the last command.
    np.testing.assert_allclose(ex.step(T0 + 1000 * MS), [49.0, -49.0])
    assert ex.state is ExecutorState.HOLDING


def test_chunk_columns_are_matched_by_joint_name() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    actions = np.array([[1.0, 2.0, 3.0]] * 10)
    _add(ex, actions, T0, T0, names=("b", "extra", "a"))
    np.testing.assert_allclose(ex.step(T0), [3.0, 1.0])


def test_broker_switches_to_the_newest_chunk() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    _add(ex, _ramp(0.0), T0, T0)
    _add(ex, _ramp(100.0), T0 + 100 * MS, T0 + 100 * MS)
    np.testing.assert_allclose(ex.step(T0 + 100 * MS), [100.0, -100.0])


def test_temporal_ensemble_weights_older_chunks_more() -> None:
    decay = 0.5
    ex = _executor(strategy=Strategy.ENSEMBLE, ensemble_decay=decay)
    _add(ex, np.zeros((50, 2)), T0, T0)
    _add(ex, np.full((50, 2), 10.0), T0 + 20 * MS, T0 + 20 * MS)
    w = np.exp(-decay * np.arange(2))
    expected = (w @ np.array([0.0, 10.0])) / w.sum()
    np.testing.assert_allclose(ex.step(T0 + 40 * MS), [expected, expected])


def test_blend_cross_fades_into_the_new_chunk() -> None:
    ex = _executor(strategy=Strategy.BLEND, blend_time=0.1)
    _add(ex, np.zeros((50, 2)), T0, T0)
    _add(ex, np.full((50, 2), 10.0), T0 + 100 * MS, T0 + 200 * MS)  # arrives 100 ms after its observation
    np.testing.assert_allclose(ex.step(T0 + 200 * MS), [0.0, 0.0])
    np.testing.assert_allclose(ex.step(T0 + 250 * MS), [5.0, 5.0])
    np.testing.assert_allclose(ex.step(T0 + 300 * MS), [10.0, 10.0])
    np.testing.assert_allclose(ex.step(T0 + 400 * MS), [10.0, 10.0])


def test_position_limits_and_velocity_clamp() -> None:
    limits = SafetyLimits(lower=(-1.0, -1.0), upper=(1.0, 1.0), max_velocity=(5.0, 5.0))  # 0.1 per 20 ms tick
    ex = _executor(strategy=Strategy.BROKER, limits=limits)
    _add(ex, np.full((50, 2), 3.0), T0, T0)
    assert ex.step(T0) is None  # no measured position yet: the first step could jump
    assert ex.state is ExecutorState.WAITING_FOR_STATE
    ex.update_measured(["a", "b", "other"], [0.0, 0.95, 7.0])
    np.testing.assert_allclose(ex.step(T0), [0.1, 1.0])  # a: velocity clamp from 0; b: position limit
    np.testing.assert_allclose(ex.step(T0 + 20 * MS), [0.2, 1.0])
    # A late tick (100 ms gap) may move at most two control periods' worth.
    np.testing.assert_allclose(ex.step(T0 + 120 * MS), [0.4, 1.0])
    assert ex.counters.clamped == 3


def test_invalid_chunks_are_never_executed() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    _add(ex, np.ones((50, 2)), T0, T0)
    bad = [
        (np.full((50, 2), np.nan), JOINTS, T0 + MS, "NaN or Inf"),
        (np.ones((50, 3)), JOINTS, T0 + MS, "2 names for action_dim 3"),
        (np.ones((50, 2)), ("a", "c"), T0 + MS, "no column for joints ['b']"),
        (np.ones((0, 2)), JOINTS, T0 + MS, "expected [horizon, action_dim]"),
        (np.ones((50, 2)), JOINTS, T0 - 5 * NS, "s old"),
        (np.ones((50, 2)), JOINTS, T0, "not newer"),
    ]
    for actions, names, stamp, reason in bad:
        with pytest.raises(ChunkRejected, match=re.escape(reason)):
            _add(ex, actions * 7, stamp, T0 + 10 * MS, names=names)
    np.testing.assert_allclose(ex.step(T0 + 10 * MS), [1.0, 1.0])  # still the good chunk
    assert ex.counters.chunks_rejected == len(bad)


def test_watchdog_hold_or_stop_on_stale_chunks() -> None:
    for hold in (True, False):
        ex = _executor(strategy=Strategy.BROKER, stale_timeout=0.1, hold_on_stale=hold)
        _add(ex, _ramp(0.0), T0, T0)
        np.testing.assert_allclose(ex.step(T0 + 100 * MS), [5.0, -5.0])
        command = ex.step(T0 + 120 * MS)  # the chunk still has rows, but it arrived more than 0.1 s ago
        if hold:
            np.testing.assert_allclose(command, [5.0, -5.0])
            assert ex.state is ExecutorState.HOLDING
        else:
            assert command is None
            assert ex.state is ExecutorState.STOPPED
        _add(ex, _ramp(0.0), T0 + 120 * MS, T0 + 130 * MS)  # a fresh chunk: execution resumes
        np.testing.assert_allclose(ex.step(T0 + 140 * MS), [1.0, -1.0])
        assert ex.state is ExecutorState.EXECUTING


def test_estop_latches_and_requires_a_chunk_after_release() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    _add(ex, np.ones((50, 2)), T0, T0)
    assert ex.step(T0) is not None
    ex.set_estop(True, T0 + 10 * MS)
    assert ex.step(T0 + 20 * MS) is None
    assert ex.state is ExecutorState.ESTOP
    with pytest.raises(ChunkRejected, match="e-stop"):
        _add(ex, np.ones((50, 2)), T0 + 20 * MS, T0 + 20 * MS)
    ex.set_estop(False, T0 + 30 * MS)
    assert ex.step(T0 + 40 * MS) is None  # the old chunk is gone; nothing is held either
    with pytest.raises(ChunkRejected, match="predates the e-stop release"):
        _add(ex, np.ones((50, 2)), T0 + 25 * MS, T0 + 40 * MS)
    _add(ex, np.full((50, 2), 2.0), T0 + 35 * MS, T0 + 50 * MS)
    np.testing.assert_allclose(ex.step(T0 + 50 * MS), [2.0, 2.0])


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="joint_names"):
        ExecutorConfig(joint_names=("a", "a"))
    with pytest.raises(ValueError, match="control_period"):
        ExecutorConfig(joint_names=JOINTS, control_period=0.0)
    with pytest.raises(ValueError, match=r"SafetyLimits.upper: expected 2 values"):
        ExecutorConfig(joint_names=JOINTS, limits=SafetyLimits(upper=(1.0,)))
    with pytest.raises(ValueError, match="lower limit must be below"):
        ExecutorConfig(joint_names=JOINTS, limits=SafetyLimits(lower=(1.0, 1.0), upper=(0.0, 2.0)))
    with pytest.raises(ValueError, match="max_velocity: must be > 0"):
        ExecutorConfig(joint_names=JOINTS, limits=SafetyLimits(max_velocity=(1.0, 0.0)))
