"""`ChunkExecutor`: time alignment, strategies, and the safety contract rule by rule (no ROS here).

Each test of a safety rule drives the executor the way the fault happens on a robot; the clock arguments are the
ROS time (stamps, alignment) and the monotonic time (arrival, freshness), equal unless the test moves one of them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from openpi_ros.executor import (
    ChunkExecutor,
    ChunkRejected,
    Command,
    ExecutorConfig,
    ExecutorState,
    SafetyLimits,
    Strategy,
)

NS = 1_000_000_000
MS = 1_000_000
JOINTS = ("a", "b")
T0 = 100 * NS


def _executor(joints: tuple[str, ...] = JOINTS, **kwargs: object) -> ChunkExecutor:
    kwargs.setdefault("stale_timeout", 2.0)
    kwargs.setdefault("max_state_age", 10.0)
    kwargs.setdefault("estop_grace", 0.0)  # the start-up wait has a test of its own
    return ChunkExecutor(ExecutorConfig(joint_names=joints, control_period=0.02, **kwargs))


def _ramp(start: float, horizon: int = 50, slope: float = 1.0) -> np.ndarray:
    """Chunk whose row i is start + slope * i for joint a, and its negative for joint b."""
    values = start + slope * np.arange(horizon, dtype=np.float32)
    return np.stack([values, -values], axis=1)


def _add(ex: ChunkExecutor, actions: np.ndarray, stamp: int, now: int, names: tuple = JOINTS, **kw: object) -> None:
    period = kw.pop("control_period", 0.02)
    ex.add_chunk(
        actions,
        stamp_ns=stamp,
        control_period=period,
        joint_names=names,
        now_ros_ns=now,
        now_mono_ns=kw.get("mono", now),
    )


def _measure(ex: ChunkExecutor, values: tuple[float, ...], now: int, names: tuple = JOINTS) -> None:
    ex.update_measured(list(names), list(values), now)


def _values(command: Command | None) -> np.ndarray | None:
    return None if command is None else command.values


def test_rows_are_aligned_by_stamp_and_interpolated() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    assert ex.step(T0, T0) is None
    assert ex.state is ExecutorState.WAITING_FOR_STATE  # nothing moves before a measured position
    _measure(ex, (0.0, 0.0), T0)
    assert ex.step(T0, T0) is None
    assert ex.state is ExecutorState.IDLE
    # Observation at T0, chunk arrives 50 ms later (inference latency): rows 0-2 are in the past and skipped.
    _add(ex, _ramp(0.0), T0, T0 + 50 * MS)
    np.testing.assert_allclose(_values(ex.step(T0 + 50 * MS, T0 + 50 * MS)), [2.5, -2.5])
    np.testing.assert_allclose(_values(ex.step(T0 + 60 * MS, T0 + 60 * MS)), [3.0, -3.0])
    assert ex.state is ExecutorState.EXECUTING
    np.testing.assert_allclose(_values(ex.step(T0 + 980 * MS, T0 + 980 * MS)), [49.0, -49.0])  # the last row
    # Past the last row: nothing to execute; the watchdog holds the last command.
    command = ex.step(T0 + 1000 * MS, T0 + 1000 * MS)
    np.testing.assert_allclose(command.values, [49.0, -49.0])
    assert not command.motion
    assert ex.state is ExecutorState.HOLDING


def test_chunk_columns_are_matched_by_joint_name() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.array([[1.0, 2.0, 3.0]] * 10), T0, T0, names=("b", "extra", "a"))
    np.testing.assert_allclose(_values(ex.step(T0, T0)), [3.0, 1.0])


def test_broker_switches_to_the_newest_chunk() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, _ramp(0.0), T0, T0)
    _add(ex, _ramp(100.0), T0 + 100 * MS, T0 + 100 * MS)
    np.testing.assert_allclose(_values(ex.step(T0 + 100 * MS, T0 + 100 * MS)), [100.0, -100.0])


def test_temporal_ensemble_weights_older_chunks_more() -> None:
    decay = 0.5
    ex = _executor(strategy=Strategy.ENSEMBLE, ensemble_decay=decay)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.zeros((50, 2)), T0, T0)
    _add(ex, np.full((50, 2), 10.0), T0 + 20 * MS, T0 + 20 * MS)
    w = np.exp(-decay * np.arange(2))
    expected = (w @ np.array([0.0, 10.0])) / w.sum()
    np.testing.assert_allclose(_values(ex.step(T0 + 40 * MS, T0 + 40 * MS)), [expected, expected])


def test_blend_cross_fades_into_the_new_chunk() -> None:
    ex = _executor(strategy=Strategy.BLEND, blend_time=0.1)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.zeros((50, 2)), T0, T0)
    _add(ex, np.full((50, 2), 10.0), T0 + 100 * MS, T0 + 200 * MS)  # arrives 100 ms after its observation
    for t, expected in ((200, 0.0), (250, 5.0), (300, 10.0), (400, 10.0)):
        np.testing.assert_allclose(_values(ex.step(T0 + t * MS, T0 + t * MS)), [expected, expected])


def test_blend_never_jumps_at_an_arrival() -> None:
    """Finding 8: 10 Hz chunks that disagree, blend_time 0.2 s (the defaults). Each arrival used to restart the
    fade from the previous chunk instead of from the command being produced, a jump of about half the difference."""
    ex = _executor(strategy=Strategy.BLEND, blend_time=0.2)
    _measure(ex, (0.0, 0.0), T0)
    outputs = []
    for k in range(40):  # 4 s of 50 Hz ticks; a chunk every 5th tick, alternating between two constant motions
        now = T0 + k * 20 * MS
        if k % 5 == 0:
            _add(ex, np.full((50, 2), 1.0 if (k // 5) % 2 else -1.0), now, now)
        outputs.append(_values(ex.step(now, now))[0])
    steps = np.abs(np.diff(outputs))
    # A fade of 0.2 s = 10 ticks moves at most |difference| / 10 per tick; the targets are 2 apart.
    assert steps.max() <= 2.0 / 10 + 1e-9, steps.max()


def test_position_limits_and_step_clamp_from_the_measured_position() -> None:
    limits = SafetyLimits(lower=(-1.0, -1.0), upper=(1.0, 1.0), max_velocity=(5.0, 5.0))  # 0.1 per 20 ms tick
    ex = _executor(strategy=Strategy.BROKER, limits=limits)
    _add(ex, np.full((50, 2), 3.0), T0, T0)
    assert ex.step(T0, T0) is None  # no measured position yet: the first step could jump
    assert ex.state is ExecutorState.WAITING_FOR_STATE
    _measure(ex, (0.0, 0.95), T0, names=("a", "b"))
    ex.update_measured(["other"], [7.0], T0)  # names not executed here are ignored
    np.testing.assert_allclose(_values(ex.step(T0, T0)), [0.1, 1.0])  # a: step from 0; b: position limit
    np.testing.assert_allclose(_values(ex.step(T0 + 20 * MS, T0 + 20 * MS)), [0.2, 1.0])
    # A late tick (100 ms gap) may move at most two control periods' worth; no ROS time passing, nothing.
    np.testing.assert_allclose(_values(ex.step(T0 + 120 * MS, T0 + 120 * MS)), [0.4, 1.0])
    np.testing.assert_allclose(_values(ex.step(T0 + 120 * MS, T0 + 140 * MS)), [0.4, 1.0])
    assert ex.counters.clamped == 4


def test_acceleration_limit_ramps_the_velocity() -> None:
    limits = SafetyLimits(max_velocity=(5.0, 5.0), max_acceleration=(50.0, 50.0))  # dv <= 1 rad/s per tick
    ex = _executor(strategy=Strategy.BROKER, limits=limits)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.full((100, 2), 1.0), T0, T0)
    commands = [_values(ex.step(T0 + k * 20 * MS, T0 + k * 20 * MS))[0] for k in range(8)]
    velocity = np.diff([0.0, *commands]) / 0.02
    np.testing.assert_allclose(velocity[:5], [1.0, 2.0, 3.0, 4.0, 5.0])  # accelerating at 50 rad/s² up to 5 rad/s
    assert np.all(np.abs(np.diff(velocity)) <= 1.0 + 1e-9)


def test_step_clamp_restarts_from_the_measured_position_after_a_hold() -> None:
    """Finding 7: after HOLD, a driver re-home or a sim reset, the next command used to re-target the old pose."""
    limits = SafetyLimits(max_velocity=(5.0, 5.0))
    ex = _executor(strategy=Strategy.BROKER, stale_timeout=0.1, limits=limits)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.zeros((50, 2)), T0, T0)
    assert ex.step(T0, T0).motion
    ex.step(T0 + 200 * MS, T0 + 200 * MS)  # stale: hold
    assert ex.state is ExecutorState.HOLDING
    _measure(ex, (0.8, -0.8), T0 + 210 * MS)  # the arm was re-homed meanwhile
    _add(ex, np.full((50, 2), 0.9), T0 + 220 * MS, T0 + 220 * MS)
    np.testing.assert_allclose(_values(ex.step(T0 + 220 * MS, T0 + 220 * MS)), [0.9, -0.7])  # from 0.8 / -0.8


def test_tracking_error_faults_and_holds_the_measured_position() -> None:
    """A sim reset while executing: the measured position jumps away from the command."""
    limits = SafetyLimits(max_velocity=(5.0, 5.0), max_tracking_error=(0.3, 0.3))
    ex = _executor(strategy=Strategy.BROKER, limits=limits)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.zeros((100, 2)), T0, T0)
    assert ex.step(T0, T0).motion
    _measure(ex, (0.5, 0.0), T0 + 10 * MS)
    command = ex.step(T0 + 20 * MS, T0 + 20 * MS)
    assert ex.state is ExecutorState.FAULT
    assert "tracking error" in ex.message
    assert "'a'" in ex.message
    np.testing.assert_allclose(command.values, [0.5, 0.0])
    assert not command.motion
    np.testing.assert_allclose(_values(ex.step(T0 + 40 * MS, T0 + 40 * MS)), [0.5, 0.0])  # still holding
    with pytest.raises(ChunkRejected, match="predates the fault"):
        _add(ex, np.zeros((50, 2)), T0 + 10 * MS, T0 + 50 * MS)
    _add(ex, np.zeros((50, 2)), T0 + 50 * MS, T0 + 50 * MS)
    np.testing.assert_allclose(_values(ex.step(T0 + 60 * MS, T0 + 60 * MS)), [0.4, 0.0])  # from the measured 0.5
    assert ex.state is ExecutorState.EXECUTING


def test_a_measured_position_outside_the_limits_is_never_commanded_into_range() -> None:
    """Finding 7: seeded from a measured position outside the limits, the clamp used to publish outside them."""
    limits = SafetyLimits(lower=(-1.0, -1.0), upper=(1.0, 1.0), max_velocity=(5.0, 5.0))
    ex = _executor(strategy=Strategy.BROKER, limits=limits)
    _measure(ex, (1.5, 0.0), T0)
    _add(ex, np.zeros((50, 2)), T0, T0)
    assert ex.step(T0, T0) is None
    assert ex.state is ExecutorState.FAULT
    assert "outside the limits" in ex.message
    assert "'a': 1.5" in ex.message


def test_invalid_chunks_are_never_executed() -> None:
    """Finding 5 and 6 among them: a 1e-10 s period and a chunk stamped a second ahead are refused."""
    ex = _executor(strategy=Strategy.BROKER)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.ones((50, 2)), T0, T0)
    now = T0 + 10 * MS
    bad = [
        (np.full((50, 2), np.nan), JOINTS, T0 + MS, {}, "NaN or Inf"),
        (np.ones((50, 3)), JOINTS, T0 + MS, {}, "2 names for action_dim 3"),
        (np.ones((50, 2)), ("a", "c"), T0 + MS, {}, "no column for joints ['b']"),
        (np.ones((50, 2)), ("a", "a"), T0 + MS, {}, "duplicate names"),
        (np.ones((0, 2)), JOINTS, T0 + MS, {}, "expected [horizon, action_dim]"),
        (np.ones((50, 2)), JOINTS, T0 - 5 * NS, {}, "s old"),
        (np.ones((50, 2)), JOINTS, T0, {}, "not newer"),
        (np.ones((50, 2)), JOINTS, T0 + MS, {"control_period": 1e-10}, "control_period: 1e-10 s is outside"),
        (np.ones((50, 2)), JOINTS, T0 + MS, {"control_period": float("nan")}, "control_period"),
        (np.ones((50, 2)), JOINTS, T0 + MS, {"control_period": 1e6}, "control_period"),
        (np.ones((50, 2)), JOINTS, now + NS, {}, "in the future"),
    ]
    for actions, names, stamp, kw, reason in bad:
        with pytest.raises(ChunkRejected, match=re.escape(reason)):
            _add(ex, actions * 7, stamp, now, names=names, **kw)
    np.testing.assert_allclose(_values(ex.step(now, now)), [1.0, 1.0])  # still the good chunk
    assert ex.counters.chunks_rejected == len(bad)
    # A slightly future stamp (within max_future_stamp) is fine, and does not block the chunks after it.
    _add(ex, np.full((50, 2), 2.0), now + 30 * MS, now)
    _add(ex, np.full((50, 2), 3.0), now + 40 * MS, now + 20 * MS)
    np.testing.assert_allclose(_values(ex.step(now + 40 * MS, now + 40 * MS)), [3.0, 3.0])


def test_watchdog_hold_or_stop_on_stale_chunks() -> None:
    for hold in (True, False):
        ex = _executor(strategy=Strategy.BROKER, stale_timeout=0.1, hold_on_stale=hold)
        _measure(ex, (0.0, 0.0), T0)
        _add(ex, _ramp(0.0), T0, T0)
        np.testing.assert_allclose(_values(ex.step(T0 + 100 * MS, T0 + 100 * MS)), [5.0, -5.0])
        command = ex.step(T0 + 120 * MS, T0 + 120 * MS)  # rows left, but it arrived more than 0.1 s ago
        if hold:
            np.testing.assert_allclose(command.values, [5.0, -5.0])
            assert ex.state is ExecutorState.HOLDING
        else:
            assert command is None
            assert ex.state is ExecutorState.STOPPED
        _add(ex, _ramp(0.0), T0 + 120 * MS, T0 + 130 * MS)  # a fresh chunk: execution resumes
        np.testing.assert_allclose(_values(ex.step(T0 + 140 * MS, T0 + 140 * MS)), [1.0, -1.0])
        assert ex.state is ExecutorState.EXECUTING


def test_staleness_uses_the_monotonic_clock() -> None:
    """A chunk goes stale by arrival time on the monotonic clock, whatever the ROS clock does meanwhile."""
    ex = _executor(strategy=Strategy.BROKER, stale_timeout=0.1)
    _measure(ex, (0.0, 0.0), T0)
    ex.add_chunk(_ramp(0.0), stamp_ns=T0, control_period=0.02, joint_names=JOINTS, now_ros_ns=T0, now_mono_ns=5 * NS)
    assert ex.step(T0 + 20 * MS, 5 * NS + 20 * MS).motion
    assert not ex.step(T0 + 40 * MS, 5 * NS + 200 * MS).motion  # ROS time barely moved; 200 ms really passed


@pytest.mark.parametrize("source", ["stale", "nan", "malformed"])
def test_stale_or_bad_joint_states_stop_motion(source: str) -> None:
    ex = _executor(strategy=Strategy.BROKER, max_state_age=0.1, limits=SafetyLimits(max_velocity=(5.0, 5.0)))
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.full((100, 2), 1.0), T0, T0)
    assert ex.step(T0, T0).motion
    now = T0 + 20 * MS
    if source == "stale":
        now = T0 + 150 * MS
    elif source == "nan":
        _measure(ex, (np.nan, 0.0), T0 + 10 * MS)
    else:
        with pytest.raises(ValueError, match="2 names but 1 positions"):
            ex.update_measured(["a", "b"], [0.1], T0 + 10 * MS)
    command = ex.step(now, now)
    assert ex.state is ExecutorState.WAITING_FOR_STATE
    assert not command.motion
    np.testing.assert_allclose(command.values, [0.1, 0.1])  # holds the last command


def test_velocity_columns_are_commanded_zero_whenever_not_executing() -> None:
    """Finding 2: velocity columns used to get nothing on stale chunks, e-stop and shutdown, and `hold` repeated
    the last velocity, so a velocity controller kept moving."""
    joints = ("j1/velocity", "j2/velocity", "gripper")
    limits = SafetyLimits(lower=(-3.0, -3.0, 0.0), upper=(3.0, 3.0, 1.0), max_velocity=(2.0, 2.0, 5.0))
    ex = _executor(joints, strategy=Strategy.BROKER, stale_timeout=0.1, hold_on_stale=True, limits=limits)
    _measure(ex, (0.0, 0.0, 0.5), T0, names=("j1", "j2", "gripper"))
    _add(ex, np.tile([0.5, -0.5, 0.6], (50, 1)), T0, T0, names=joints)
    moving = ex.step(T0, T0)
    np.testing.assert_allclose(moving.values, [0.5, -0.5, 0.6])
    np.testing.assert_allclose(moving.targets, [0.01, -0.01, 0.6])  # positions one period ahead, for trajectories
    stale = ex.step(T0 + 200 * MS, T0 + 200 * MS)
    assert ex.state is ExecutorState.HOLDING
    np.testing.assert_allclose(stale.values, [0.0, 0.0, 0.6])  # hold the gripper, stop the joints
    ex.set_estop(True, T0 + 210 * MS, T0 + 210 * MS)
    estop = ex.step(T0 + 220 * MS, T0 + 220 * MS)
    np.testing.assert_array_equal(estop.values[:2], [0.0, 0.0])
    assert np.isnan(estop.values[2])  # position columns are not commanded during an e-stop
    shutdown = ex.safe_command()
    np.testing.assert_array_equal(shutdown.values[:2], [0.0, 0.0])


def test_droid_velocity_units_follow_openpi_and_keep_the_direction() -> None:
    """Finding 3: DROID's joint velocities are normalised (1.0 = 0.2 rad per 15 Hz step; openpi's DROID client
    binarises the gripper at 0.5). The vector is bounded as a whole, so the direction of motion is kept."""
    joints = (*(f"j{i}/velocity" for i in range(1, 4)), "gripper")
    limits = SafetyLimits(max_velocity=(2.0, 2.0, 2.0, 100.0))  # gripper: 2 per tick
    ex = _executor(
        joints,
        strategy=Strategy.BROKER,
        velocity_scale=0.2 * 15,
        velocity_input_bound=1.0,
        binary_columns=("gripper",),
        limits=limits,
    )
    _measure(ex, (0.0, 0.0, 0.0, 0.0), T0, names=("j1", "j2", "j3", "gripper"))
    _add(ex, np.tile([0.1, 0.2, -0.05, 0.7], (10, 1)), T0, T0, names=joints)  # inside every bound
    np.testing.assert_allclose(_values(ex.step(T0, T0)), [0.3, 0.6, -0.15, 1.0])
    _add(ex, np.tile([2.0, 1.0, -0.5, 0.3], (10, 1)), T0 + 20 * MS, T0 + 20 * MS, names=joints)
    # Input bound: max |v| 2 > 1 -> [1, 0.5, -0.25] -> x3 rad/s = [3, 1.5, -0.75] -> max_velocity 2: x(2/3).
    values = _values(ex.step(T0 + 20 * MS, T0 + 20 * MS))
    np.testing.assert_allclose(values, [2.0, 1.0, -0.5, 0.0])
    np.testing.assert_allclose(
        values[:3] / np.linalg.norm(values[:3]), np.array([2, 1, -0.5]) / np.linalg.norm([2, 1, -0.5])
    )


def test_velocity_columns_stay_inside_the_position_limits() -> None:
    joints = ("j1/velocity",)
    ex = _executor(joints, strategy=Strategy.BROKER, limits=SafetyLimits(lower=(-1.0,), upper=(1.0,)))
    _measure(ex, (0.99,), T0, names=("j1",))
    _add(ex, np.full((10, 1), 2.0), T0, T0, names=joints)
    np.testing.assert_allclose(_values(ex.step(T0, T0)), [0.5])  # 0.99 + 0.5 * 0.02 = 1.0: stops at the limit
    _measure(ex, (1.2,), T0 + 10 * MS, names=("j1",))  # pushed outside: may not move further out ...
    np.testing.assert_allclose(_values(ex.step(T0 + 20 * MS, T0 + 20 * MS)), [0.0])
    _add(ex, np.full((10, 1), -2.0), T0 + 30 * MS, T0 + 30 * MS, names=joints)
    np.testing.assert_allclose(_values(ex.step(T0 + 30 * MS, T0 + 30 * MS)), [-2.0])  # ... but may move back in


def test_estop_latches_and_requires_a_chunk_after_release() -> None:
    ex = _executor(strategy=Strategy.BROKER)
    _measure(ex, (0.0, 0.0), T0)
    _add(ex, np.ones((50, 2)), T0, T0)
    assert ex.step(T0, T0) is not None
    ex.set_estop(True, T0 + 10 * MS, T0 + 10 * MS)
    assert ex.step(T0 + 20 * MS, T0 + 20 * MS) is None
    assert ex.state is ExecutorState.ESTOP
    with pytest.raises(ChunkRejected, match="e-stop"):
        _add(ex, np.ones((50, 2)), T0 + 20 * MS, T0 + 20 * MS)
    ex.set_estop(False, T0 + 30 * MS, T0 + 30 * MS)
    assert ex.step(T0 + 40 * MS, T0 + 40 * MS) is None  # the old chunk is gone; nothing is held either
    assert ex.state is ExecutorState.IDLE
    with pytest.raises(ChunkRejected, match="predates the e-stop release"):
        _add(ex, np.ones((50, 2)), T0 + 25 * MS, T0 + 40 * MS)
    _add(ex, np.full((50, 2), 2.0), T0 + 35 * MS, T0 + 50 * MS)
    np.testing.assert_allclose(_values(ex.step(T0 + 50 * MS, T0 + 50 * MS)), [2.0, 2.0])


def test_estop_heartbeat_loss_stops_motion_until_it_returns() -> None:
    ex = _executor(strategy=Strategy.BROKER, estop_heartbeat_timeout=0.2)
    _measure(ex, (0.0, 0.0), T0)
    with pytest.raises(ChunkRejected, match="e-stop"):  # no heartbeat yet: not even a chunk is taken
        _add(ex, np.ones((50, 2)), T0, T0)
    ex.set_estop(False, T0, T0)
    _add(ex, np.ones((50, 2)), T0 + MS, T0 + MS)
    assert ex.step(T0 + 10 * MS, T0 + 10 * MS).motion
    assert ex.step(T0 + 300 * MS, T0 + 300 * MS) is None  # 300 ms without a heartbeat
    assert ex.state is ExecutorState.ESTOP
    assert "heartbeat" in ex.message
    ex.set_estop(False, T0 + 310 * MS, T0 + 310 * MS)  # back: a chunk observed after it is needed
    assert ex.step(T0 + 320 * MS, T0 + 320 * MS) is None
    _add(ex, np.ones((50, 2)), T0 + 330 * MS, T0 + 330 * MS)
    assert ex.step(T0 + 340 * MS, T0 + 340 * MS).motion


def test_backwards_clock_jump_drops_chunks_and_resumes_with_newer_ones() -> None:
    """Finding 4: after a jump back (sim reset, bag loop, NTP step) the executor used to repeat the last pre-jump
    chunk's row 0 and reject every new chunk as out of order; an e-stop release stamp deadlocked the same way."""
    ex = _executor(strategy=Strategy.BROKER)
    _measure(ex, (0.0, 0.0), T0)
    ex.set_estop(True, T0, T0)
    ex.set_estop(False, T0 + 500 * MS, T0 + 500 * MS)  # released at ROS time T0 + 0.5 s
    _add(ex, np.full((50, 2), 1.0), T0 + 600 * MS, T0 + 600 * MS)
    assert ex.step(T0 + 600 * MS, T0 + 600 * MS).motion
    back = T0 - 10 * NS  # the clock jumps back 10.6 s; monotonic time goes on
    mono = T0 + 620 * MS
    command = ex.step(back, mono)
    assert ex.state is ExecutorState.IDLE
    assert "jumped back" in ex.message
    assert not command.motion  # holds the last command instead of executing the old chunk
    assert ex.counters.clock_jumps == 1
    _add(ex, np.full((50, 2), 2.0), back + 10 * MS, back + 20 * MS, mono=mono + 20 * MS)  # newer than the jump
    np.testing.assert_allclose(_values(ex.step(back + 20 * MS, mono + 20 * MS)), [2.0, 2.0])
    assert ex.state is ExecutorState.EXECUTING


