"""The policy node's own cost, and the chunk executor's jitter beside it: `python -m openpi_ros.benchmark`.

Per scenario (cameras, encoding, machine load) and path, this process publishes the cameras (480×640, rgb8 or JPEG)
at 30 Hz (30.3, so that their phase to the joints sweeps every value) and 14 ALOHA joints at 50 Hz; a policy node
(hold policy, so the model costs ~0.02 ms) and a chunk executor (ALOHA limits, 50 Hz, blend) run as processes of
their own, the executor executing the policy node's 10 Hz chunks. Measured, in one run for every combination:

- **overhead** = chunk arrival − the observation's stamp − the policy's own `infer` time: ROS transport,
  waiting for the trigger, image conversion, assembly and publishing (p50, p99);
- the policy node's **CPU** (from /proc, % of one core), **missed ticks** (gaps in the chunks' observation stamps
  beyond one period) and **dropped observations** (the node's own count of refused ones);
- the executor's **period jitter** |T − 20 ms| at a subscriber (p50, p99): a process of its own that does nothing
  else (it also receives the chunks), so the figures time the nodes and not this busy publisher; and the p99 the
  executor reports for its own publish times (`ExecutorStatus.jitter_p99`), the part before delivery.

Paths: ``new`` (the defaults: inference triggered by the joint reading, frames converted once when used, large
buffers reused) and ``old`` (``trigger: timer``, ``convert_on_arrival: true``, glibc's default allocator settings:
the node as it was). ``loaded`` runs a busy loop on every core meanwhile. The executor's control loop and the
command subscriber run under SCHED_FIFO (``--realtime-priority``, default 20; the executor's `realtime_priority`
parameter), as a robot's control path would; the policy node and this process run as ordinary processes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState

from openpi_core.robots import registry
from openpi_msgs.msg import ActionChunk, ExecutorStatus, PolicyStatus
from openpi_ros.dds import BUFFER_REUSE_ENV, apply_large_data_profile, reuse_large_buffers
from openpi_ros.graphs import NodeSpec, RobotGraphConfig, robot_graph
from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.messages import from_time, to_time
from openpi_ros.node_main import set_realtime_priority
from openpi_ros.processes import local_graph_env, stop_processes
from openpi_ros.qos import SENSOR_QOS
from openpi_ros.robots import resolve

NS = 1_000_000_000
# Cameras and arm run on independent clocks, so a frame may arrive at any phase of the joint readings; at exactly
# 30 and 50 Hz that phase would stay where the run started (and decide its figures). At 30.3 Hz it sweeps every
# value in 3.3 s, and every run sees all of them.
CAMERA_RATE, JOINT_RATE, POLICY_RATE, CONTROL_PERIOD_MS = 30.3, 50.0, 10.0, 20.0
CAMERA_SETS = {1: ("cam_high",), 3: None, 4: ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")}
PATHS = {
    "new": ({}, {}),
    "old": ({"trigger": "timer", "convert_on_arrival": True}, {BUFFER_REUSE_ENV: "0"}),
}
SCENARIOS = ("rgb8x1", "rgb8x3", "rgb8x4", "jpegx3")
LOADS = ("idle", "loaded")


@dataclasses.dataclass(frozen=True)
class Scenario:
    encoding: str  # rgb8 | jpeg
    cameras: int
    loaded: bool
    path: str

    @classmethod
    def parse(cls, text: str, load: str, path: str) -> Scenario:
        encoding, _, count = text.partition("x")
        if encoding not in ("rgb8", "jpeg") or not count.isdigit() or int(count) not in CAMERA_SETS:
            raise ValueError(f"scenario {text!r}: expected rgb8x<N> or jpegx<N> with N in {sorted(CAMERA_SETS)}")
        if load not in LOADS or path not in PATHS:
            raise ValueError(f"load {load!r} / path {path!r}: expected one of {LOADS} / {tuple(PATHS)}")
        return cls(encoding, int(count), load == "loaded", path)

    @property
    def name(self) -> str:
        return f"{self.encoding}x{self.cameras} {'loaded' if self.loaded else 'idle'} {self.path}"


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def camera_frame(seed: int) -> np.ndarray:
    """A 480×640 frame with a camera image's structure (smooth shading, edges, a little sensor noise), so that JPEG
    sizes and decode times are those of real footage rather than of white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(x / 90 + c) * np.cos(y / 70 - c) for c in range(3)], axis=-1)
    for _ in range(12):
        x0, y0, size = rng.integers(0, 600), rng.integers(0, 440), rng.integers(20, 120)
        base[y0 : y0 + size, x0 : x0 + size] = rng.uniform(0, 255, 3)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def graph(scenario: Scenario, namespace: str, realtime_priority: int = 0) -> list[NodeSpec]:
    """The ALOHA policy node and chunk executor with the scenario's cameras and path."""
    config = RobotGraphConfig(
        robot="aloha",
        namespace=namespace,
        rate=POLICY_RATE,
        compressed=scenario.encoding == "jpeg",
        realtime_priority=realtime_priority,
    )
    specs = robot_graph(config)
    cameras = CAMERA_SETS[scenario.cameras]
    policy = specs[0]
    params = dict(policy.parameters) | PATHS[scenario.path][0]
    if cameras is not None:
        params["camera_names"] = list(cameras)
        if scenario.encoding == "jpeg":
            params["compressed_cameras"] = list(cameras)
    return [dataclasses.replace(policy, parameters=params), *specs[1:]]


