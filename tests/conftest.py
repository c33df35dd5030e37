"""Shared test setup: every test session gets its own DDS domain, loopback-only discovery, a private log dir and
an XLA compilation cache of its own.

The variables are set before anything imports rclpy, and child processes inherit them, so parallel CI jobs and
a developer's running robot cannot hear each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# 1..100: valid Fast DDS domains with free ports. pytest-xdist's workers (gw0, gw1, ...) of one session share
# their parent's pid and take neighbouring domains, so no two workers share one.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw"):
    _WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["ROS_DOMAIN_ID"] = str(1 + (os.getppid() * _WORKERS + int(_WORKER[2:])) % 100)
else:
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="openpi_ros_test_logs_"))
os.environ.pop("ROS_STATIC_PEERS", None)
# One XLA compilation cache for the session, shared with every child process (training runs, servers, nodes): the
# tests compile the same tiny models many times over, and a fresh folder per session keeps each run hermetic.
_XLA_CACHE = None if "JAX_COMPILATION_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="openpi_test_xla_cache_")
if _XLA_CACHE is not None:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA's CPU backend without LLVM optimisation: compiling, not running, is most of a tiny model's test time (a third
# less here); IEEE semantics are kept (no fast math), so results are those of the default level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _XLA_CACHE is not None:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


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
