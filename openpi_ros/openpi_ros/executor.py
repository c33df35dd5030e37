"""Turn action chunks into joint commands at the control rate, within a written safety contract (no ROS types here).

Columns. A chunk's columns are matched to the executor's `joint_names` by name. A name ending in ``/velocity``
(DROID's) is a *velocity* column for the joint before the slash; every other column is a *position* column. Each
column may be measured by one JointState name (`state_joint_names`; by default the column's joint).

Time. Chunks are aligned by their stamp (the observation time, ROS clock): at ROS time `now`, row
``(now - stamp) / control_period`` is the action meant for now (rows are interpolated), so inference latency is
skipped rather than replayed late. Arrival and freshness (chunk staleness, measured-state age, e-stop heartbeat)
use the monotonic clock, which no clock jump, `use_sim_time` or NTP step can move.

Strategies: ``broker`` (the newest chunk, openpi's open-loop playback), ``ensemble`` (ACT's temporal ensembling:
every live chunk votes with weight ``exp(-decay * i)``, i = 0 the oldest), ``blend`` (each new chunk is
cross-faded in over `blend_time` from the command being produced when it arrived, so an arrival never jumps),
``rtc`` (for real-time-chunked chunks, whose rows up to the inference delay repeat the previous chunk's: the newest
chunk from the first row boundary at or after its arrival, so the switch lands on a row both chunks share; the
previous chunk runs until then).

Safety contract, checked in this order on every tick (`ChunkExecutor.step`); the first that fails decides:

1. **E-stop** latched (until an explicit release) or its heartbeat silent for `estop_heartbeat_timeout` →
   ESTOP: velocity columns 0, position columns not commanded. The queue is dropped; after a release only a chunk
   observed after the release moves the arm. Until an e-stop message has arrived, nothing moves for `estop_grace` s
   from the first chunk's arrival: a latched e-stop published before the executor started comes only after
   discovery, which can lag the chunks.
2. **Clock**: ROS time going backwards (sim reset, ``bag play --loop``, an NTP step) → every chunk and all
   ordering state is dropped; the executor holds until a chunk observed after the jump arrives.
3. **Measured state**: every measured column has a finite reading at most `max_state_age` old, else the safe
   command (hold the last command / velocity 0); nothing moves before the first reading.
4. **Chunk validity** (at arrival; a bad chunk is rejected whole, never partly used): finite, shape
   [horizon, dim] within bounds, a column for every joint, `control_period` within [1 ms, 10 s], stamp not older
   than `max_chunk_age`, not more than `max_future_stamp` ahead (clock skew), newer than every chunk accepted
   since the last release/jump/fault (also ones no longer executed) and than that event or the executor's start.
   Freshness: a chunk that arrived more than `stale_timeout` ago is no longer executed (watchdog: `hold_on_stale`
   holds the last command, else position columns are not commanded; velocity columns are always commanded 0).
5. **Strategy** → the raw target; then **units**: binary columns thresholded (DROID's gripper at 0.5), velocity
   columns bounded as a whole vector (``max |v| <= velocity_input_bound``, direction kept; DROID's 1.0) and
   scaled to command units (`velocity_scale`; DROID: 0.2 rad per 15 Hz step = 3 rad/s per unit).
6. **Position limits**: position columns clipped to [lower, upper]; velocity columns slowed so the measured
   position plus one period of motion stays inside (moving back in is allowed).
7. **Step and acceleration limits**: the command trajectory is seeded from the **measured** position (at the
   first command and after every hold, stop, e-stop, fault or clock jump) and then moves at most
   ``max_velocity * dt`` per tick with an acceleration of at most `max_acceleration`, dt being the ROS time since
   the last command (at most two periods: a late tick catches up, a paused sim clock stops motion); velocity
   columns are scaled as a whole vector so the direction of motion is kept. A seed more than one step outside
   the position limits is a FAULT (no command could be inside the limits without jumping).
8. **Tracking watchdog**: a measured position farther than `max_tracking_error` from the command (a driver
   re-home, a sim reset, a blocked arm) → FAULT: hold the measured position, drop the queue, wait for a chunk
   observed after the fault.
9. **Publish**. An exception anywhere in the tick enters FAULT with the safe command; it never escapes.

A velocity column's safe value is always 0: velocity controllers keep applying their last command, so stale
chunks, e-stop and shutdown must command a stop, not fall silent.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "VELOCITY_SUFFIX",
    "ChunkExecutor",
    "ChunkRejected",
    "Command",
    "ExecutorConfig",
    "ExecutorState",
    "SafetyLimits",
    "Strategy",
]

logger = logging.getLogger(__name__)

NS = 1_000_000_000
VELOCITY_SUFFIX = "/velocity"
CHUNK_PERIOD_RANGE = (1e-3, 10.0)
"""Seconds: the control periods a chunk may declare (a 0 ns period would divide by zero in the tick)."""
MAX_HORIZON = 10_000
"""Rows: a bigger chunk is refused (a malformed message must not cost the 50 Hz loop seconds of interpolation)."""
CLOCK_JUMP_TOLERANCE_NS = 1_000_000
"""ROS time may go backwards by this much (float rounding of sim clocks) before it counts as a jump."""


class Strategy(enum.Enum):
    BROKER = "broker"
    ENSEMBLE = "ensemble"
    BLEND = "blend"
    RTC = "rtc"


class ExecutorState(enum.IntEnum):
    """Mirrors openpi_msgs/ExecutorStatus STATE_* constants."""

    IDLE = 0  # no chunk since start, a release, a fault or a clock jump
    EXECUTING = 1
    HOLDING = 2  # watchdog: holding the last command (velocity columns at 0)
    STOPPED = 3  # watchdog: position columns not commanded (velocity columns at 0)
    ESTOP = 4
    WAITING_FOR_STATE = 5  # no fresh, finite measured position for every measured column
    FAULT = 6  # tracking error, measured position outside the limits, or an internal error: holding


class ChunkRejected(ValueError):  # noqa: N818 - a normal outcome, not a fault
    """A chunk that is not executed; the message names the field."""


def _vector(name: str, values: Sequence[float] | None, n: int, *, positive: bool = False) -> np.ndarray | None:
    if values is None or len(values) == 0:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"SafetyLimits.{name}: expected {n} values (one per joint), got {arr.size}")
    if np.isnan(arr).any():
        raise ValueError(f"SafetyLimits.{name}: contains NaN")
    if positive and not np.all(arr > 0):
        raise ValueError(f"SafetyLimits.{name}: must be > 0")
    return arr


@dataclasses.dataclass(frozen=True)
class SafetyLimits:
    """Per column; an empty tuple disables that limit."""

    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    """Position limits (for a velocity column: of its measured joint)."""
    max_velocity: tuple[float, ...] = ()
    """Units/s: bounds the step between consecutive position commands, and a velocity column's command."""
    max_acceleration: tuple[float, ...] = ()
    """Units/s²: bounds the change of the commanded velocity between ticks."""
    max_tracking_error: tuple[float, ...] = ()
    """Units: a measured position this far from the command is a FAULT (0: no check for that column)."""

    @property
    def configured(self) -> bool:
        return bool(self.lower or self.upper or self.max_velocity)


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    joint_names: tuple[str, ...]
    """Chunk columns executed, in command order (``<joint>/velocity`` for velocity columns)."""
    state_joint_names: tuple[str, ...] | None = None
    """Per column, the JointState name measuring it ('' for none); None: the column's joint."""
    strategy: Strategy = Strategy.BLEND
    control_period: float = 0.02
    ensemble_decay: float = 0.01
    blend_time: float = 0.2
    stale_timeout: float = 0.5
    """Seconds since the newest chunk arrived after which it is no longer executed."""
    max_chunk_age: float = 1.0
    """A chunk whose observation stamp is older than this when it arrives is rejected."""
    max_future_stamp: float = 0.05
    """A chunk stamped more than this ahead of the executor's clock is rejected (clock skew)."""
    hold_on_stale: bool = True
    """Watchdog: True holds the last commanded position, False stops commanding position columns."""
    max_state_age: float = 0.5
    """Seconds: an older measured reading stops motion."""
    velocity_scale: float = 1.0
    """Command units (e.g. rad/s) per chunk unit, for velocity columns."""
    velocity_input_bound: float = 0.0
    """If > 0, velocity columns are scaled together so that max |v| <= this, in chunk units (DROID: 1.0)."""
    binary_columns: tuple[str, ...] = ()
    """Columns commanded as 1.0 above `binary_threshold` and 0.0 otherwise (DROID's gripper)."""
    binary_threshold: float = 0.5
    estop_heartbeat_timeout: float = 0.0
    """If > 0, e-stop messages must arrive at least this often (s), or motion stops as for an engaged e-stop."""
    estop_grace: float = 2.0
    """Seconds from the first chunk's arrival in which no chunk is accepted unless an e-stop message has arrived (a
    latched e-stop is delivered after discovery, which lags on a loaded machine); 0: no wait."""
    limits: SafetyLimits = SafetyLimits()

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if n == 0 or len(set(self.joint_names)) != n:
            raise ValueError(f"ExecutorConfig.joint_names: need distinct names, got {self.joint_names}")
        for field in ("control_period", "blend_time", "stale_timeout", "max_chunk_age", "max_state_age"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ExecutorConfig.{field} must be > 0, got {value}")
        nonnegative = ("ensemble_decay", "max_future_stamp", "velocity_input_bound", "estop_heartbeat_timeout")
        for field in (*nonnegative, "estop_grace"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ExecutorConfig.{field} must be >= 0, got {value}")
        if not (math.isfinite(self.velocity_scale) and self.velocity_scale > 0):
            raise ValueError(f"ExecutorConfig.velocity_scale must be > 0, got {self.velocity_scale}")
        if self.state_joint_names is not None and len(self.state_joint_names) != n:
            raise ValueError(
                f"ExecutorConfig.state_joint_names: {len(self.state_joint_names)} names for {n} joints "
                "('' for a column without a measurement)"
            )
        unknown = [c for c in self.binary_columns if c not in self.joint_names]
        if unknown:
            raise ValueError(f"ExecutorConfig.binary_columns: {unknown} are not among joint_names")
        lims = self.limits
        lower, upper = _vector("lower", lims.lower, n), _vector("upper", lims.upper, n)
        _vector("max_velocity", lims.max_velocity, n, positive=True)
        _vector("max_acceleration", lims.max_acceleration, n, positive=True)
        tracking = _vector("max_tracking_error", lims.max_tracking_error, n)
        if lower is not None and upper is not None and not np.all(lower < upper):
            raise ValueError("SafetyLimits: every lower limit must be below its upper limit")
        if tracking is not None and np.any(tracking < 0):
            raise ValueError("SafetyLimits.max_tracking_error: must be >= 0 (0: no check)")
        unmeasured_position = ~np.array(self.velocity_mask) & ~np.array([bool(s) for s in self.measured_names])
        needs = {
            "max_velocity": unmeasured_position if lims.max_velocity else None,
            "max_acceleration": unmeasured_position if lims.max_acceleration else None,
            "max_tracking_error": None if tracking is None else unmeasured_position & (tracking > 0),
        }
        for name, mask in needs.items():
            if mask is not None and np.any(mask):
                cols = [c for c, m in zip(self.joint_names, mask, strict=True) if m]
                raise ValueError(
                    f"SafetyLimits.{name}: position columns {cols} have no measured joint (state_joint_names), "
                    "and a step can only be limited from a measured position"
                )

    @property
    def velocity_mask(self) -> tuple[bool, ...]:
        return tuple(name.endswith(VELOCITY_SUFFIX) for name in self.joint_names)

    @property
    def measured_names(self) -> tuple[str, ...]:
        if self.state_joint_names is not None:
            return self.state_joint_names
        return tuple(name.removesuffix(VELOCITY_SUFFIX) for name in self.joint_names)


@dataclasses.dataclass(frozen=True)
class Command:
    """One tick's output, per column in command units. NaN: no command for that column this tick."""

    values: np.ndarray
    targets: np.ndarray
    """Position-space target one period ahead: position columns as `values`, velocity columns the measured
    position plus one period of the commanded velocity (NaN without a measurement). For trajectory outputs."""
    motion: bool
    """True when derived from a chunk; False for a safe command (hold, zero velocity)."""


@dataclasses.dataclass(frozen=True)
class _Chunk:
    actions: np.ndarray  # float64 [horizon, n_joints], in the executor's column order
    stamp_ns: int  # ROS time of the observation
    period_ns: int
    arrival_ns: int  # monotonic
    start_ns: int  # ROS time from which the chunk may be executed (rtc: its first row boundary after arrival)

    def at(self, now_ns: int, *, hold_end: bool = False) -> np.ndarray | None:
        """The action for `now` (rows interpolated); past the last row None, or the last row with `hold_end`."""
        t = max(0.0, (now_ns - self.stamp_ns) / self.period_ns)
        last = self.actions.shape[0] - 1
        if t > last:
            return self.actions[last] if hold_end else None
        i = min(int(t), last)
        frac = t - i
        if frac == 0.0 or i == last:
            return self.actions[i]
        return (1.0 - frac) * self.actions[i] + frac * self.actions[i + 1]


@dataclasses.dataclass
class ExecutorCounters:
    chunks_received: int = 0
    chunks_rejected: int = 0
    commands: int = 0
    clamped: int = 0
    clock_jumps: int = 0
    faults: int = 0


def _scale_to_bound(vector: np.ndarray, bound: np.ndarray | float) -> np.ndarray:
    """`vector` scaled as a whole so that |v_i| <= bound_i for every i (its direction is kept)."""
    ratio = float(np.max(np.abs(vector) / bound)) if vector.size else 0.0
    return vector / ratio if ratio > 1.0 else vector


class ChunkExecutor:
    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        n = len(config.joint_names)
        lims = config.limits
        self._lower = _vector("lower", lims.lower, n)
        self._upper = _vector("upper", lims.upper, n)
        self._max_velocity = _vector("max_velocity", lims.max_velocity, n)
        self._max_acceleration = _vector("max_acceleration", lims.max_acceleration, n)
        tracking = _vector("max_tracking_error", lims.max_tracking_error, n)
        checked = tracking is not None and np.any(tracking > 0)
        self._tracking = np.where(tracking > 0, tracking, np.inf) if checked else None
        self._velocity = np.array(config.velocity_mask)
        self._position = ~self._velocity
        self._binary = np.array([name in config.binary_columns for name in config.joint_names])
        self._index = {name: i for i, name in enumerate(config.joint_names)}
        measured_names = config.measured_names
        self._measured_index = {name: i for i, name in enumerate(measured_names) if name}
        self._is_measured = np.array([bool(name) for name in measured_names])
        self._period_ns = round(config.control_period * NS)
        self._chunks: list[_Chunk] = []
        self._measured = np.full(n, np.nan)
        self._measured_at = np.full(n, -np.inf)  # monotonic ns of each column's reading
        self._command: np.ndarray | None = None  # last published values (NaN where not commanded)
        self._last_command_ns = 0  # ROS time of the last motion command
        self._velocity_cmd = np.zeros(n)  # commanded velocity of the last motion tick, per column
        self._continuous = False  # the last tick published a motion command (the trajectory continues from it)
        self._estop = False
        self._in_grace_period = config.estop_grace > 0  # see `_in_grace`
        self._estop_heard = False  # an e-stop message has arrived since start
        self._grace_extended = False
        self._grace_from_ns: int | None = None  # the grace runs `estop_grace` from the first chunk's arrival
        self._heartbeat_ns: int | None = None
        self._min_stamp_ns = -(2**62)  # chunks must be observed after this (e-stop release, fault, clock jump)
        self._newest_stamp_ns = -(2**62)  # the newest chunk accepted since then
        self._min_stamp_reason = "start"
        self._last_ros_ns: int | None = None
        # Set from a resync until the next chunk: the state to report and the positions to hold meanwhile.
        self._waiting: tuple[ExecutorState, str] | None = (ExecutorState.IDLE, "no chunk received since start")
        self._waiting_hold: np.ndarray | None = None
        self.state = ExecutorState.IDLE
        self.message = "no chunk received since start"
        self.counters = ExecutorCounters()

    # -- inputs -------------------------------------------------------------------------------------------------
    def start(self, now_ros_ns: int) -> None:
        """The executor starts at `now_ros_ns`: a chunk observed before that (a restarted executor meeting a late,
        re-sent or out-of-order chunk it has no ordering state for) is never executed."""
        self._min_stamp_ns = int(now_ros_ns) - 1  # one observed at the very start is fine (a sim's first /clock)
        self._min_stamp_reason = "executor's start"

    def update_measured(self, names: Sequence[str], positions: Sequence[float], now_mono_ns: int) -> None:
        """A JointState reading (names not measured here are ignored). A non-finite value invalidates that
        column's measurement at once: no motion from it until a finite reading arrives."""
        if len(names) != len(positions):
            self._measured[:] = np.nan  # a malformed reading: the state source is not to be trusted
            raise ValueError(f"joint_states: {len(names)} names but {len(positions)} positions")
        for name, value in zip(names, positions, strict=True):
            i = self._measured_index.get(name)
            if i is not None:
                reading = float(value)
                self._measured[i] = reading if math.isfinite(reading) else np.nan
                self._measured_at[i] = now_mono_ns

    def set_estop(self, engaged: bool, now_ros_ns: int, now_mono_ns: int) -> None:
        """An e-stop message (also the heartbeat when `estop_heartbeat_timeout` is set)."""
        self._check_clock(now_ros_ns)
        self._estop_heard = True
        self._in_grace(now_ros_ns, now_mono_ns)  # ends the grace: only chunks observed from now on run
        heartbeat_was_lost = self._heartbeat_lost(now_mono_ns)
        self._heartbeat_ns = now_mono_ns
        if engaged and not self._estop:
            self._resync(now_ros_ns, ExecutorState.ESTOP, "e-stop engaged", reason="e-stop")
        elif not engaged and (self._estop or heartbeat_was_lost):
            what = "e-stop release" if self._estop else "e-stop heartbeat's return"
            # The arm may have been moved by hand meanwhile: nothing is held, motion restarts from the measurement.
            self._resync(now_ros_ns, ExecutorState.IDLE, f"{what}: waiting for a chunk observed after it", reason=what)
        self._estop = engaged

    def add_chunk(
        self,
        actions: np.ndarray,
        *,
        stamp_ns: int,
        control_period: float,
        joint_names: Sequence[str],
        now_ros_ns: int,
        now_mono_ns: int,
    ) -> None:
        """Validate and queue a chunk; raises `ChunkRejected` (and the chunk is dropped) on any problem."""
        self.counters.chunks_received += 1
        self._check_clock(now_ros_ns)
        if self._grace_from_ns is None:  # upstream is on the graph now: its e-stop sample is due within the grace
            self._grace_from_ns = now_mono_ns
        try:
            chunk = self._validate(actions, stamp_ns, control_period, joint_names, now_ros_ns, now_mono_ns)
        except ChunkRejected as exc:
            self.counters.chunks_rejected += 1
            self.message = str(exc)
            raise
        keep_after = now_mono_ns - int(self.config.stale_timeout * NS)
        self._chunks = [c for c in self._chunks if c.arrival_ns >= keep_after]
        self._chunks.append(chunk)
        self._newest_stamp_ns = chunk.stamp_ns
        self._prune_blend(now_mono_ns)
        self._waiting = None

    def _validate(  # noqa: PLR0917 - add_chunk's keywords, passed on
        self,
        actions: np.ndarray,
        stamp_ns: int,
        control_period: float,
        joint_names: Sequence[str],
        now_ros_ns: int,
        now_mono_ns: int,
    ) -> _Chunk:
        cfg = self.config
        if self._estop or self._heartbeat_lost(now_mono_ns):
            raise ChunkRejected("e-stop engaged: chunk ignored")
        if self._in_grace(now_ros_ns, now_mono_ns):
            raise ChunkRejected(f"e-stop state not known yet (estop_grace {cfg.estop_grace} s): chunk ignored")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ChunkRejected(f"actions: expected [horizon, action_dim], got shape {actions.shape}")
        if actions.shape[0] > MAX_HORIZON:
            raise ChunkRejected(f"horizon: {actions.shape[0]} rows, more than {MAX_HORIZON}")
        if not np.all(np.isfinite(actions)):
            raise ChunkRejected("actions: contains NaN or Inf")
        low, high = CHUNK_PERIOD_RANGE
        if not (math.isfinite(control_period) and low <= control_period <= high):
            raise ChunkRejected(f"control_period: {control_period} s is outside [{low}, {high}] s")
        names = list(joint_names)
        if len(names) != actions.shape[1]:
            raise ChunkRejected(f"joint_names: {len(names)} names for action_dim {actions.shape[1]}")
        if len(set(names)) != len(names):
            raise ChunkRejected(f"joint_names: duplicate names in {names}")
        missing = [n for n in cfg.joint_names if n not in names]
        if missing:
            raise ChunkRejected(f"joint_names: chunk has no column for joints {missing}")
        age = (now_ros_ns - stamp_ns) / NS
        if age > cfg.max_chunk_age:
            raise ChunkRejected(f"header.stamp: observation is {age:.3f} s old (max_chunk_age {cfg.max_chunk_age})")
        if -age > cfg.max_future_stamp:
            raise ChunkRejected(
                f"header.stamp: {-age:.3f} s in the future (max_future_stamp {cfg.max_future_stamp} s): "
                "clocks out of sync?"
            )
        if stamp_ns <= self._min_stamp_ns:
            raise ChunkRejected(f"header.stamp: observation predates the {self._min_stamp_reason}")
        if stamp_ns <= self._newest_stamp_ns:
            raise ChunkRejected("header.stamp: not newer than the newest chunk accepted (out of order or duplicate)")
        columns = [names.index(n) for n in cfg.joint_names]
        period_ns = round(control_period * NS)
        start_ns = int(stamp_ns)
        if cfg.strategy is Strategy.RTC and now_ros_ns > stamp_ns:
            start_ns += -(-(now_ros_ns - int(stamp_ns)) // period_ns) * period_ns
        return _Chunk(actions[:, columns], int(stamp_ns), period_ns, int(now_mono_ns), start_ns)

    # -- state changes ------------------------------------------------------------------------------------------
    def _in_grace(self, now_ros_ns: int, now_mono_ns: int) -> bool:
        """Still in the e-stop grace: no e-stop message heard, and either no chunk has arrived yet or the first one
        arrived less than `estop_grace` ago (a latched e-stop from the same graph arrives within that). When it ends,
        only chunks observed after its end run: one rejected during it must not be overtaken by an older one later."""
        if not self._in_grace_period:
            return False
        waiting = self._grace_from_ns is None or now_mono_ns - self._grace_from_ns < self.config.estop_grace * NS
        if waiting and not self._estop_heard:
            return True
        self._in_grace_period = False
        if now_ros_ns - 1 > self._min_stamp_ns:
            self._min_stamp_ns, self._min_stamp_reason = int(now_ros_ns) - 1, "end of the e-stop grace"
        return False

    @property
    def awaiting_estop(self) -> bool:
        """In the start-up grace, no e-stop message heard yet."""
        return self._in_grace_period and not self._estop_heard

    def estop_publisher_seen(self, now_mono_ns: int) -> None:
        """An e-stop publisher is on the graph but none of its messages has arrived: a latched sample follows its
        discovery, which can lag on a loaded machine, so the grace runs again from now (once)."""
        if self.awaiting_estop and not self._grace_extended:
            self._grace_extended = True
            self._grace_from_ns = now_mono_ns

    def _heartbeat_lost(self, now_mono_ns: int) -> bool:
        timeout = self.config.estop_heartbeat_timeout
        if timeout <= 0:
            return False
        return self._heartbeat_ns is None or now_mono_ns - self._heartbeat_ns > timeout * NS

    def _resync(
        self, now_ros_ns: int, state: ExecutorState, message: str, *, reason: str, hold: np.ndarray | None = None
    ) -> None:
        """Drop every chunk and all ordering state; until a chunk observed after `now_ros_ns` arrives, report
        `state` and hold `hold` (None: position columns not commanded); motion then restarts from the measured
        position."""
        self._chunks.clear()
        self._min_stamp_ns = int(now_ros_ns)
        self._newest_stamp_ns = -(2**62)
        self._min_stamp_reason = reason
        self._continuous = False
        self._velocity_cmd[:] = 0.0
        self._waiting = (state, message)
        self._waiting_hold = None if hold is None else hold.copy()

    def _check_clock(self, now_ros_ns: int) -> None:
        last = self._last_ros_ns
        self._last_ros_ns = now_ros_ns if last is None else max(now_ros_ns, last)
        if last is not None and now_ros_ns < last - CLOCK_JUMP_TOLERANCE_NS:
            self.counters.clock_jumps += 1
            self._last_ros_ns = now_ros_ns
            jump = (last - now_ros_ns) / NS
            logger.warning("ROS clock jumped back by %.3f s: dropping every chunk", jump)
            self._resync(
                now_ros_ns,
                ExecutorState.IDLE,
                f"ROS clock jumped back {jump:.3f} s: waiting for a chunk observed after the jump",
                reason="clock jump",
                hold=self._command,
            )

    def _fault(self, now_ros_ns: int, message: str, hold: np.ndarray | None) -> Command | None:
        self.counters.faults += 1
        logger.error("executor fault: %s", message)
        self._resync(now_ros_ns, ExecutorState.FAULT, message, reason="fault", hold=hold)
        return self._safe(ExecutorState.FAULT, message, hold=hold)

    # -- output -------------------------------------------------------------------------------------------------
    def step(self, now_ros_ns: int, now_mono_ns: int) -> Command | None:
        """The command for this tick, or None when nothing is to be published. Never raises."""
        try:
            return self._step(now_ros_ns, now_mono_ns)
        except Exception as exc:  # the safety node must never die: an internal error holds instead
            logger.exception("executor tick failed")
            try:
                return self._fault(now_ros_ns, f"internal error: {type(exc).__name__}: {exc}", self._command)
            except Exception:  # even the safe path failed: say so and command nothing but a velocity stop
                self.state, self.message = ExecutorState.FAULT, f"internal error: {type(exc).__name__}"
                values = np.where(self._velocity, 0.0, np.nan)
                return Command(values, np.full_like(values, np.nan), motion=False) if self._velocity.any() else None

    def safe_command(self) -> Command | None:
        """The command to publish last, at shutdown: hold the last commanded position, velocity 0."""
        return self._safe(self.state, self.message, hold=self._command)

    def _safe(self, state: ExecutorState, message: str, *, hold: np.ndarray | None) -> Command | None:
        """Velocity columns 0; position columns at `hold` (NaN or None: not commanded)."""
        self.state, self.message = state, message
        self._continuous = False
        self._velocity_cmd[:] = 0.0
        values = np.full(len(self._index), np.nan)
        if hold is not None:
            values[self._position] = hold[self._position]
        values[self._velocity] = 0.0
        self._command = values
        if np.all(np.isnan(values)):
            return None
        targets = np.where(self._velocity, self._measured, values)
        return Command(values.copy(), targets, motion=False)

    def _step(self, now_ros_ns: int, now_mono_ns: int) -> Command | None:  # noqa: PLR0911 - one return per rule
        cfg = self.config
        self._check_clock(now_ros_ns)
        # 1. e-stop
        if self._estop:
            return self._safe(ExecutorState.ESTOP, "e-stop engaged", hold=None)
        if self._heartbeat_lost(now_mono_ns):
            if self._waiting is None or self._waiting[0] is not ExecutorState.ESTOP:
                self._resync(now_ros_ns, ExecutorState.ESTOP, "e-stop heartbeat lost", reason="e-stop heartbeat loss")
            silent = "never received" if self._heartbeat_ns is None else "silent"
            return self._safe(
                ExecutorState.ESTOP,
                f"e-stop heartbeat {silent} (estop_heartbeat_timeout {cfg.estop_heartbeat_timeout} s)",
                hold=None,
            )
        if self._in_grace(now_ros_ns, now_mono_ns):
            grace = f"waiting up to {cfg.estop_grace} s from the first chunk for a latched e-stop (none heard yet)"
            return self._safe(ExecutorState.IDLE, grace, hold=None)
        hold_last = self._command if cfg.hold_on_stale else None
        # 3. measured state
        problem = self._state_problem(now_mono_ns)
        if problem is not None:
            return self._safe(ExecutorState.WAITING_FOR_STATE, problem, hold=hold_last)
        # 4. a fresh chunk
        raw = self._target(now_ros_ns, now_mono_ns)
        if raw is None:
            if self._waiting is not None:
                state, message = self._waiting
                return self._safe(state, message, hold=self._waiting_hold)
            if cfg.hold_on_stale:
                return self._safe(ExecutorState.HOLDING, "no fresh chunk: holding the last command", hold=hold_last)
            return self._safe(ExecutorState.STOPPED, "no fresh chunk: position joints not commanded", hold=None)
        # 5. units
        target = self._convert_units(raw)
        requested = target.copy()
        seeded = not self._continuous
        reference = self._measured if seeded or self._command is None else self._command
        # 6. position limits
        positions = self._position
        target[positions] = self._clip_position(target[positions], positions)
        if seeded:
            outside = self._outside_limits(self._measured)
            if outside:
                return self._fault(now_ros_ns, f"measured position outside the limits: {outside}", hold=None)
        # 7. step and acceleration limits, over the ROS time since the last command (one period for a seed, at most two)
        period = cfg.control_period
        dt = period if seeded else min(max((now_ros_ns - self._last_command_ns) / NS, 0.0), 2 * period)
        command = self._limit_motion(target, reference, seeded, dt)
        # 8. tracking watchdog
        if self._tracking is not None:
            error = np.abs(np.where(positions, command - self._measured, 0.0))
            bad = np.flatnonzero(error > self._tracking)
            if bad.size:
                names = [self.config.joint_names[i] for i in bad]
                worst = bad[np.argmax(error[bad])]
                message = (
                    f"tracking error: {names} measured {error[worst]:.3f} from the command "
                    f"(max_tracking_error {self._tracking[worst]:g})"
                )
                return self._fault(now_ros_ns, message, hold=self._measured.copy())
        # 9. publish
        self.counters.commands += 1
        self.counters.clamped += int(not np.allclose(command, requested, rtol=0.0, atol=1e-12))
        self._command, self._last_command_ns = command, now_ros_ns
        self._continuous = True
        self.state, self.message = ExecutorState.EXECUTING, ""
        targets = np.where(self._velocity, self._measured + command * period, command)
        return Command(command.copy(), targets, motion=True)

    def _state_problem(self, now_mono_ns: int) -> str | None:
        if not self._is_measured.any():
            return None
        names = self.config.measured_names
        seen = np.isfinite(self._measured_at) & self._is_measured
        if not np.all(seen[self._is_measured]):
            missing = [names[i] for i in np.flatnonzero(self._is_measured & ~seen)]
            return f"waiting for a measured position of {missing}"
        bad = np.flatnonzero(self._is_measured & np.isnan(self._measured))
        if bad.size:
            return f"measured position of {[names[i] for i in bad]} is not finite"
        age = (now_mono_ns - self._measured_at[self._is_measured].min()) / NS
        if age > self.config.max_state_age:
            return f"measured joint state is {age:.3f} s old (max_state_age {self.config.max_state_age} s)"
        return None

    def _convert_units(self, raw: np.ndarray) -> np.ndarray:
        cfg = self.config
        target = raw.copy()
        target[self._binary] = np.where(raw[self._binary] > cfg.binary_threshold, 1.0, 0.0)
        velocity = target[self._velocity]
        if cfg.velocity_input_bound > 0:
            velocity = _scale_to_bound(velocity, cfg.velocity_input_bound)
        target[self._velocity] = velocity * cfg.velocity_scale
        return target

    def _clip_position(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        lower = None if self._lower is None else self._lower[mask]
        upper = None if self._upper is None else self._upper[mask]
        if lower is None and upper is None:
            return values
        return np.clip(values, lower, upper)

    def _outside_limits(self, measured: np.ndarray) -> dict[str, float]:
        """Step-limited columns whose measured position is farther outside the position limits than one step: no
        command can be both inside the limits and within a step of where the arm is."""
        if self._max_velocity is None or (self._lower is None and self._upper is None):
            return {}
        step = self._max_velocity * self.config.control_period
        below = np.zeros_like(measured) if self._lower is None else self._lower - measured
        above = np.zeros_like(measured) if self._upper is None else measured - self._upper
        far = self._position & self._is_measured & (np.maximum(below, above) > step + 1e-12)
        return {self.config.joint_names[i]: round(float(measured[i]), 6) for i in np.flatnonzero(far)}

    def _limit_motion(self, target: np.ndarray, reference: np.ndarray, seeded: bool, dt: float) -> np.ndarray:
        """Steps (position columns) and velocities (velocity columns) bounded, from `reference`, over `dt` s of
        ROS time (the robot's time: in a sim slower than real time a tick moves less)."""
        period = self.config.control_period
        command = target.copy()
        pos, vel = self._position, self._velocity
        previous_velocity = np.zeros_like(target) if seeded else self._velocity_cmd.copy()
        # Position columns: a step of at most max_velocity * dt, and a velocity change of max_acceleration * dt.
        limited = pos & self._is_measured
        if limited.any() and (self._max_velocity is not None or self._max_acceleration is not None):
            if dt <= 0.0:  # no time has passed on the robot's clock: no motion
                command[limited] = reference[limited]
            else:
                error = np.where(limited, target - reference, 0.0)
                velocity = error / dt
                if self._max_acceleration is not None:
                    # Never faster than what can still stop at the target (braking at max_acceleration over ticks
                    # of dt), so an acceleration-limited joint does not overshoot and ring around its target.
                    accel = self._max_acceleration
                    stop_speed = accel * (np.sqrt(dt * dt / 4.0 + 2.0 * np.abs(error) / accel) - dt / 2.0)
                    velocity = np.clip(velocity, -stop_speed, stop_speed)
                    change = accel * dt
                    velocity = np.clip(velocity, previous_velocity - change, previous_velocity + change)
                if self._max_velocity is not None:
                    velocity = np.clip(velocity, -self._max_velocity, self._max_velocity)
                command[limited] = reference[limited] + velocity[limited] * dt
                command[pos] = self._clip_position(command[pos], pos)  # hard limits win (accel overshoot at a limit)
                self._velocity_cmd[limited] = (command[limited] - reference[limited]) / dt
        # Velocity columns: bounded as a whole vector (direction kept), then kept inside the position limits.
        if vel.any():
            v = command[vel]
            if self._max_velocity is not None:
                v = _scale_to_bound(v, self._max_velocity[vel])
            if self._max_acceleration is not None:
                change = self._max_acceleration[vel] * max(dt, 0.0)
                v = previous_velocity[vel] + _scale_to_bound(v - previous_velocity[vel], np.maximum(change, 1e-300))
            measured = self._measured[vel]
            known = np.isfinite(measured)
            if self._upper is not None:
                room = (self._upper[vel] - measured) / period
                v = np.where(known, np.minimum(v, np.maximum(room, 0.0)), v)
            if self._lower is not None:
                room = (self._lower[vel] - measured) / period
                v = np.where(known, np.maximum(v, np.minimum(room, 0.0)), v)
            command[vel] = v
            self._velocity_cmd[vel] = v
        return command

    def _target(self, now_ros_ns: int, now_mono_ns: int) -> np.ndarray | None:
        fresh_after = now_mono_ns - int(self.config.stale_timeout * NS)
        live = [c for c in self._chunks if c.arrival_ns >= fresh_after]
        if not live or live[-1].at(now_ros_ns) is None:
            return None
        strategy = self.config.strategy
        if strategy is Strategy.RTC:  # the newest chunk whose switch row has come (the previous one until then)
            started = [c for c in live if c.start_ns <= now_ros_ns and c.at(now_ros_ns) is not None]
            return (started or live)[-1].at(now_ros_ns)
        if strategy is Strategy.BROKER or len(live) == 1:
            return live[-1].at(now_ros_ns)
        if strategy is Strategy.ENSEMBLE:
            votes = [(c, a) for c in live if (a := c.at(now_ros_ns)) is not None]
            weights = np.exp(-self.config.ensemble_decay * np.arange(len(votes)))
            return weights @ np.stack([a for _, a in votes]) / weights.sum()
        # Blend: out_k = (1 - alpha_k) * out_{k-1} + alpha_k * chunk_k, alpha_k rising from 0 at chunk k's
        # arrival, so at every arrival the output continues exactly from what was being produced.
        self._prune_blend(now_mono_ns)
        out = live[0].at(now_ros_ns, hold_end=True)
        for chunk in live[1:]:
            alpha = self._alpha(chunk, now_mono_ns)
            out = (1.0 - alpha) * out + alpha * chunk.at(now_ros_ns, hold_end=True)
        return out

    def _alpha(self, chunk: _Chunk, now_mono_ns: int) -> float:
        return min(1.0, max(0.0, (now_mono_ns - chunk.arrival_ns) / (self.config.blend_time * NS)))

    def _prune_blend(self, now_mono_ns: int) -> None:
        """Chunks before one that is fully blended in no longer contribute."""
        if self.config.strategy is not Strategy.BLEND:
            return
        for i in range(len(self._chunks) - 1, 0, -1):
            if self._alpha(self._chunks[i], now_mono_ns) >= 1.0:
                del self._chunks[:i]
                return