def test_an_exception_in_the_tick_faults_instead_of_escaping() -> None:
    """Finding 5: an error inside the 50 Hz tick used to end the process (a velocity arm then kept moving)."""

    class Broken(ChunkExecutor):
        def _target(self, now_ros_ns: int, now_mono_ns: int) -> np.ndarray:
            raise ZeroDivisionError("integer division or modulo by zero")

    joints = ("j1/velocity", "j2")
    ex = Broken(ExecutorConfig(joint_names=joints, max_state_age=10.0, estop_grace=0.0))
    _measure(ex, (0.0, 0.0), T0, names=("j1", "j2"))
    command = ex.step(T0, T0)
    assert ex.state is ExecutorState.FAULT
    assert "ZeroDivisionError" in ex.message
    assert command.values[0] == 0.0  # the velocity column is stopped


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
    with pytest.raises(ValueError, match="state_joint_names: 1 names for 2 joints"):
        ExecutorConfig(joint_names=JOINTS, state_joint_names=("a",))
    with pytest.raises(ValueError, match=r"max_velocity: position columns \['b'\] have no measured joint"):
        ExecutorConfig(joint_names=JOINTS, state_joint_names=("a", ""), limits=SafetyLimits(max_velocity=(1.0, 1.0)))
    with pytest.raises(ValueError, match="binary_columns"):
        ExecutorConfig(joint_names=JOINTS, binary_columns=("gripper",))


