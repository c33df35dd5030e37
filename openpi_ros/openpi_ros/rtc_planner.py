"""Real-time chunking on the policy node's side, without ROS: what the next request carries and when it is due.

The node keeps the last chunk it published. For a new observation stamped `s`, the prefix is that chunk resampled
(linear interpolation between rows) at ``s, s + p, s + 2p, ...`` (p: the control period) for as long as the chunk
lasts: exactly the rows the executor will play from the observation time on. The inference delay, in rows, is
``ceil(percentile(stamp -> publish latency) / p)`` over the recent chunks, so the model matches the rows that will
have run by the time its chunk arrives. The next request is due when the last chunk has no more than
``delay + margin_rows`` rows left, so its successor arrives before it runs out (the node's timer stays as an upper
bound on the time between requests).

`RtcPlanner` is shared between the ROS thread (`due`, `request`) and the inference worker (`record_chunk`): a lock
guards its state.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from typing import Any

import numpy as np

from openpi_core.policies.protocol import DELAY_KEY, HORIZON_KEY, PREFIX_KEY

__all__ = ["RtcConfig", "RtcPlanner"]


@dataclasses.dataclass(frozen=True)
class RtcConfig:
    control_period_ns: int
    """Time between chunk rows (the executor's playback period)."""
    delay_percentile: float = 90.0
    """Percentile of recent stamp -> publish latencies that sets the delay (higher: safer, less soft matching)."""
    execution_horizon: int = 0
    """Rows of the prefix matched (exactly up to the delay, softly after it); 0: all of them."""
    margin_rows: int = 5
    """The next chunk is requested when the last one has `delay + margin_rows` rows left."""
    window: int = 50
    """How many recent latencies the percentile is taken over."""

    def __post_init__(self) -> None:
        if self.control_period_ns <= 0:
            raise ValueError(f"control_period: must be > 0, got {self.control_period_ns} ns")
        if not 0.0 <= self.delay_percentile <= 100.0:
            raise ValueError(f"rtc_delay_percentile: must be in [0, 100], got {self.delay_percentile}")
        if self.execution_horizon < 0:
            raise ValueError(f"rtc_execution_horizon: must be >= 0 (0: the whole prefix), got {self.execution_horizon}")
        if self.margin_rows < 0:
            raise ValueError(f"rtc_margin_rows: must be >= 0, got {self.margin_rows}")
        if self.window < 1:
            raise ValueError(f"window: must be >= 1, got {self.window}")


class RtcPlanner:
    def __init__(self, config: RtcConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._actions: np.ndarray | None = None  # the last published chunk, [rows, action_dim]
        self._stamp_ns = 0  # its observation stamp: row i plays at stamp + i * period
        self._latencies: collections.deque[float] = collections.deque(maxlen=config.window)

    def record_chunk(self, actions: np.ndarray, stamp_ns: int, latency_s: float) -> None:
        """A chunk was published: `latency_s` from its observation stamp to its publication (ROS time)."""
        with self._lock:
            if self._actions is not None and stamp_ns < self._stamp_ns:
                return  # an older observation's chunk (cannot happen with one worker; never let it rewind)
            self._actions = np.asarray(actions, dtype=np.float32)
            self._stamp_ns = int(stamp_ns)
            if math.isfinite(latency_s) and latency_s >= 0:
                self._latencies.append(latency_s)

    def reset(self) -> None:
        """Forget the last chunk (deactivation, a clock jump): the next request carries no prefix."""
        with self._lock:
            self._actions = None

    def delay_rows(self) -> int:
        """Rows the executor plays between an observation and its chunk's arrival (0 until a chunk is measured)."""
        with self._lock:
            return self._delay_rows()

    def remaining_rows(self, now_ns: int) -> float:
        """Rows of the last chunk still to play at `now_ns` (0 when there is none or it has run out)."""
        with self._lock:
            return self._remaining_rows(now_ns)

    def due(self, now_ns: int) -> bool:
        """True when the next chunk should be requested now for it to arrive before the last one runs out."""
        with self._lock:
            if self._actions is None:
                return True
            return self._remaining_rows(now_ns) <= self._delay_rows() + self.config.margin_rows

    def request(self, stamp_ns: int) -> dict[str, Any]:
        """The RTC keys for an observation stamped `stamp_ns` ({} when no rows of the last chunk lie ahead of it)."""
        with self._lock:
            if self._actions is None:
                return {}
            rows = len(self._actions)
            first = (stamp_ns - self._stamp_ns) / self.config.control_period_ns  # fractional row at the stamp
            if not 0.0 <= first <= rows - 1:
                return {}
            count = math.floor(rows - 1 - first) + 1
            positions = first + np.arange(count)
            lower = np.clip(np.floor(positions).astype(int), 0, rows - 1)
            upper = np.minimum(lower + 1, rows - 1)
            frac = (positions - lower)[:, None].astype(np.float32)
            prefix = (1.0 - frac) * self._actions[lower] + frac * self._actions[upper]
            horizon = self.config.execution_horizon or count
            return {
                PREFIX_KEY: prefix.astype(np.float32),
                DELAY_KEY: min(self._delay_rows(), count),
                HORIZON_KEY: min(horizon, count),
            }

    def _remaining_rows(self, now_ns: int) -> float:
        if self._actions is None:
            return 0.0
        played = (now_ns - self._stamp_ns) / self.config.control_period_ns
        return max(0.0, len(self._actions) - played)

    def _delay_rows(self) -> int:
        if not self._latencies:
            return 0
        latency = float(np.percentile(np.fromiter(self._latencies, float), self.config.delay_percentile))
        return math.ceil(latency * 1e9 / self.config.control_period_ns - 1e-9)
