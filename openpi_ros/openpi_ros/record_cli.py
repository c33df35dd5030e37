"""`openpi-record start|stop|discard`: drive the recorder node's services from a shell with no `ros2` CLI.

    openpi-record start --task "stack the red cup on the blue one"   # opens the next episode's bag
    openpi-record stop                                              # closes and keeps it
    openpi-record discard                                           # closes and deletes it (a failed demo)

``--recorder`` names the node (default ``/recorder``; e.g. ``/aloha/recorder`` under a namespace). Prints the
recorder's answer (the bag folder, the message count) and exits 0, or 1 with the reason (no recorder found within
``--timeout`` s, no episode recording, ...). The same services from a full ROS 2 install::

    ros2 service call /recorder/start_episode openpi_msgs/srv/StartEpisode "{task: 'stack the cups'}"
    ros2 service call /recorder/stop_episode openpi_msgs/srv/StopEpisode "{discard: false}"
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import rclpy
from rclpy.node import Node

from openpi_core.errors import OpenpiError
from openpi_msgs.srv import StartEpisode, StopEpisode

__all__ = ["call_recorder", "main"]

ACTIONS = ("start", "stop", "discard")


class RecorderCallError(OpenpiError):
    """The recorder could not be reached or refused the request (the message says why)."""


def call_recorder(node: Node, recorder: str, action: str, *, task: str = "", timeout: float = 10.0) -> Any:
    """Call `recorder`'s start/stop service from `node` (spun here); returns the response, raises
    `RecorderCallError` when no recorder answers within `timeout` s or it reports a failure."""
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {ACTIONS}")
    recorder = "/" + recorder.strip("/")
    kind, service = (StartEpisode, "start_episode") if action == "start" else (StopEpisode, "stop_episode")
    client = node.create_client(kind, f"{recorder}/{service}")
    try:
        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise RecorderCallError(f"no recorder at {recorder} answered within {timeout:.0f} s (is it running?)")
            rclpy.spin_once(node, timeout_sec=0.05)
        request = (
            StartEpisode.Request(task=task) if action == "start" else StopEpisode.Request(discard=action == "discard")
        )
        future = client.call_async(request)
        while not future.done():
            if time.monotonic() > deadline:
                raise RecorderCallError(f"{recorder}/{service} did not reply within {timeout:.0f} s")
            rclpy.spin_once(node, timeout_sec=0.05)
        response = future.result()
    finally:
        node.destroy_client(client)
    if not response.success:
        raise RecorderCallError(f"{recorder}: {response.message}")
    return response


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="openpi-record", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--task", default="", help="start: what the demonstration does (default: the node's task)")
    parser.add_argument("--recorder", default="/recorder", help="the recorder node's full name")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the recorder")
    args = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("openpi_record_cli")
    try:
        response = call_recorder(node, args.recorder, args.action, task=args.task, timeout=args.timeout)
    except RecorderCallError as exc:
        print(f"openpi-record: error: {exc}", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(response.message + (f" -> {response.bag_path}" if response.bag_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