def test_nothing_moves_in_the_estop_grace_unless_an_estop_message_arrived() -> None:
    """A latched e-stop reaches a (re)started executor only after discovery, which under load can come after the
    first chunks: for `estop_grace` from the first chunk's arrival (or from seeing an e-stop publisher that has
    not spoken yet) no chunk is accepted unless an e-stop message arrived, and nothing is commanded."""
    ex = _executor(estop_grace=1.0)
    ex.update_measured(JOINTS, [0.0, 0.0], T0)
    assert ex.step(T0, T0) is None
    assert "latched e-stop" in ex.message
    with pytest.raises(ChunkRejected, match="e-stop state not known yet"):
        _add(ex, _ramp(0.0), T0 + 100 * MS, T0 + 5000 * MS)  # late, long after start: the grace starts now
    # The latched e-stop arrives within the grace: engaged, as if it had been there all along.
    ex.set_estop(True, T0 + 5200 * MS, T0 + 5200 * MS)
    with pytest.raises(ChunkRejected, match="e-stop engaged"):
        _add(ex, _ramp(0.0), T0 + 5250 * MS, T0 + 5250 * MS)
    # No e-stop publisher at all: one grace after the first chunk the executor runs, and a chunk observed during the
    # grace never runs after it.
    quiet = _executor(estop_grace=1.0)
    quiet.update_measured(JOINTS, [0.0, 0.0], T0)
    with pytest.raises(ChunkRejected, match="e-stop state not known yet"):
        _add(quiet, _ramp(0.0), T0, T0)
    quiet.update_measured(JOINTS, [0.0, 0.0], T0 + 1100 * MS)
    quiet.step(T0 + 1100 * MS, T0 + 1100 * MS)
    with pytest.raises(ChunkRejected, match="predates the end of the e-stop grace"):
        _add(quiet, _ramp(5.0), T0 + 900 * MS, T0 + 1110 * MS)
    _add(quiet, _ramp(0.0), T0 + 1100 * MS, T0 + 1110 * MS)
    assert quiet.step(T0 + 1120 * MS, T0 + 1120 * MS) is not None
    assert quiet.state is ExecutorState.EXECUTING
    # An e-stop publisher seen but silent: the grace runs again from then.
    seen = _executor(estop_grace=1.0)
    seen.update_measured(JOINTS, [0.0, 0.0], T0)
    with pytest.raises(ChunkRejected):
        _add(seen, _ramp(0.0), T0, T0)
    assert seen.awaiting_estop
    seen.estop_publisher_seen(T0 + 900 * MS)
    with pytest.raises(ChunkRejected, match="e-stop state not known yet"):
        _add(seen, _ramp(0.0), T0 + 1500 * MS, T0 + 1500 * MS)


