"""ROS overhead of the policy loop: `python -m openpi_ros.benchmark [--seconds 20] [--json]`.

1. **Policy node**: this process publishes 3 cameras of 480×640 rgb8 at 30 Hz and 14 joints at 50 Hz (an ALOHA);
   a policy node (hold policy, so the model costs ~0.02 ms) in its own process assembles, resizes to 224×224,
   infers at 10 Hz and publishes chunks. Latency = chunk arrival here − the observation's stamp − the node's
   reported inference time: what ROS transport, image conversion, synchronisation and publishing cost. The policy
   node's CPU use comes from /proc.
2. **Chunk executor** at 50 Hz: this process sends a 50-step chunk every 100 ms; the executor's command periods are
   measured by the executor itself (`ExecutorStatus.jitter_*`: |period − 20 ms|) and at arrival here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from openpi_core.robots import registry
from openpi_msgs.msg import ActionChunk, ExecutorStatus, PolicyStatus
from openpi_ros.dds import apply_large_data_profile
from openpi_ros.graphs import NodeSpec
from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.messages import from_time, make_action_chunk, to_time
from openpi_ros.processes import stop_processes

NS = 1_000_000_000


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def _spin_for(executor: SingleThreadedExecutor, seconds: float, tick: object = None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if tick is not None:
            tick()
        executor.spin_once(timeout_sec=0.001)


def _start(spec: NodeSpec) -> subprocess.Popen:
    return subprocess.Popen(spec.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench_policy_node(node: Node, executor: SingleThreadedExecutor, seconds: float) -> dict[str, float]:
    robot = registry.get("aloha")
    spec = NodeSpec(
        "policy_node",
        "openpi_ros.policy_node",
        "policy_node",
        {"robot": "aloha", "policy": "hold", "rate": 10.0, "image_size": 224},
        namespace="bench_policy",
    )
    proc = _start(spec)
    try:
        cams = [node.create_publisher(Image, f"/bench_policy/{t}", 5) for t in robot.camera_topics]
        joints = node.create_publisher(JointState, "/bench_policy/joint_states", 10)
        samples: list[float] = []
        inference: list[float] = []

        def on_chunk(msg: ActionChunk) -> None:
            arrival = node.get_clock().now().nanoseconds
            samples.append((arrival - from_time(msg.header.stamp)) / NS - msg.inference_latency)
            inference.append(msg.inference_latency)

        node.create_subscription(ActionChunk, "/bench_policy/action_chunk", on_chunk, 50)
        statuses: list[PolicyStatus] = []
        node.create_subscription(PolicyStatus, "/bench_policy/policy_status", statuses.append, 50)
        rng = np.random.default_rng(0)
        frames = [Image(**rgb_to_image_fields(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))) for _ in cams]
        state = list(np.linspace(-0.5, 0.5, 14))
        next_cam, next_joint = 0.0, 0.0

        def publish() -> None:
            nonlocal next_cam, next_joint
            now = time.monotonic()
            stamp = to_time(node.get_clock().now().nanoseconds)
            if now >= next_cam:
                for pub, frame in zip(cams, frames, strict=True):
                    frame.header.stamp = stamp
                    pub.publish(frame)
                next_cam = now + 1 / 30
            if now >= next_joint:
                msg = JointState(name=list(robot.joint_names), position=state)
                msg.header.stamp = stamp
                joints.publish(msg)
                next_joint = now + 1 / 50

        deadline = time.monotonic() + 60
        while not samples and time.monotonic() < deadline:
            _spin_for(executor, 0.1, publish)
        if not samples:
            raise RuntimeError("the policy node published no chunk within 60 s")
        samples.clear()
        inference.clear()
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        _spin_for(executor, seconds, publish)
        cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        stop_processes([proc])
    return {
        "chunks": len(samples),
        "chunk_rate_hz": len(samples) / seconds,
        "overhead_ms_p50": 1e3 * _pct(samples, 50),
        "overhead_ms_p99": 1e3 * _pct(samples, 99),
        "inference_ms_p50": 1e3 * _pct(inference, 50),
        "policy_node_cpu_percent": 100 * cpu,
        "dropped_observations": int(statuses[-1].dropped_observations) if statuses else -1,
    }


def bench_executor(node: Node, executor: SingleThreadedExecutor, seconds: float) -> dict[str, float]:
    names = list(registry.get("aloha").joint_names)
    spec = NodeSpec(
        "chunk_executor",
        "openpi_ros.chunk_executor_node",
        "chunk_executor",
        {"joint_names": names, "control_rate": 50.0, "strategy": "blend"},
        namespace="bench_exec",
    )
    proc = _start(spec)
    try:
        chunks = node.create_publisher(ActionChunk, "/bench_exec/action_chunk", 10)
        arrivals: list[int] = []
        statuses: list[ExecutorStatus] = []
        node.create_subscription(
            JointState, "/bench_exec/joint_commands", lambda _m: arrivals.append(time.monotonic_ns()), 500
        )
        node.create_subscription(ExecutorStatus, "/bench_exec/executor_status", statuses.append, 10)
        sequence = 0
        next_chunk = 0.0
        actions = np.tile(np.linspace(-0.5, 0.5, 14, dtype=np.float32), (50, 1))

        def publish() -> None:
            nonlocal sequence, next_chunk
            if time.monotonic() >= next_chunk:
                stamp = node.get_clock().now().nanoseconds
                chunks.publish(
                    make_action_chunk(
                        actions,
                        stamp_ns=stamp,
                        joint_names=names,
                        control_period=0.02,
                        config_name="bench",
                        prompt="",
                        inference_latency=0.0,
                        sequence=sequence,
                    )
                )
                sequence += 1
                next_chunk = time.monotonic() + 0.1

        deadline = time.monotonic() + 30
        while len(arrivals) < 10 and time.monotonic() < deadline:
            _spin_for(executor, 0.1, publish)
        if len(arrivals) < 10:
            raise RuntimeError("the executor published no commands within 30 s")
        arrivals.clear()
        statuses.clear()
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        _spin_for(executor, seconds, publish)
        cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        stop_processes([proc])
    periods = np.diff(np.asarray(arrivals)) / 1e6
    deviation = np.abs(periods - 20.0)
    inside = [s for s in statuses if s.jitter_p50 == s.jitter_p50]  # skip NaN (window not filled yet)
    return {
        "commands": len(arrivals),
        "command_rate_hz": len(arrivals) / seconds,
        "arrival_jitter_ms_p50": _pct(deviation, 50),
        "arrival_jitter_ms_p99": _pct(deviation, 99),
        "node_jitter_ms_p50": 1e3 * inside[-1].jitter_p50 if inside else float("nan"),
        "node_jitter_ms_p99": 1e3 * inside[-1].jitter_p99 if inside else float("nan"),
        "executor_cpu_percent": 100 * cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per part (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    apply_large_data_profile()  # this process publishes the camera frames
    rclpy.init()
    node = Node("openpi_benchmark")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        policy = bench_policy_node(node, executor, args.seconds)
        execution = bench_executor(node, executor, args.seconds)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    result = {"cpus": os.cpu_count(), "policy_node": policy, "executor": execution}
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"policy node (3 cameras 480x640 rgb8 @ 30 Hz, 14 joints @ 50 Hz, hold policy @ 10 Hz, {os.cpu_count()} CPUs):"
    )
    print(
        f"  obs -> chunk overhead beyond model time: p50 {policy['overhead_ms_p50']:.2f} ms, "
        f"p99 {policy['overhead_ms_p99']:.2f} ms ({policy['chunks']} chunks, {policy['chunk_rate_hz']:.1f} Hz); "
        f"policy node CPU {policy['policy_node_cpu_percent']:.0f}% of one core, "
        f"{policy['dropped_observations']} observations dropped"
    )
    print("chunk executor @ 50 Hz (14 joints, blend):")
    print(
        f"  period jitter |T - 20 ms|: in the node p50 {execution['node_jitter_ms_p50']:.3f} ms, "
        f"p99 {execution['node_jitter_ms_p99']:.3f} ms; "
        f"at the subscriber p50 {execution['arrival_jitter_ms_p50']:.3f} ms, "
        f"p99 {execution['arrival_jitter_ms_p99']:.3f} ms; {execution['command_rate_hz']:.1f} Hz; "
        f"executor CPU {execution['executor_cpu_percent']:.0f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
