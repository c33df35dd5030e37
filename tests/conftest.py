"""Shared test setup: every test session gets its own DDS domain, loopback-only discovery and a private log dir.

The variables are set before anything imports rclpy, and child processes inherit them, so parallel CI jobs and
a developer's running robot cannot hear each other.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)  # 1..100: valid Fast DDS domains with free ports
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="openpi_ros_test_logs_"))
os.environ.pop("ROS_STATIC_PEERS", None)


@pytest.fixture
def ros_context() -> Iterator[object]:
    """An initialised rclpy Context of its own, shut down after the test."""
    import rclpy  # noqa: PLC0415 - imported after the ROS_* variables above are set
    from rclpy.context import Context  # noqa: PLC0415

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start processes (real nodes); on teardown stop them with SIGINT, then kill what is left."""
    procs: list[subprocess.Popen] = []

    def _spawn(cmd: list[str], **kwargs: object) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(2)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
