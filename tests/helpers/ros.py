"""Helpers for tests that spin rclpy executors."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pytest

__all__ = ["python_module", "spin_until"]


def spin_until(executor: object, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Spin `executor` until `predicate()` is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
