"""Policies: the one-method protocol that robots call, and its implementations."""

from openpi_core.policies.hold import HoldPositionPolicy
from openpi_core.policies.policy import Policy
from openpi_core.policies.protocol import PolicyClient

__all__ = ["HoldPositionPolicy", "Policy", "PolicyClient"]
