"""What every node's `main()` does: read list parameters, build the node, spin it until SIGINT/SIGTERM, answer
`--help`, and tear down within a deadline with a final safe command (`FinalCommand`)."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import rclpy
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from openpi_core.errors import OpenpiError
from openpi_ros.dds import apply_large_data_profile, reuse_large_buffers
from openpi_ros.processes import stop_on_signals

__all__ = [
    "FINAL_COMMAND_ACK_S",
    "TEARDOWN_DEADLINE_S",
    "FinalCommand",
    "NodeStartError",
    "optional_list",
    "run_node",
    "set_realtime_priority",
]

# Seconds from a stop signal to process exit at the most: if native teardown (executor, DDS participant) has not
# finished by then, run_node prints every thread's stack and ends the process with its exit code anyway.
TEARDOWN_DEADLINE_S = 1.4

# Seconds the final command waits to be acknowledged by reliable subscribers before teardown.
FINAL_COMMAND_ACK_S = 0.2


def optional_list(node: Node, name: str) -> list:
    """The value of a list parameter declared without a default (``Parameter.Type.*_ARRAY``), or [] when unset."""
    try:
        return list(node.get_parameter(name).value or ())
    except ParameterUninitializedException:
        return []


class NodeStartError(OpenpiError):
    """A node could not start (the reason was logged); `run_node` exits with status 1 without a traceback."""


@runtime_checkable
class FinalCommand(Protocol):
    """A node that must publish a safe command (hold, zero velocity) before it is torn down."""

    def publish_final_command(self) -> None: ...


def set_realtime_priority(priority: int) -> str:
    """Run the calling thread (and every thread it starts afterwards) under SCHED_FIFO at `priority` (1-99), so a
    control loop's timer preempts ordinary work on a busy machine. Returns '' on success, else why not (no
    permission: CAP_SYS_NICE, or an rtprio limit in /etc/security/limits.conf, or `--cap-add SYS_NICE` in Docker)."""
    low, high = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not low <= priority <= high:
        raise ValueError(f"parameter 'realtime_priority': {priority} is outside SCHED_FIFO's {low}..{high}")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        return "not permitted (needs CAP_SYS_NICE or an rtprio limit)"
    except OSError as exc:
        return str(exc)
    return ""


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
    reuse_large_buffers()
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
        except (ValueError, OpenpiError) as exc:  # a bad parameter, a failed configure: say it once
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
