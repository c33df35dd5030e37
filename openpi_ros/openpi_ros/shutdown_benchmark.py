"""Start -> traffic -> SIGINT, over and over: do the nodes always stop, cleanly and in time?

    python -m openpi_ros.shutdown_benchmark                    # 300 cycles of each node (about 20 minutes)
    python -m openpi_ros.shutdown_benchmark --cycles 20 --node chunk_executor

Each cycle starts the node as its own process, feeds it over DDS until it does its job once (the chunk executor
publishes a command for a chunk; the policy node publishes a chunk for camera + joints), sends SIGINT as Ctrl-C
would, and times the exit. A cycle counts as a hang when the node is still alive after 10 s (it is then killed).
Prints, per node: cycles, exit codes, hangs, exits over the 2 s bound, and the SIGINT-to-exit time p50/p99/max.
Exit status 0 only if every cycle of every node exited 0 within the bound.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool

from openpi_msgs.msg import ActionChunk
from openpi_ros.graphs import NodeSpec
from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.messages import from_time, make_action_chunk, to_time
from openpi_ros.processes import stop_on_signals
from openpi_ros.qos import ESTOP_QOS

BOUND_S = 2.0
HANG_S = 10.0
TRAFFIC_TIMEOUT_S = 30.0
NODES = ("chunk_executor", "policy_node")


def _spec(node: str, namespace: str) -> NodeSpec:
    if node == "chunk_executor":
        params = {"joint_names": ["a", "b"], "lower_limits": [-1.0, -1.0], "upper_limits": [1.0, 1.0]}
        return NodeSpec(
            "chunk_executor", "openpi_ros.chunk_executor_node", "chunk_executor", params, namespace=namespace
        )
    params = {"robot": "custom", "camera_names": ["cam"], "joint_names": ["a", "b"], "image_size": 0, "rate": 20.0}
    return NodeSpec("policy_node", "openpi_ros.policy_node", "policy_node", params, namespace=namespace)


class Feeder(Node):
    """Publishes what the node needs and counts what it answers."""

    def __init__(self, namespace: str) -> None:
        super().__init__("shutdown_benchmark")
        ns = f"/{namespace}"
        self.joints = self.create_publisher(JointState, f"{ns}/joint_states", 10)
        self.chunks = self.create_publisher(ActionChunk, f"{ns}/action_chunk", 10)
        self.camera = self.create_publisher(Image, f"{ns}/cam/image_raw", 5)
        # A latched e-stop state, as a robot's e-stop node publishes it: a (re)started executor hears it on
        # discovery and need not wait out its `estop_grace`.
        self.estop = self.create_publisher(Bool, f"{ns}/estop", ESTOP_QOS)
        self.estop.publish(Bool(data=False))
        self.answers = 0
        self.since_ns = 0  # answers stamped before this (a previous cycle's last command, late) do not count
        self.create_subscription(JointState, f"{ns}/joint_commands", self._count, 10)
        self.create_subscription(ActionChunk, f"{ns}/action_chunk", self._count_chunk, 10)
        self.frame = Image(**rgb_to_image_fields(np.zeros((8, 8, 3), np.uint8)))

    def _count(self, msg: JointState) -> None:
        if from_time(msg.header.stamp) >= self.since_ns:
            self.answers += 1

    def _count_chunk(self, msg: ActionChunk) -> None:
        if msg.config_name != "feeder" and from_time(msg.header.stamp) >= self.since_ns:  # the node's, not ours
            self.answers += 1

    def feed(self) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = to_time(now)
        msg = JointState(name=["a", "b"], position=[0.1, 0.2])
        msg.header.stamp = stamp
        self.joints.publish(msg)
        self.frame.header.stamp = stamp
        self.camera.publish(self.frame)
        self.chunks.publish(
            make_action_chunk(
                np.full((10, 2), 0.1, np.float32),
                stamp_ns=now,
                joint_names=["a", "b"],
                control_period=0.02,
                config_name="feeder",
                prompt="",
                inference_latency=0.0,
                sequence=0,
            )
        )


OK_OUTCOMES = ("ok", "ok, teardown ended by the deadline")


def cycle(
    node: str, namespace: str, feeder: Feeder, env: dict[str, str], log: Callable[[str], None]
) -> tuple[str, float]:
    """One start -> traffic -> SIGINT; returns (outcome, seconds from SIGINT to exit)."""
    feeder.since_ns = feeder.get_clock().now().nanoseconds
    proc = subprocess.Popen(
        _spec(node, namespace).command(),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        start, seen = time.monotonic(), feeder.answers
        while feeder.answers == seen:
            if proc.poll() is not None:
                log(proc.stdout.read())
                return f"exited early ({proc.returncode})", 0.0
            if time.monotonic() - start > TRAFFIC_TIMEOUT_S:
                return "no traffic", 0.0
            feeder.feed()
            rclpy.spin_once(feeder, timeout_sec=0.02)
        stop = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "hang (killed)", HANG_S
        elapsed = time.monotonic() - stop
        output = proc.stdout.read()
        if code != 0:
            log(output)
            return f"exit {code}", elapsed
        return OK_OUTCOMES[1 if "teardown stalled" in output else 0], elapsed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=300, help="cycles per node (default 300)")
    parser.add_argument("--node", choices=NODES, action="append", help="only this node (repeatable; default both)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="openpi_shutdown_"))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    failures = 0
    with stop_on_signals(signal.SIGINT) as interrupted:
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        try:
            for node in args.node or NODES:
                namespace = f"shutdown_{node}"
                feeder = Feeder(namespace)
                outcomes: collections.Counter[str] = collections.Counter()
                times: list[float] = []
                for i in range(args.cycles):
                    if interrupted.is_set():
                        break
                    outcome, elapsed = cycle(
                        node, namespace, feeder, env, lambda text: print(text[-2000:], file=sys.stderr)
                    )
                    outcomes[outcome] += 1
                    if outcome in OK_OUTCOMES:
                        times.append(elapsed)
                        if elapsed > BOUND_S:
                            outcomes["over the 2 s bound"] += 1
                    if (i + 1) % 50 == 0:
                        print(f"  {node}: {i + 1} cycles, {dict(outcomes)}", flush=True)
                arr = np.asarray(times) if times else np.zeros(1)
                failures += sum(n for k, n in outcomes.items() if k not in OK_OUTCOMES)
                print(
                    f"{node}: {len(times)} of {args.cycles} cycles exited 0: {dict(outcomes)}; "
                    f"SIGINT to exit p50 {np.median(arr):.3f} s, p99 {np.percentile(arr, 99):.3f} s, "
                    f"max {arr.max():.3f} s",
                    flush=True,
                )
                failures += args.cycles - sum(outcomes[k] for k in OK_OUTCOMES)
                feeder.destroy_node()
        finally:
            rclpy.try_shutdown()
    return 0 if failures == 0 and not interrupted.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
