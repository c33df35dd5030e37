"""Small helpers shared by the nodes: time conversion, QoS profiles, ActionChunk packing, the node main loop."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from openpi_core.errors import OpenpiError
from openpi_msgs.msg import ActionChunk

__all__ = [
    "ESTOP_QOS",
    "ESTOP_VOLATILE_QOS",
    "LARGE_DATA_PROFILE",
    "SENSOR_QOS",
    "FinalCommand",
    "NodeStartError",
    "apply_large_data_profile",
    "chunk_to_array",
    "from_time",
    "make_action_chunk",
    "optional_list",
    "run_node",
    "stop_on_signals",
    "stop_processes",
    "to_time",
]

# Seconds from a stop signal to process exit at the most: if native teardown (executor, DDS participant) has not
# finished by then, run_node prints every thread's stack and ends the process with its exit code anyway.
TEARDOWN_DEADLINE_S = 1.4
# Seconds the final command waits to be acknowledged by reliable subscribers before teardown.
FINAL_COMMAND_ACK_S = 0.2

# Keep only the newest sample; best effort subscribers match both reliable and best-effort publishers.
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
# E-stop: the last sample is kept by the publisher and delivered to subscribers that join later (a restarted
# executor, or one still in discovery). Publishers of std_msgs/Bool on `estop` should use this profile.
ESTOP_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# A TRANSIENT_LOCAL reader does not match a volatile writer, so the executor also listens with this one.
ESTOP_VOLATILE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


LARGE_DATA_PROFILE = Path(__file__).with_name("fastdds_large_data.xml")
_PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
_MIN_SHM_FREE = 64 * 2**20


def apply_large_data_profile() -> bool:
    """Use `fastdds_large_data.xml` (4 MB shared-memory segments, so camera frames arrive) for this process's DDS
    participant, unless a profile is already configured, the middleware is not Fast DDS, or /dev/shm is too small.
    Call before `rclpy.init`. Returns whether the profile was applied."""
    if any(os.environ.get(var) for var in _PROFILE_VARS):
        return False
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") not in ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return False
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return False
    if stats.f_bavail * stats.f_frsize < _MIN_SHM_FREE:
        logging.getLogger(__name__).warning(
            "/dev/shm has under 64 MiB free: keeping Fast DDS's default transports (large images may be dropped)"
        )
        return False
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LARGE_DATA_PROFILE)
    return True


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


def optional_list(node: Node, name: str) -> list:
    """The value of a list parameter declared without a default (``Parameter.Type.*_ARRAY``), or [] when unset."""
    try:
        return list(node.get_parameter(name).value or ())
    except ParameterUninitializedException:
        return []


def to_time(stamp_ns: int) -> Time:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def from_time(stamp: Time) -> int:
    """builtin_interfaces/Time as integer nanoseconds (exact; float seconds would lose ~240 ns at epoch scale)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def make_action_chunk(
    actions: np.ndarray,
    *,
    stamp_ns: int,
    joint_names: Sequence[str],
    control_period: float,
    config_name: str,
    prompt: str,
    inference_latency: float,
    sequence: int,
) -> ActionChunk:
    actions = np.ascontiguousarray(actions, dtype=np.float32)
    if actions.ndim != 2:
        raise ValueError(f"actions: expected [horizon, action_dim], got shape {actions.shape}")
    if joint_names and len(joint_names) != actions.shape[1]:
        raise ValueError(f"joint_names: {len(joint_names)} names for action_dim {actions.shape[1]}")
    msg = ActionChunk()
    msg.header.stamp = to_time(stamp_ns)
    msg.joint_names = list(joint_names)
    msg.horizon, msg.action_dim = int(actions.shape[0]), int(actions.shape[1])
    msg.actions = actions.ravel()  # rclpy float32[] fields accept numpy float32 arrays without a copy to list
    msg.control_period = float(control_period)
    msg.config_name = config_name
    msg.prompt = prompt
    msg.inference_latency = float(inference_latency)
    msg.sequence = int(sequence)
    return msg


def chunk_to_array(msg: ActionChunk) -> np.ndarray:
    """The chunk's actions as float32 [horizon, action_dim]; raises ValueError naming the field on mismatch."""
    actions = np.asarray(msg.actions, dtype=np.float32)
    if actions.size != msg.horizon * msg.action_dim:
        raise ValueError(
            f"actions: {actions.size} values, expected horizon*action_dim = {msg.horizon * msg.action_dim}"
        )
    if msg.joint_names and len(msg.joint_names) != msg.action_dim:
        raise ValueError(f"joint_names: {len(msg.joint_names)} names for action_dim {msg.action_dim}")
    return actions.reshape(msg.horizon, msg.action_dim)


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


class NodeStartError(Exception):
    """A node could not start (the reason was logged); `run_node` exits with status 1 without a traceback."""


@runtime_checkable
class FinalCommand(Protocol):
    """A node that must publish a safe command (hold, zero velocity) before it is torn down."""

    def publish_final_command(self) -> None: ...


def run_node(make_node: Callable[[], Node], args: Sequence[str] | None = None) -> int:
    """Init rclpy, spin the node until SIGINT/SIGTERM or an external shutdown, and tear down within
    `TEARDOWN_DEADLINE_S`; returns 0, or 1 when the node could not be built (the reason is logged in one line
    for a bad parameter)."""
    argv = list(sys.argv[1:] if args is None else args)
    own = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in own or "--help" in own:  # answer, never start a node
        module = sys.modules.get(getattr(make_node, "__module__", ""))
        print((module.__doc__ if module and module.__doc__ else "a ROS 2 node").strip())
        print("\nRun with: --ros-args -p <parameter>:=<value> [-r <topic>:=<remapped>] ...")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(__name__)
    apply_large_data_profile()
    code = 0
    with stop_on_signals(signal.SIGINT, signal.SIGTERM, then_ignore=True) as stop:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = None
        executor = SingleThreadedExecutor()
        try:
            node = make_node()
            executor.add_node(node)
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            pass
        except (ValueError, OpenpiError, NodeStartError) as exc:  # a bad parameter, a failed configure: say it once
            log.error("%s", exc)
            code = 1
        except Exception:
            log.exception("node failed")
            code = 1
        finally:
            _teardown(node, executor, code)
    _exit_if_threads_remain(code)
    return code


def _teardown(node: Node | None, executor: SingleThreadedExecutor, code: int) -> None:
    """Final command, then native teardown under a deadline: a stall there never keeps the process alive."""
    watchdog = threading.Timer(TEARDOWN_DEADLINE_S, _exit_now, args=(code,))
    watchdog.daemon = True
    watchdog.start()
    try:
        if isinstance(node, FinalCommand):
            try:
                node.publish_final_command()
            except Exception:
                logging.getLogger(__name__).exception("final command failed")
        executor.shutdown(timeout_sec=0.5)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    finally:
        watchdog.cancel()


def _exit_if_threads_remain(code: int) -> None:
    """A worker thread still inside native code (an in-process JAX inference that outlived its bounded wait) aborts
    the process when the interpreter finalises under it ("FATAL: exception not rethrown"): leave without that."""
    others = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread() and t.is_alive() and not isinstance(t, threading.Timer)
    ]
    if others:
        logging.getLogger(__name__).info("threads still running at exit (%s): exiting without finalisation", others)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_now(code: int) -> None:
    print(f"teardown stalled for over {TEARDOWN_DEADLINE_S} s: exiting now; thread stacks:", file=sys.stderr)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