@contextlib.contextmanager
def busy_loops(enabled: bool) -> Iterator[None]:
    """One busy-looping process per core while the block runs (when `enabled`)."""
    count = (os.cpu_count() or 1) if enabled else 0
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


class Feeder:
    """Publishes the scenario's cameras at 30 Hz and the joints at 50 Hz, stamped at publication."""

    def __init__(self, node: Node, scenario: Scenario, namespace: str, camera_topics: Sequence[str]) -> None:
        self.node = node
        joints = registry.get("aloha").joint_names
        self.joints = node.create_publisher(JointState, f"/{namespace}/joint_states", 10)
        self.joint_msg = JointState(name=list(joints), position=[0.5 if "gripper" in j else 0.1 for j in joints])
        self.cameras: list[tuple[Any, Any]] = []
        for i, topic in enumerate(camera_topics):
            frame = camera_frame(i)
            if scenario.encoding == "jpeg":
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
                assert ok
                msg: Any = CompressedImage(format="jpeg", data=data.tobytes())
                pub = node.create_publisher(CompressedImage, f"/{namespace}/{topic}/compressed", SENSOR_QOS)
            else:
                msg = Image(**rgb_to_image_fields(frame))
                pub = node.create_publisher(Image, f"/{namespace}/{topic}", SENSOR_QOS)
            self.cameras.append((pub, msg))
        self.next_camera = self.next_joint = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now >= self.next_camera:
            stamp = to_time(self.node.get_clock().now().nanoseconds)
            for pub, msg in self.cameras:
                msg.header.stamp = stamp
                pub.publish(msg)
            self.next_camera = max(self.next_camera + 1 / CAMERA_RATE, now)
        if now >= self.next_joint:
            self.joint_msg.header.stamp = to_time(self.node.get_clock().now().nanoseconds)
            self.joints.publish(self.joint_msg)
            self.next_joint = max(self.next_joint + 1 / JOINT_RATE, now)


