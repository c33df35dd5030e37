"""Helpers for tests that spin rclpy executors."""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

__all__ = ["DISCOVERY_TIMEOUT", "Probe", "python_module", "spin_until"]

DISCOVERY_TIMEOUT = 20.0


def spin_until(executor: object, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Spin `executor` until `predicate()` is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class Probe:
    """Test-side node: publishes inputs, records outputs."""

    def __init__(self, context: object, ns: str) -> None:
        self.node = Node("probe", context=context)
        self.ns = ns
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = collections.defaultdict(list)
        self.arrivals: dict[str, list[float]] = collections.defaultdict(list)
        self._pubs: dict[str, object] = {}

    def listen(self, msg_type: type, topic: str, depth: int = 200) -> list:
        def _on(msg: object) -> None:
            self.received[topic].append(msg)
            self.arrivals[topic].append(time.monotonic())

        self.node.create_subscription(msg_type, f"/{self.ns}/{topic}", _on, depth)
        return self.received[topic]

    def pub(self, msg_type: type, topic: str) -> object:
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(msg_type, f"/{self.ns}/{topic}", 10)
        return self._pubs[topic]

    def now(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def spin(self, seconds: float, every: object = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if every is not None:
                every()
            self.executor.spin_once(timeout_sec=0.01)

    def wait(self, predicate: object, what: str, timeout: float = DISCOVERY_TIMEOUT) -> None:
        spin_until(self.executor, predicate, timeout, what)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
