"""`make demo`: a synthetic robot and a policy node as separate processes over real DDS, watched by a monitor.

Prints live topic rates and latencies, checks every chunk against the joint reading it was predicted from, then
stops the nodes with SIGINT (as Ctrl-C would) and prints a summary. Exit code 0 only if chunks arrived, every
chunk was consistent, and every node exited cleanly.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import signal
import subprocess
import sys
import time
from functools import partial

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState

from openpi_msgs.msg import ActionChunk, PolicyStatus
from openpi_ros.graphs import NodeSpec, demo_graph
from openpi_ros.messages import chunk_to_array, from_time
from openpi_ros.policy_runner import Status
from openpi_ros.processes import local_graph_env, stop_on_signals, stop_processes
from openpi_ros.qos import SENSOR_QOS


@dataclasses.dataclass
class TopicStats:
    arrivals: list[float] = dataclasses.field(default_factory=list)

    def rate(self, since: float = 0.0) -> float:
        times = [t for t in self.arrivals if t >= since]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


class DemoMonitor(Node):
    """Subscribes to everything the demo graph publishes and checks the chunks."""

    def __init__(self, namespace: str, cameras: list[str]) -> None:
        super().__init__("demo_monitor")
        ns = f"/{namespace.strip('/')}" if namespace else ""
        self.topics: dict[str, TopicStats] = collections.defaultdict(TopicStats)
        self.ages: list[float] = []  # s: chunk arrival minus the stamp of the observation it came from
        self.inference: list[float] = []
        self.errors: list[str] = []
        self.status: PolicyStatus | None = None
        self._joints_by_stamp: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.chunks_checked = 0
        for cam in cameras:
            self.create_subscription(
                Image, f"{ns}/{cam}/image_raw", partial(self._on_any, f"{cam}/image_raw"), SENSOR_QOS
            )
        self.create_subscription(JointState, f"{ns}/joint_states", self._on_joints, 50)
        self.create_subscription(ActionChunk, f"{ns}/action_chunk", self._on_chunk, 10)
        self.create_subscription(PolicyStatus, f"{ns}/policy_status", self._on_status, 10)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_any(self, topic: str, _msg: object) -> None:
        self.topics[topic].arrivals.append(self._now())

    def _on_joints(self, msg: JointState) -> None:
        self.topics["joint_states"].arrivals.append(self._now())
        key = from_time(msg.header.stamp)
        self._joints_by_stamp[key] = np.asarray(msg.position, dtype=np.float32)
        while len(self._joints_by_stamp) > 500:
            self._joints_by_stamp.popitem(last=False)

    def _on_status(self, msg: PolicyStatus) -> None:
        self.status = msg

    def _on_chunk(self, msg: ActionChunk) -> None:
        now = self._now()
        self.topics["action_chunk"].arrivals.append(now)
        self.ages.append(now - from_time(msg.header.stamp) * 1e-9)
        self.inference.append(msg.inference_latency)
        try:
            actions = chunk_to_array(msg)
        except ValueError as exc:
            self.errors.append(f"chunk {msg.sequence}: {exc}")
            return
        key = from_time(msg.header.stamp)
        state = self._joints_by_stamp.get(key)
        if state is None:
            return  # the joint message may have been published before this monitor subscribed
        # The hold policy must command exactly the observed joint positions, at every step of the chunk.
        if not np.array_equal(actions, np.broadcast_to(state, actions.shape)):
            self.errors.append(f"chunk {msg.sequence}: actions differ from the joint state stamped {key} ns")
        self.chunks_checked += 1


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _start(graph: list[NodeSpec], env: dict[str, str]) -> list[subprocess.Popen]:
    return [subprocess.Popen(spec.command(), env=env) for spec in graph]


def _state_name(state: int) -> str:
    try:
        return Status(state).name
    except ValueError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to run after the first chunk")
    parser.add_argument("--rate", type=float, default=10.0, help="policy rate in Hz")
    parser.add_argument("--namespace", default="demo")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds to wait for the first chunk")
    args = parser.parse_args(argv)

    env = local_graph_env()

    graph = demo_graph(namespace=args.namespace, rate=args.rate)
    cameras = list(graph[0].parameters["camera_names"])
    print(
        f"openpi-ros demo: starting {', '.join(s.name for s in graph)} (ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')})"
    )
    print("  policy: 'hold' (commands the observed joint positions); the real models come with the model issues")

    with stop_on_signals(signal.SIGINT) as stop:  # Ctrl-C ends the run early; the summary is still printed
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        procs = _start(graph, env)
        monitor = DemoMonitor(args.namespace, cameras)
        t_start = time.monotonic()
        first_chunk: float | None = None
        next_print = 0.0
        died: list[str] = []
        try:
            while not stop.is_set():
                rclpy.spin_once(monitor, timeout_sec=0.05)
                now = time.monotonic()
                died = [spec.name for spec, p in zip(graph, procs, strict=True) if p.poll() is not None]
                if died:
                    print(f"error: node(s) exited early: {', '.join(died)}", file=sys.stderr)
                    break
                if first_chunk is None and monitor.topics["action_chunk"].arrivals:
                    first_chunk = now
                    print(f"  first chunk after {now - t_start:.1f} s (discovery + start-up)")
                if first_chunk is None and now - t_start > args.startup_timeout:
                    print(f"error: no action chunk within {args.startup_timeout} s", file=sys.stderr)
                    break
                if first_chunk is not None and now >= next_print:
                    next_print = now + 1.0
                    since = monitor._now() - 2.0
                    state = _state_name(monitor.status.state) if monitor.status else "-"
                    camera_rate = monitor.topics[f"{cameras[0]}/image_raw"].rate(since)
                    print(
                        f"  t={now - first_chunk:4.1f}s  camera {camera_rate:5.1f} Hz"
                        f"  joints {monitor.topics['joint_states'].rate(since):5.1f} Hz"
                        f"  chunks {monitor.topics['action_chunk'].rate(since):5.1f} Hz"
                        f"  obs->chunk p50 {_pct(monitor.ages[-20:], 50) * 1e3:6.1f} ms"
                        f"  infer p50 {_pct(monitor.inference[-20:], 50) * 1e3:5.2f} ms  status {state}",
                        flush=True,
                    )
                if first_chunk is not None and now - first_chunk >= args.duration:
                    break
        finally:
            codes = stop_processes(procs)
            monitor.destroy_node()
            rclpy.try_shutdown()

    n_chunks = len(monitor.topics["action_chunk"].arrivals)
    print("\nsummary")
    for topic in sorted(monitor.topics):
        stats = monitor.topics[topic]
        print(f"  {topic:28s} {len(stats.arrivals):6d} msgs  {stats.rate():6.1f} Hz")
    p50, p99 = _pct(monitor.ages, 50) * 1e3, _pct(monitor.ages, 99) * 1e3
    print(f"  obs->chunk latency          p50 {p50:.1f} ms  p99 {p99:.1f} ms  (incl. the wait for the next tick)")
    print(f"  inference                   p50 {_pct(monitor.inference, 50) * 1e3:.3f} ms")
    print(f"  chunks checked against joint state: {monitor.chunks_checked}/{n_chunks}, errors: {len(monitor.errors)}")
    for err in monitor.errors[:5]:
        print(f"    {err}")
    print(f"  node exit codes: {dict(zip([s.name for s in graph], codes, strict=True))}")
    ok = n_chunks > 0 and monitor.chunks_checked > 0 and not monitor.errors and not died and all(c == 0 for c in codes)
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
