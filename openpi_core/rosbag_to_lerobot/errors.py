"""The converter's errors; each message names the bag, and the topic, time and field where they apply."""

from __future__ import annotations

from pathlib import Path

from openpi_core.errors import OpenpiError

__all__ = ["ConversionError", "MappingError"]

NS = 1_000_000_000


class MappingError(OpenpiError, ValueError):
    """The mapping file is invalid; the message names the file and the key."""


class ConversionError(OpenpiError):
    """A bag cannot be converted; the message names the bag, and the topic, time and field where they apply."""

    def __init__(
        self,
        bag: str | Path,
        message: str,
        *,
        topic: str | None = None,
        stamp_ns: int | None = None,
        field: str | None = None,
    ) -> None:
        self.bag, self.topic, self.stamp_ns, self.field = str(bag), topic, stamp_ns, field
        where = [f"bag {self.bag}"]
        if topic is not None:
            where.append(f"topic {topic}")
        if field is not None:
            where.append(f"field {field}")
        if stamp_ns is not None:
            where.append(f"t={stamp_ns / NS:.6f} s")
        super().__init__(f"{', '.join(where)}: {message}")

    @classmethod
    def from_text(cls, text: str) -> ConversionError:
        """An error whose text (from a worker process) already names the bag."""
        error = cls.__new__(cls)
        error.bag, error.topic, error.stamp_ns, error.field = "", None, None, None
        Exception.__init__(error, text)
        return error
