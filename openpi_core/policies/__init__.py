"""Policies: the one-method protocol that robots call, and its implementations.

`Policy` (and everything else that needs JAX) is imported on first use, so a robot that talks to a remote policy
server (`openpi_core.serving.client`) imports this package without loading JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from openpi_core.policies.hold import HoldPositionPolicy
from openpi_core.policies.protocol import PolicyClient

if TYPE_CHECKING:
    from openpi_core.policies.policy import Policy

__all__ = ["HoldPositionPolicy", "Policy", "PolicyClient"]

_LAZY = {"Policy": "openpi_core.policies.policy"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