def _record(namespace: str, realtime_priority: int, receiving: Any, stop: Any, out: Any) -> None:
    """Child process: every chunk's (arrival, observation stamp, inference seconds), ROS time, and every command's
    monotonic arrival (ns) until `stop` is set, put on the queue `out`; `receiving` is set once both arrived. With
    `realtime_priority` it runs as a driver consuming the commands on a real-time thread would."""
    local_graph_env()
    if realtime_priority > 0:
        set_realtime_priority(realtime_priority)
    rclpy.init()
    node = Node("openpi_benchmark_recorder")
    chunks: list[tuple[int, int, float]] = []
    commands: list[int] = []

    def on_chunk(msg: ActionChunk) -> None:
        chunks.append((node.get_clock().now().nanoseconds, from_time(msg.header.stamp), msg.inference_latency))
        if commands:
            receiving.set()

    node.create_subscription(ActionChunk, f"/{namespace}/action_chunk", on_chunk, 50)
    node.create_subscription(
        JointState, f"/{namespace}/joint_commands", lambda _m: commands.append(time.monotonic_ns()), 500
    )
    try:
        while not stop.is_set():
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        out.put((chunks, commands))
        node.destroy_node()
        rclpy.try_shutdown()


class Recorder:
    """The graph's chunks and commands as a process that does nothing else receives them, so the figures time the
    nodes, not this process's own work (it publishes the cameras). Stamps are ROS (system) time and command
    arrivals the monotonic clock, both shared by every process on the host."""

    def __init__(self, namespace: str, realtime_priority: int = 0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop, self._out, self._receiving = ctx.Event(), ctx.Queue(), ctx.Event()
        args = (namespace, realtime_priority, self._receiving, self._stop, self._out)
        self._proc = ctx.Process(target=_record, args=args, daemon=True)
        self._proc.start()

    @property
    def receiving(self) -> bool:
        return self._receiving.is_set()

    def stop(self) -> tuple[list[tuple[int, int, float]], list[int]]:
        self._stop.set()
        try:
            chunks, commands = self._out.get(timeout=10)
        except Exception:
            chunks, commands = [], []
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
        return chunks, commands


def _spin_for(executor: SingleThreadedExecutor, seconds: float, tick: Callable[[], None]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick()
        executor.spin_once(timeout_sec=0.001)


def missed_ticks(stamps_ns: Sequence[int], period_ns: int) -> int:
    """Ticks without a chunk: every gap between consecutive chunks' observation stamps counts its periods past
    the first (a gap of 1.5 periods or more is one missed tick)."""
    gaps = np.diff(np.sort(np.asarray(stamps_ns, dtype=np.int64)))
    return int(np.maximum(np.round(gaps / period_ns) - 1, 0).sum())


def run_scenario(
    node: Node, executor: SingleThreadedExecutor, scenario: Scenario, seconds: float, realtime_priority: int = 0
) -> dict[str, Any]:
    namespace = f"bench_{scenario.encoding}{scenario.cameras}_{scenario.path}_{int(scenario.loaded)}"
    specs = graph(scenario, namespace, realtime_priority)
    env = local_graph_env() | PATHS[scenario.path][1]
    procs = [
        subprocess.Popen(s.command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in specs
    ]
    statuses: list[PolicyStatus] = []
    executor_statuses: list[ExecutorStatus] = []
    status_subs = [
        node.create_subscription(PolicyStatus, f"/{namespace}/policy_status", statuses.append, 50),
        node.create_subscription(ExecutorStatus, f"/{namespace}/executor_status", executor_statuses.append, 50),
    ]
    topics = resolve("aloha", cameras=CAMERA_SETS[scenario.cameras] or ()).camera_topics  # as the policy node's
    feeder = Feeder(node, scenario, namespace, topics)
    recorder = Recorder(namespace, realtime_priority)
    try:
        deadline = time.monotonic() + 90
        while not recorder.receiving and time.monotonic() < deadline:
            _spin_for(executor, 0.1, feeder)
        if not recorder.receiving:
            raise RuntimeError(f"{scenario.name}: no chunk or no command within 90 s")
        with busy_loops(scenario.loaded):
            _spin_for(executor, 1.0, feeder)  # the load settles
            statuses.clear()
            executor_statuses.clear()
            start, start_ns = node.get_clock().now().nanoseconds, time.monotonic_ns()
            cpu0, t0 = _cpu_seconds(procs[0].pid), time.monotonic()
            _spin_for(executor, seconds, feeder)
            cpu = (_cpu_seconds(procs[0].pid) - cpu0) / (time.monotonic() - t0)
            end, end_ns = node.get_clock().now().nanoseconds, time.monotonic_ns()
        realtime = os.sched_getscheduler(procs[1].pid) == os.SCHED_FIFO
    finally:
        chunks, commands = recorder.stop()
        stop_processes(procs)
        for sub in status_subs:
            node.destroy_subscription(sub)
        for pub, _ in feeder.cameras:
            node.destroy_publisher(pub)
        node.destroy_publisher(feeder.joints)
    chunks = [c for c in chunks if start <= c[1] <= end]
    commands = [t for t in commands if start_ns <= t <= end_ns]
    overhead = [(arrival - stamp) / NS - inference for arrival, stamp, inference in chunks]
    stamps = [stamp for _, stamp, _ in chunks]
    deviation = np.abs(np.diff(np.asarray(commands)) / 1e6 - CONTROL_PERIOD_MS)
    dropped = [s.dropped_observations for s in statuses]
    inside = [s for s in executor_statuses if s.jitter_p99 == s.jitter_p99]  # NaN before its window fills
    return {
        "scenario": scenario.name,
        "chunks": len(stamps),
        "overhead_ms_p50": 1e3 * _pct(overhead, 50),
        "overhead_ms_p99": 1e3 * _pct(overhead, 99),
        "policy_node_cpu_percent": 100 * cpu,
        "missed_ticks": missed_ticks(stamps, round(NS / POLICY_RATE)),
        "dropped_observations": int(dropped[-1] - dropped[0]) if len(dropped) > 1 else 0,
        "executor_jitter_ms_p50": _pct(deviation, 50),
        "executor_jitter_ms_p99": _pct(deviation, 99),
        # the executor's own figure (its publish times, the last 5 s): what delivery adds is the difference
        "executor_node_jitter_ms_p99": 1e3 * inside[-1].jitter_p99 if inside else float("nan"),
        "executor_realtime": realtime,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per run (default 15)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"default {','.join(SCENARIOS)}")
    parser.add_argument("--loads", default=",".join(LOADS), help="idle, loaded or both (default)")
    parser.add_argument("--paths", default="old,new", help="old, new or both (default)")
    parser.add_argument(
        "--realtime-priority",
        type=int,
        default=20,
        help="SCHED_FIFO priority of the executor's control loop and of the command subscriber (0: off; default 20)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        runs = [
            Scenario.parse(text, load, path)
            for text in args.scenarios.split(",")
            for load in args.loads.split(",")
            for path in args.paths.split(",")
        ]
    except ValueError as exc:
        parser.error(str(exc))
    local_graph_env()
    apply_large_data_profile()  # this process publishes the camera frames
    reuse_large_buffers()
    rclpy.init()
    node = Node("openpi_benchmark")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    rows = []
    try:
        for scenario in runs:
            rows.append(run_scenario(node, executor, scenario, args.seconds, args.realtime_priority))
            if not args.json:
                print(_format_row(rows[-1]), flush=True)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "seconds": args.seconds, "runs": rows}))
    return 0


def _format_row(row: dict[str, Any]) -> str:
    return (
        f"{row['scenario']:<22} overhead p50 {row['overhead_ms_p50']:6.2f} ms  p99 {row['overhead_ms_p99']:6.2f} ms  "
        f"CPU {row['policy_node_cpu_percent']:5.1f}%  missed {row['missed_ticks']:3d}  "
        f"dropped {row['dropped_observations']:3d}  executor jitter p50 {row['executor_jitter_ms_p50']:.3f} ms  "
        f"p99 {row['executor_jitter_ms_p99']:.3f} ms (in the node {row['executor_node_jitter_ms_p99']:.3f}"
        f"{', real-time' if row['executor_realtime'] else ''})  "
        f"({row['chunks']} chunks)"
    )


if __name__ == "__main__":
    sys.exit(main())
