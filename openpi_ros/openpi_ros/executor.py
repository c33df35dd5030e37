"""Turn action chunks into joint commands at the control rate, safely (no ROS types here).

Chunks are aligned by their stamp (the observation time): at time `now`, row ``(now - stamp) / control_period`` of
a chunk is the action meant for now (rows are interpolated linearly), so the time the policy spent computing the
chunk is skipped rather than replayed late. Strategies:

- ``broker``: open-loop playback of the newest chunk (openpi's action-chunk broker, time-aligned);
- ``ensemble``: ACT's temporal ensembling: every chunk that covers `now` votes, with weight ``exp(-decay * i)``
  where i = 0 is the oldest chunk;
- ``blend``: the newest chunk is cross-faded in over `blend_time` seconds from the chunk being executed.

Safety, in this order, on every command: the target must be finite; it is clipped to the joint limits; the step
from the last command (or, at the start, from the measured position) is clamped to ``max_velocity * dt``. With
step clamping configured, nothing is commanded before a measured position is known (the first command cannot
jump). A chunk that fails validation is rejected whole and never used. When no chunk is fresh (the newest arrived
more than `stale_timeout` ago, or all have run out) the watchdog either holds the last commanded position or
stops publishing. An e-stop stops all commands until released, and after a release only a chunk that arrives
after the release is executed.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["ChunkExecutor", "ChunkRejected", "ExecutorConfig", "ExecutorState", "SafetyLimits", "Strategy"]

NS = 1_000_000_000


class Strategy(enum.Enum):
    BROKER = "broker"
    ENSEMBLE = "ensemble"
    BLEND = "blend"


class ExecutorState(enum.IntEnum):
    """Mirrors openpi_msgs/ExecutorStatus STATE_* constants."""

    IDLE = 0  # no chunk yet
    EXECUTING = 1
    HOLDING = 2  # watchdog: holding the last commanded position
    STOPPED = 3  # watchdog: publishing nothing
    ESTOP = 4
    WAITING_FOR_STATE = 5  # a chunk is ready but the measured position (needed to clamp the first step) is not


class ChunkRejected(ValueError):  # noqa: N818 - a normal outcome, not a fault
    """A chunk that is not executed; the message names the field."""


def _vector(name: str, values: Sequence[float] | None, n: int) -> np.ndarray | None:
    if values is None or len(values) == 0:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"SafetyLimits.{name}: expected {n} values (one per joint), got {arr.size}")
    if np.isnan(arr).any():
        raise ValueError(f"SafetyLimits.{name}: contains NaN")
    return arr


@dataclasses.dataclass(frozen=True)
class SafetyLimits:
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    max_velocity: tuple[float, ...] = ()
    """Per joint, units per second; bounds the step between consecutive commands."""


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    joint_names: tuple[str, ...]
    strategy: Strategy = Strategy.BLEND
    control_period: float = 0.02
    ensemble_decay: float = 0.01
    blend_time: float = 0.2
    stale_timeout: float = 0.5
    """Seconds since the newest chunk arrived after which it is no longer executed."""
    max_chunk_age: float = 1.0
    """A chunk whose observation stamp is older than this when it arrives is rejected."""
    hold_on_stale: bool = True
    """Watchdog: True holds the last commanded position, False stops publishing."""
    limits: SafetyLimits = SafetyLimits()

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if n == 0 or len(set(self.joint_names)) != n:
            raise ValueError(f"ExecutorConfig.joint_names: need distinct names, got {self.joint_names}")
        for field in ("control_period", "blend_time", "stale_timeout", "max_chunk_age"):
            if not getattr(self, field) > 0:
                raise ValueError(f"ExecutorConfig.{field} must be > 0, got {getattr(self, field)}")
        if self.ensemble_decay < 0:
            raise ValueError(f"ExecutorConfig.ensemble_decay must be >= 0, got {self.ensemble_decay}")
        lower = _vector("lower", self.limits.lower, n)
        upper = _vector("upper", self.limits.upper, n)
        velocity = _vector("max_velocity", self.limits.max_velocity, n)
        if lower is not None and upper is not None and not np.all(lower < upper):
            raise ValueError("SafetyLimits: every lower limit must be below its upper limit")
        if velocity is not None and not np.all(velocity > 0):
            raise ValueError("SafetyLimits.max_velocity: must be > 0")


@dataclasses.dataclass(frozen=True)
class _Chunk:
    actions: np.ndarray  # float64 [horizon, n_joints], in the executor's joint order
    stamp_ns: int
    period_ns: int
    arrival_ns: int

    def at(self, now_ns: int) -> np.ndarray | None:
        """The action for `now` (rows interpolated), or None when `now` is past the last row."""
        t = max(0.0, (now_ns - self.stamp_ns) / self.period_ns)
        last = self.actions.shape[0] - 1
        if t > last:
            return None
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


class ChunkExecutor:
    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        n = len(config.joint_names)
        self._lower = _vector("lower", config.limits.lower, n)
        self._upper = _vector("upper", config.limits.upper, n)
        self._max_velocity = _vector("max_velocity", config.limits.max_velocity, n)
        self._index = {name: i for i, name in enumerate(config.joint_names)}
        self._chunks: list[_Chunk] = []
        self._measured: np.ndarray | None = None
        self._last_command: np.ndarray | None = None
        self._last_command_ns: int | None = None
        self._estop = False
        self._released_ns = -1
        self.state = ExecutorState.IDLE
        self.message = "no chunk received yet"
        self.counters = ExecutorCounters()

    # -- inputs -------------------------------------------------------------------------------------------------
    def update_measured(self, names: Sequence[str], positions: Sequence[float]) -> None:
        """Measured joint positions (joints not configured here are ignored; NaN readings are not used)."""
        measured = np.full(len(self._index), np.nan) if self._measured is None else self._measured.copy()
        for name, value in zip(names, positions, strict=False):
            i = self._index.get(name)
            if i is not None and math.isfinite(value):
                measured[i] = value
        self._measured = measured

    def set_estop(self, engaged: bool, now_ns: int) -> None:
        if engaged and not self._estop:
            self._chunks.clear()
        if not engaged and self._estop:
            self._released_ns = now_ns
            self._last_command = None  # re-seed from the measured position: the arm may have been moved by hand
        self._estop = engaged

    def add_chunk(
        self, actions: np.ndarray, *, stamp_ns: int, control_period: float, joint_names: Sequence[str], now_ns: int
    ) -> None:
        """Validate and queue a chunk; raises `ChunkRejected` (and the chunk is dropped) on any problem."""
        self.counters.chunks_received += 1
        try:
            chunk = self._validate(actions, stamp_ns, control_period, joint_names, now_ns)
        except ChunkRejected as exc:
            self.counters.chunks_rejected += 1
            self.message = str(exc)
            raise
        keep_after = now_ns - int(self.config.stale_timeout * NS)
        self._chunks = [c for c in self._chunks if c.at(now_ns) is not None and c.arrival_ns >= keep_after]
        self._chunks.append(chunk)

    def _validate(
        self, actions: np.ndarray, stamp_ns: int, control_period: float, joint_names: Sequence[str], now_ns: int
    ) -> _Chunk:
        if self._estop:
            raise ChunkRejected("e-stop engaged: chunk ignored")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ChunkRejected(f"actions: expected [horizon, action_dim], got shape {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ChunkRejected("actions: contains NaN or Inf")
        if not (math.isfinite(control_period) and control_period > 0):
            raise ChunkRejected(f"control_period: must be > 0, got {control_period}")
        names = list(joint_names)
        if len(names) != actions.shape[1]:
            raise ChunkRejected(f"joint_names: {len(names)} names for action_dim {actions.shape[1]}")
        missing = [n for n in self.config.joint_names if n not in names]
        if missing:
            raise ChunkRejected(f"joint_names: chunk has no column for joints {missing}")
        age = (now_ns - stamp_ns) / NS
        if age > self.config.max_chunk_age:
            raise ChunkRejected(
                f"header.stamp: observation is {age:.3f} s old (max_chunk_age {self.config.max_chunk_age})"
            )
        if age < -self.config.max_chunk_age:
            raise ChunkRejected(f"header.stamp: {-age:.3f} s in the future (clocks out of sync?)")
        if stamp_ns <= self._released_ns:
            raise ChunkRejected("header.stamp: observation predates the e-stop release")
        if self._chunks and stamp_ns <= self._chunks[-1].stamp_ns:
            raise ChunkRejected("header.stamp: not newer than the chunk being executed (out of order)")
        columns = [names.index(n) for n in self.config.joint_names]
        return _Chunk(actions[:, columns], int(stamp_ns), round(control_period * NS), int(now_ns))

    # -- output -------------------------------------------------------------------------------------------------
    def step(self, now_ns: int) -> np.ndarray | None:
        """The command for `now` (float64 per joint), or None when nothing must be published."""
        if self._estop:
            return self._set(ExecutorState.ESTOP, "e-stop engaged", None)
        target = self._target(now_ns)
        if target is None:
            if self.state in (ExecutorState.IDLE, ExecutorState.WAITING_FOR_STATE) and self._last_command is None:
                return None
            if not self.config.hold_on_stale or self._last_command is None:
                return self._set(ExecutorState.STOPPED, "no fresh chunk: not publishing", None)
            return self._set(ExecutorState.HOLDING, "no fresh chunk: holding the last command", self._last_command)
        requested = target
        if self._lower is not None or self._upper is not None:
            target = np.clip(target, self._lower, self._upper)
        if self._max_velocity is not None:
            previous = self._last_command
            if previous is None:
                if self._measured is None or np.isnan(self._measured).any():
                    return self._set(ExecutorState.WAITING_FOR_STATE, "waiting for a measured position", None)
                previous, dt = self._measured, self.config.control_period
            else:
                dt = min((now_ns - self._last_command_ns) / NS, 2 * self.config.control_period)
            max_step = self._max_velocity * max(dt, 0.0)
            target = np.clip(target, previous - max_step, previous + max_step)
        self._last_command, self._last_command_ns = target, now_ns
        self.counters.commands += 1
        self.counters.clamped += int(not np.array_equal(target, requested))
        return self._set(ExecutorState.EXECUTING, "", target)

    def _set(self, state: ExecutorState, message: str, command: np.ndarray | None) -> np.ndarray | None:
        self.state, self.message = state, message
        return command

    def _target(self, now_ns: int) -> np.ndarray | None:
        fresh_after = now_ns - int(self.config.stale_timeout * NS)
        live = [(c, a) for c in self._chunks if c.arrival_ns >= fresh_after and (a := c.at(now_ns)) is not None]
        if not live:
            return None
        strategy = self.config.strategy
        if strategy is Strategy.BROKER or len(live) == 1:
            return live[-1][1]
        if strategy is Strategy.ENSEMBLE:
            weights = np.exp(-self.config.ensemble_decay * np.arange(len(live)))
            stacked = np.stack([a for _, a in live])
            return weights @ stacked / weights.sum()
        newest, previous = live[-1], live[-2]
        alpha = min(1.0, max(0.0, (now_ns - newest[0].arrival_ns) / (self.config.blend_time * NS)))
        return (1.0 - alpha) * previous[1] + alpha * newest[1]
