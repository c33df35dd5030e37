"""The protocol every policy source implements: in-process models and remote policy servers alike.

An observation is a flat or nested dict of numpy arrays and strings, as openpi's robot adapters expect, e.g.::

    {"images": {"cam_high": uint8[H, W, 3], ...}, "state": float32[D], "prompt": "fold the towel"}

`infer` returns at least ``{"actions": float32[horizon, action_dim]}``; implementations may add more keys
(timing, state echo, ...). A policy whose `metadata` has ``"rtc"`` also takes the optional real-time-chunking keys
`RTC_KEYS` (`openpi_core.policies.policy` says what they hold).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["DELAY_KEY", "HORIZON_KEY", "PREFIX_KEY", "RTC_KEYS", "PolicyClient"]

PREFIX_KEY, DELAY_KEY, HORIZON_KEY = RTC_KEYS = ("rtc_prefix_actions", "rtc_inference_delay", "rtc_execution_horizon")


@runtime_checkable
class PolicyClient(Protocol):
    """Maps one observation to a chunk of future actions."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Return a dict with ``"actions"``: float32 array of shape [horizon, action_dim]."""
        ...

    def reset(self) -> None:
        """Forget any per-episode state (action buffers, rng streams)."""
        ...

    @property
    def metadata(self) -> dict[str, Any]:
        """Static facts about the policy (config name, horizon, action_dim, ...)."""
        ...
