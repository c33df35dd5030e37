"""A policy that asks the robot to stay where it is: the safe baseline and the demo's stand-in for a model."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from openpi_core.errors import InvalidObservationError

__all__ = ["HoldPositionPolicy"]


class HoldPositionPolicy:
    """Returns the observed state repeated `horizon` times.

    It validates the observation exactly as a model policy must (a present, finite, 1-D state), so the code paths
    around it (observation assembly, chunk publishing, safety checks) are exercised for real.
    """

    def __init__(self, *, horizon: int = 50, action_dim: int | None = None, config_name: str = "hold") -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if action_dim is not None and action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self._horizon = horizon
        self._action_dim = action_dim
        self._config_name = config_name

    @property
    def metadata(self) -> dict[str, Any]:
        return {"config_name": self._config_name, "horizon": self._horizon, "action_dim": self._action_dim}

    def reset(self) -> None:
        """Nothing is kept between calls."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        if "state" not in obs:
            raise InvalidObservationError("state", "missing")
        state = np.asarray(obs["state"], dtype=np.float32)
        if state.ndim != 1 or state.size == 0:
            raise InvalidObservationError("state", f"expected a non-empty 1-D array, got shape {state.shape}")
        if not np.all(np.isfinite(state)):
            raise InvalidObservationError("state", "contains NaN or Inf")
        if self._action_dim is not None and state.shape[0] != self._action_dim:
            raise InvalidObservationError("state", f"expected {self._action_dim} values, got {state.shape[0]}")
        actions = np.broadcast_to(state, (self._horizon, state.shape[0])).copy()
        return {
            "actions": actions,
            "state": state,
            "policy_timing": {"infer_ms": (time.perf_counter() - start) * 1e3},
        }
