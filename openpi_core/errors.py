"""Exceptions raised by openpi_core. Each message names the offending field."""

from __future__ import annotations

__all__ = ["InvalidObservationError", "OpenpiError"]


class OpenpiError(Exception):
    """Base class for errors raised by openpi_core."""


class InvalidObservationError(OpenpiError, ValueError):
    """An observation is missing a key, has the wrong shape, or holds non-finite values."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"observation field {field!r}: {reason}")
        self.field = field
        self.reason = reason
