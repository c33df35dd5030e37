"""Child processes and signals: stop a group of node processes within a deadline; turn SIGINT/SIGTERM into an
event."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["local_graph_env", "stop_on_signals", "stop_processes"]

_GRAPH_ENV_DEFAULTS = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",  # a demo or benchmark graph never talks to the network's
    "ROS_LOG_DIR": str(Path(tempfile.gettempdir()) / "openpi_ros_logs"),
}


def local_graph_env() -> dict[str, str]:
    """The environment for node processes started from here (and set in this process too, for its own node):
    discovery on this host only and ROS logs in the temp folder, unless the caller's environment says otherwise."""
    for key, value in _GRAPH_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return dict(os.environ)


def stop_processes(procs: Sequence[subprocess.Popen], timeout: float = 10.0) -> list[int]:
    """SIGINT every running node process (as Ctrl-C would), wait up to `timeout` s each, kill stragglers; returns
    the exit codes in order."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


@contextlib.contextmanager
def stop_on_signals(*signums: int, then_ignore: bool = False) -> Iterator[threading.Event]:
    """Within the block, the given signals only set the yielded Event; the previous handlers come back after
    (or, with `then_ignore`, the signals are ignored from then on).

    Letting SIGINT raise KeyboardInterrupt (Python's default) can interrupt rclpy in the middle of converting a
    message in C++, which then surfaces as a RuntimeError and a non-zero exit. Pair with
    `rclpy.init(signal_handler_options=SignalHandlerOptions.NO)` and spin in short slices until the Event is set.
    A process that is about to exit should pass `then_ignore=True`: a second Ctrl-C (a launcher forwarding SIGINT
    after the terminal already sent one) would otherwise hit Python's finalisation, where SIGINT kills outright.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _signum, _frame: stop.set()) for sig in signums}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if then_ignore else handler)