def test_ordering_holds_after_the_executed_chunk_went_stale() -> None:
    """An older or duplicate stamp is rejected even once the chunk it is older than is no longer executed."""
    ex = _executor(stale_timeout=0.2)
    ex.update_measured(JOINTS, [0.0, 0.0], T0)
    _add(ex, _ramp(0.0), T0 + 100 * MS, T0 + 100 * MS)
    ex.step(T0 + 120 * MS, T0 + 120 * MS)
    later = T0 + 600 * MS  # the chunk arrived 0.5 s ago: stale, pruned from the queue
    ex.update_measured(JOINTS, [0.0, 0.0], later)
    ex.step(later, later)
    for stamp in (T0 + 100 * MS, T0 + 80 * MS):
        with pytest.raises(ChunkRejected, match="not newer than the newest chunk accepted"):
            _add(ex, _ramp(5.0), stamp, later)


def test_a_restarted_executor_never_runs_a_chunk_observed_before_its_start() -> None:
    """It has no ordering state: a late, re-sent or out-of-order chunk from before it started must not run."""
    ex = _executor()
    ex.start(T0 + 500 * MS)
    ex.update_measured(JOINTS, [0.0, 0.0], T0 + 500 * MS)
    with pytest.raises(ChunkRejected, match="predates the executor's start"):
        _add(ex, _ramp(5.0), T0 + 400 * MS, T0 + 510 * MS)
    _add(ex, _ramp(0.0), T0 + 505 * MS, T0 + 510 * MS)  # observed after the start: runs
    assert ex.step(T0 + 520 * MS, T0 + 520 * MS) is not None
