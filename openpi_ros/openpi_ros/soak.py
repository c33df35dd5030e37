"""Fault-injection soak of the chunk executor and the policy node, real nodes over real DDS.

    python -m openpi_ros.soak                       # >= 10,000 messages (about 2-3 minutes)
    python -m openpi_ros.soak --messages 1000       # the short version `make test` runs
    python -m openpi_ros.soak --json soak.json      # the report as JSON too

This process plays the robot and the policy at once. It publishes joint states at 50 Hz for an arm with three
position joints and two velocity joints (the "robot" follows every command it receives exactly), chunks at 10 Hz
of which about a third are bad (NaN/Inf, wrong shapes, joint names and periods, old, future, out-of-order and
duplicated stamps), a camera for the policy node, and the e-stop heartbeat; and between phases of normal motion it
injects one fault at a time: e-stop (also across an executor restart), heartbeat loss, stale chunks, stale and NaN
joint states, a re-homed arm, camera dropouts, executor and policy-node restarts, and, in a last part with
`use_sim_time`, backwards jumps of `/clock`.

Good chunks keep every position target within +-BAND and every velocity target's magnitude within
[BAND/2.5, BAND]; bad chunks carry values far outside (POISON). Every command the executor publishes is checked
against what this process knows to be true: no command moves towards a poison value, none leaves the limits or
exceeds the step and acceleration bounds, none moves during an e-stop, a lost heartbeat, stale chunks or a stale
or NaN joint state; every node exits 0 within 2 s of SIGINT; and motion resumes after each recovery. The policy
node (hold policy, its chunks on a topic of their own) must never publish a chunk from a NaN reading or from a
camera that had stopped. The exit status is 0 only if every count that must be 0 is 0.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool

from openpi_msgs.msg import ActionChunk, ExecutorStatus
from openpi_ros.graphs import NodeSpec
from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.messages import from_time, make_action_chunk, to_time
from openpi_ros.processes import stop_on_signals
from openpi_ros.qos import ESTOP_QOS

POSITION = ("p1", "p2", "p3")
VELOCITY = ("v1", "v2")
COLUMNS = (*POSITION, *(f"{v}/velocity" for v in VELOCITY))
N_POS = len(POSITION)
LOWER = (-1.0, -1.0, -1.0, -3.0, -3.0)
UPPER = (1.0, 1.0, 1.0, 3.0, 3.0)
MAX_VELOCITY = 1.0
MAX_ACCELERATION = 20.0
MAX_TRACKING_ERROR = 0.3
CONTROL_RATE = 50.0
PERIOD = 1.0 / CONTROL_RATE
STALE_TIMEOUT = 0.3
MAX_STATE_AGE = 0.5
HEARTBEAT_TIMEOUT = 0.5
BAND = 0.05
POISON = 0.8
GRACE = 0.4  # s: DDS delivery and scheduling under load, allowed around every timed rule
LEAK_MARGIN = 0.02  # beyond the band by this much is a poison leak (acceleration limits overshoot by ~1e-4)
SHUTDOWN_BOUND = 2.0
RESUME_LIMIT = 5.0
EPS = 1e-6
STRATEGIES = ("blend", "broker", "ensemble")

# Each round restarts the executor twice, so every round has a lifetime without the e-stop heartbeat (odd: the
# e-stop latch alone must hold) and one with it (even: heartbeat loss must stop motion).
FAULTS = (
    "estop",
    "stale_chunks",
    "nan_state",
    "stale_state",
    "rehome",
    "restart_executor",
    "heartbeat_loss",
    "estop_across_restart",
    "restart_policy",
    "camera_dropout",
)
SIM_FAULTS = ("clock_jump", "estop", "restart_executor", "clock_jump", "stale_chunks")
BAD_KINDS = (
    "nan",
    "inf",
    "wide",
    "names",
    "missing_joint",
    "tiny_period",
    "huge_period",
    "nan_period",
    "old",
    "future",
    "out_of_order",
    "duplicate",
    "empty",
    "short_data",
)


@dataclasses.dataclass(frozen=True)
class SoakConfig:
    messages: int = 10_000
    seed: int = 0
    namespace: str = "soak"
    phase_seconds: float = 1.0
    sim_fraction: float = 0.2


@dataclasses.dataclass
class Received:
    arrival: float  # monotonic s at this process (which keeps spinning, also while a node restarts)
    stamp_ns: int  # the executor's ROS time
    positions: np.ndarray  # position columns (NaN: not commanded)
    velocities: np.ndarray  # velocity columns
    segment: int  # executor lifetime / clock epoch

    @property
    def moving(self) -> bool:
        return bool(np.any(np.abs(self.velocities) > 0.0))


@dataclasses.dataclass
class Report:
    messages: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    commands: int = 0
    from_bad_input: int = 0
    position_violations: int = 0
    step_violations: int = 0
    acceleration_violations: int = 0
    tracking_violations: int = 0
    during_estop: int = 0
    moving_after_stop: int = 0
    crashes: int = 0
    slow_shutdowns: int = 0
    not_resumed: int = 0
    resume_times: list[float] = dataclasses.field(default_factory=list)
    shutdown_times: list[float] = dataclasses.field(default_factory=list)
    faults: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bad_chunks: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    policy_chunks: int = 0
    policy_from_bad_input: int = 0
    executor_rejected: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    MUST_BE_ZERO: ClassVar[tuple[str, ...]] = (
        "from_bad_input",
        "position_violations",
        "step_violations",
        "acceleration_violations",
        "tracking_violations",
        "during_estop",
        "moving_after_stop",
        "crashes",
        "slow_shutdowns",
        "not_resumed",
        "policy_from_bad_input",
    )

    def flag(self, counter: str, example: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        if len(self.examples) < 20:
            self.examples.append(f"{counter}: {example}")

    @property
    def ok(self) -> bool:
        if self.interrupted or self.commands == 0 or self.policy_chunks == 0:
            return False
        return all(getattr(self, k) == 0 for k in self.MUST_BE_ZERO)

    def as_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("resume_times", "shutdown_times")}
        out["messages"], out["faults"], out["bad_chunks"] = (
            dict(self.messages),
            dict(self.faults),
            dict(self.bad_chunks),
        )
        out["resume_s"] = _percentiles(self.resume_times)
        out["shutdown_s"] = _percentiles(self.shutdown_times)
        out["ok"] = self.ok
        return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {"n": len(values), "p50": float(np.median(arr)), "p99": float(np.percentile(arr, 99)), "max": arr.max()}


def executor_spec(namespace: str, strategy: str, *, sim: bool, heartbeat: bool) -> NodeSpec:
    return NodeSpec(
        "chunk_executor",
        "openpi_ros.chunk_executor_node",
        "chunk_executor",
        {
            "use_sim_time": sim,
            "joint_names": list(COLUMNS),
            "control_rate": CONTROL_RATE,
            "strategy": strategy,
            "lower_limits": list(LOWER),
            "upper_limits": list(UPPER),
            "max_velocity": [MAX_VELOCITY] * len(COLUMNS),
            "max_acceleration": [MAX_ACCELERATION] * len(COLUMNS),
            "max_tracking_error": [MAX_TRACKING_ERROR] * N_POS + [0.0] * len(VELOCITY),
            "stale_timeout": STALE_TIMEOUT,
            "max_state_age": MAX_STATE_AGE,
            "estop_heartbeat_timeout": HEARTBEAT_TIMEOUT if heartbeat else 0.0,
            "blend_time": 0.1,
        },
        namespace=namespace,
    )


def policy_spec(namespace: str) -> NodeSpec:
    return NodeSpec(
        "policy_node",
        "openpi_ros.policy_node",
        "policy_node",
        {
            "robot": "custom",
            "camera_names": ["cam"],
            "joint_names": list(POSITION),
            "policy": "hold",
            "horizon": 10,
            "rate": 10.0,
            "image_size": 0,
            "max_age": 0.5,
            "max_skew": 0.2,
        },
        remappings=(("action_chunk", "policy_chunks"),),
        namespace=namespace,
    )


class Soak(Node):
    """Publishes the robot's side and the policy's side, records everything it receives."""

    def __init__(self, config: SoakConfig) -> None:
        super().__init__("soak_driver")
        ns = f"/{config.namespace}"
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.report = Report()
        self.joint_pub = self.create_publisher(JointState, f"{ns}/joint_states", 10)
        self.chunk_pub = self.create_publisher(ActionChunk, f"{ns}/action_chunk", 10)
        self.estop_pub = self.create_publisher(Bool, f"{ns}/estop", ESTOP_QOS)
        self.camera_pub = self.create_publisher(Image, f"{ns}/cam/image_raw", 5)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.create_subscription(JointState, f"{ns}/joint_commands", self._on_command, 2000)
        self.create_subscription(ExecutorStatus, f"{ns}/executor_status", self._on_status, 50)
        self.create_subscription(ActionChunk, f"{ns}/policy_chunks", self._on_policy_chunk, 200)
        self.received: list[Received] = []
        self.statuses = 0
        self.segment = 0
        # The robot: measured positions, following commands; velocity joints integrate their commands.
        self.measured = np.zeros(len(COLUMNS))
        self.measured_history: list[tuple[float, np.ndarray]] = []  # (monotonic s, published reading), whole run
        self.ignore_commands_until = 0.0
        # Clock of the executor's domain: system time, or a simulated one (`sim_offset_ns` from system time).
        self.sim = False
        self.sim_offset_ns = 0
        # What was sent, for the checks (monotonic times of this process).
        self.good_chunk_times: list[float] = []
        self.last_stamp_ns = 0
        self.sequence = 0
        self.joint_stamps: dict[int, np.ndarray] = {}
        self.camera_stamps: list[int] = []
        self.windows: list[tuple[str, float, float]] = []  # (rule, start, end) in monotonic s
        self.recoveries: list[tuple[str, float]] = []
        self.estop_engaged = False
        self.started = time.monotonic()

    # -- clocks ----------------------------------------------------------------------------------------------------
    def ros_now(self) -> int:
        wall = time.time_ns()
        return wall - self.sim_offset_ns if self.sim else wall

    # -- inputs from the nodes -------------------------------------------------------------------------------------
    def _on_command(self, msg: JointState) -> None:
        positions = np.array(msg.position[:N_POS], dtype=np.float64)
        velocities = np.array(msg.velocity[N_POS:], dtype=np.float64)
        self.received.append(
            Received(time.monotonic(), from_time(msg.header.stamp), positions, velocities, self.segment)
        )
        if time.monotonic() >= self.ignore_commands_until:  # the robot follows what it is told
            commanded = np.isfinite(positions)
            self.measured[:N_POS][commanded] = positions[commanded]
            self.measured[N_POS:] += np.nan_to_num(velocities) * PERIOD

    def _on_status(self, msg: ExecutorStatus) -> None:
        self.statuses += 1
        self.report.executor_rejected = max(self.report.executor_rejected, int(msg.chunks_rejected))

    def _on_policy_chunk(self, msg: ActionChunk) -> None:
        self.report.policy_chunks += 1
        stamp = from_time(msg.header.stamp)
        actions = np.asarray(msg.actions, dtype=np.float64).reshape(msg.horizon, msg.action_dim)
        state = self.joint_stamps.get(stamp)
        if state is None or not np.all(np.isfinite(state)) or not np.allclose(actions[0], state[:N_POS], atol=1e-5):
            self.report.flag("policy_from_bad_input", f"policy chunk at {stamp} not from a finite reading then")
            return
        near = [c for c in self.camera_stamps[-400:] if abs(c - stamp) <= 0.2e9 + 1]
        if not near:
            self.report.flag("policy_from_bad_input", f"policy chunk at {stamp} with no camera frame within 0.2 s")

    # -- outputs ------------------------------------------------------------------------------------------------------
    def publish_joints(self, *, nan: bool = False) -> None:
        values = self.measured.copy()
        if nan:
            values[1] = np.nan
        stamp = self.ros_now()
        msg = JointState(name=[*POSITION, *VELOCITY], position=[float(v) for v in values])
        msg.header.stamp = to_time(stamp)
        self.joint_pub.publish(msg)
        self.joint_stamps[stamp] = values
        if len(self.joint_stamps) > 2000:
            self.joint_stamps.pop(next(iter(self.joint_stamps)))
        self.measured_history.append((time.monotonic(), values))
        self.report.messages["joint_states"] += 1

    def publish_camera(self) -> None:
        stamp = self.ros_now()
        image = Image(**rgb_to_image_fields(np.full((16, 16, 3), 100, np.uint8)))
        image.header.stamp = to_time(stamp)
        self.camera_pub.publish(image)
        self.camera_stamps.append(stamp)
        self.report.messages["camera"] += 1

    def publish_estop(self, engaged: bool) -> None:
        self.estop_pub.publish(Bool(data=engaged))
        self.report.messages["estop"] += 1

    def publish_clock(self) -> None:
        self.clock_pub.publish(Clock(clock=to_time(self.ros_now())))
        self.report.messages["clock"] += 1

    def publish_chunk(self, bad: str | None) -> None:
        """A good chunk (targets inside the band), or one of BAD_KINDS carrying poison values."""
        horizon, now = 25, self.ros_now()
        if bad is None:
            position = self.rng.uniform(-BAND, BAND, N_POS)
            velocity = self.rng.choice([-1.0, 1.0], len(VELOCITY)) * self.rng.uniform(BAND / 2.5, BAND, len(VELOCITY))
            row = np.concatenate([position, velocity])
        else:
            row = np.full(len(COLUMNS), POISON) + self.rng.uniform(0, 0.1, len(COLUMNS))
        actions = np.tile(row, (horizon, 1))
        names, period, stamp = list(COLUMNS), PERIOD, now
        if bad == "nan":
            actions[3, 1] = np.nan
        elif bad == "inf":
            actions[0, 4] = np.inf
        elif bad == "wide":  # one more column than names
            actions = np.concatenate([actions, actions[:, :1]], axis=1)
        elif bad == "names":
            names = [*COLUMNS[:-1], "v3/velocity"]
        elif bad == "missing_joint":
            actions, names = actions[:, :-1], names[:-1]
        elif bad == "tiny_period":
            period = 1e-10
        elif bad == "huge_period":
            period = 1e6
        elif bad == "nan_period":
            period = float("nan")
        elif bad == "old":
            stamp = now - 5_000_000_000
        elif bad == "future":
            stamp = now + 1_000_000_000
        elif bad in ("out_of_order", "duplicate"):
            stamp = self.last_stamp_ns - (20_000_000 if bad == "out_of_order" else 0)
        elif bad == "empty":
            actions = actions[:0]
        msg = make_action_chunk(
            actions.astype(np.float32),
            stamp_ns=stamp,
            joint_names=[f"c{i}" for i in range(actions.shape[1])],
            control_period=period,
            config_name="soak",
            prompt="",
            inference_latency=0.0,
            sequence=self.sequence,
        )
        msg.joint_names = names  # as sent, even when they do not match the data (a malformed message)
        if bad == "short_data":
            msg.horizon += 1
        self.sequence += 1
        self.chunk_pub.publish(msg)
        self.report.messages["chunks"] += 1
        if bad is None:
            self.good_chunk_times.append(time.monotonic())
            self.last_stamp_ns = stamp
        else:
            self.report.bad_chunks[bad] += 1

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            rclpy.spin_once(self, timeout_sec=min(remaining, 0.002))


class Driver:
    """Runs the nodes and the phases; `check` turns what was received into the report."""

    def __init__(self, config: SoakConfig, env: dict[str, str], log_dir: Path) -> None:
        self.config = config
        self.env = env
        self.log_dir = log_dir
        self.soak = Soak(config)
        self.executor: subprocess.Popen | None = None
        self.policy: subprocess.Popen | None = None
        self.lifetimes = 0  # executor processes started so far
        self.heartbeat = False  # whether the running executor watches the e-stop heartbeat
        self.starts = 0
        # Per-loop switches the phases flip.
        self.send_joints = True
        self.nan_joints = False
        self.send_chunks = True
        self.send_camera = True
        self.send_heartbeat = True
        self.tick = 0

    # -- processes -------------------------------------------------------------------------------------------------
    def _spawn(self, spec: NodeSpec) -> subprocess.Popen:
        self.starts += 1
        log = open(self.log_dir / f"{spec.name}-{self.starts}.log", "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(spec.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_executor(self) -> None:
        """The next executor lifetime: strategies in turn; the e-stop heartbeat on in every other one."""
        self.lifetimes += 1
        strategy = STRATEGIES[(self.lifetimes - 1) % len(STRATEGIES)]
        self.heartbeat = self.lifetimes % 2 == 0
        self.soak.segment += 1
        spec = executor_spec(self.config.namespace, strategy, sim=self.soak.sim, heartbeat=self.heartbeat)
        self.executor = self._spawn(spec)

    def start_policy(self) -> None:
        self.policy = self._spawn(policy_spec(self.config.namespace))

    def stop(self, proc: subprocess.Popen | None, name: str) -> None:
        if proc is None:
            return
        if proc.poll() is not None:
            self.soak.report.flag("crashes", f"{name} had exited with {proc.returncode} before it was stopped")
            return
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        while proc.poll() is None and time.monotonic() - start < 10.0:
            self.run_for(PERIOD)  # the robot keeps publishing while a node restarts
        code = proc.poll()
        if code is None:
            proc.kill()
            proc.wait()
            self.soak.report.flag("crashes", f"{name} did not stop within 10 s of SIGINT (killed)")
            return
        elapsed = time.monotonic() - start
        self.soak.report.shutdown_times.append(elapsed)
        if code != 0:
            self.soak.report.flag("crashes", f"{name} exited {code} on SIGINT")
        if elapsed > SHUTDOWN_BOUND:
            self.soak.report.flag("slow_shutdowns", f"{name} took {elapsed:.2f} s to stop")

    def check_alive(self) -> None:
        for name, proc in (("chunk_executor", self.executor), ("policy_node", self.policy)):
            if proc is not None and proc.poll() is not None:
                self.soak.report.flag("crashes", f"{name} exited with {proc.returncode} during the run")
                if name == "chunk_executor":
                    self.start_executor()
                else:
                    self.start_policy()

    # -- the loop ---------------------------------------------------------------------------------------------------
    def run_for(self, seconds: float) -> None:
        """50 Hz: joints (and /clock in sim); 10 Hz: a chunk (a third of them bad), a camera frame, a heartbeat."""
        soak = self.soak
        end = time.monotonic() + seconds
        next_tick = time.monotonic()
        while time.monotonic() < end:
            self.tick += 1
            if soak.sim:
                soak.publish_clock()
            if self.send_joints:
                soak.publish_joints(nan=self.nan_joints)
            if self.tick % 5 == 0:
                if self.send_chunks:
                    bad = None if soak.rng.random() > 0.35 else BAD_KINDS[soak.rng.integers(len(BAD_KINDS))]
                    soak.publish_chunk(bad)
                if self.send_camera:
                    soak.publish_camera()
                if self.send_heartbeat:
                    soak.publish_estop(soak.estop_engaged)
            next_tick += PERIOD
            soak.spin_for(max(0.0, next_tick - time.monotonic()))

    def window(self, rule: str, start: float, end: float) -> None:
        self.soak.windows.append((rule, start, end))

    def recovered(self, what: str) -> None:
        self.soak.recoveries.append((what, time.monotonic()))

    def fault(self, kind: str) -> None:
        soak, seconds = self.soak, self.config.phase_seconds
        soak.report.faults[kind] += 1
        now = time.monotonic
        if kind in ("estop", "estop_across_restart"):
            # Published once: without the heartbeat only the latch keeps the executor stopped (with it, the
            # silence stops it as well).
            soak.estop_engaged = True
            soak.publish_estop(True)
            self.send_heartbeat = False
            start = now()
            self.run_for(seconds / 2)
            if kind == "estop_across_restart":
                self.stop(self.executor, "chunk_executor")
                self.start_executor()
                self.wait_for_executor()
            self.run_for(seconds / 2)
            self.window("estop", start, now())
            soak.estop_engaged = False
            soak.publish_estop(False)
            self.send_heartbeat = True
            self.recovered(kind)
        elif kind == "heartbeat_loss":
            if not self.heartbeat:
                raise RuntimeError("soak schedule: heartbeat_loss in an executor lifetime without the heartbeat")
            self.send_heartbeat = False
            start = now()
            self.run_for(seconds)
            self.window("no_motion", start + HEARTBEAT_TIMEOUT, now())
            self.send_heartbeat = True
            self.recovered(kind)
        elif kind == "stale_chunks":
            self.send_chunks = False
            start = now()
            self.run_for(seconds)
            self.window("no_motion", start + STALE_TIMEOUT, now())
            self.send_chunks = True
            self.recovered(kind)
        elif kind == "nan_state":
            self.nan_joints = True
            start = now()
            self.run_for(seconds / 2)
            self.window("no_motion", start, now())
            self.nan_joints = False
            self.recovered(kind)
        elif kind == "stale_state":
            self.send_joints = False
            start = now()
            self.run_for(seconds)
            self.window("no_motion", start + MAX_STATE_AGE, now())
            self.send_joints = True
            self.recovered(kind)
        elif kind == "rehome":
            soak.measured[0] = -0.5  # a driver re-home: the arm is elsewhere and ignores commands for a while
            soak.ignore_commands_until = now() + seconds / 2
            self.run_for(seconds)
            self.recovered(kind)
        elif kind == "restart_executor":
            self.stop(self.executor, "chunk_executor")
            self.start_executor()
            self.wait_for_executor()
            self.recovered(kind)
        elif kind == "restart_policy":
            self.stop(self.policy, "policy_node")
            self.start_policy()
            self.run_for(seconds)
        elif kind == "camera_dropout":
            self.send_camera = False
            self.run_for(seconds)
            self.send_camera = True
        elif kind == "clock_jump":
            soak.sim_offset_ns += 5_000_000_000  # /clock goes back 5 s
            self.recovered(kind)
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def wait_for_executor(self, timeout: float = 30.0) -> None:
        seen = self.soak.statuses
        deadline = time.monotonic() + timeout
        while self.soak.statuses == seen and time.monotonic() < deadline:
            self.run_for(0.1)

    def messages(self) -> int:
        return sum(self.soak.report.messages.values())

    def run_until(self, stop: threading.Event) -> Report:
        """The whole soak (or until `stop` is set: Ctrl-C; the report then says interrupted)."""
        soak, config = self.soak, self.config
        started = time.monotonic()
        self.start_executor()
        self.start_policy()
        self.wait_for_executor(timeout=60.0)
        self.run_for(1.0)
        wall_budget = config.messages * (1.0 - config.sim_fraction)
        faults = list(FAULTS)
        index = 0
        while (self.messages() < wall_budget or index < len(faults)) and not stop.is_set():
            self.fault(faults[index % len(faults)])
            index += 1
            self.run_for(config.phase_seconds)
            self.check_alive()
        # The sim-time part: the executor on /clock, which this process publishes and makes jump back.
        self.stop(self.executor, "chunk_executor")
        soak.sim, soak.sim_offset_ns = True, 1_000_000_000_000  # sim time far from system time
        self.start_executor()
        self.wait_for_executor(timeout=60.0)
        self.run_for(1.0)
        index = 0
        while (self.messages() < config.messages or index < len(SIM_FAULTS)) and not stop.is_set():
            self.fault(SIM_FAULTS[index % len(SIM_FAULTS)])
            index += 1
            self.run_for(config.phase_seconds)
            self.check_alive()
        self.stop(self.executor, "chunk_executor")
        self.stop(self.policy, "policy_node")
        soak.spin_for(0.3)
        soak.report.seconds = time.monotonic() - started
        soak.report.interrupted = stop.is_set()
        check(soak)
        return soak.report


def check(soak: Soak) -> None:
    """Every received command against the rules (see the module docstring)."""
    report, received = soak.report, soak.received
    report.commands = len(received)
    lower, upper = np.array(LOWER), np.array(UPPER)
    history_times = np.array([t for t, _ in soak.measured_history])
    history_values = np.array([m[:N_POS] for _, m in soak.measured_history]).reshape(-1, N_POS)

    def published(start: float, end: float) -> np.ndarray:
        """The position readings published in [start, end]."""
        lo, hi = np.searchsorted(history_times, start), np.searchsorted(history_times, end, side="right")
        return history_values[lo:hi]

    windows = soak.windows
    previous: Received | None = None
    before_previous: Received | None = None
    for cmd in received:
        pos, vel = cmd.positions, cmd.velocities
        commanded = np.isfinite(pos)
        # Poison: good targets stay within +-BAND, so anything beyond came from a bad chunk.
        if np.any(pos[commanded] > BAND + LEAK_MARGIN) or np.any(np.abs(vel) > BAND + LEAK_MARGIN):
            report.flag("from_bad_input", f"command {pos.round(4)} {vel.round(4)} beyond the good band")
        if np.any(pos[commanded] < lower[:N_POS][commanded] - EPS) or np.any(
            pos[commanded] > upper[:N_POS][commanded] + EPS
        ):
            report.flag("position_violations", f"position command {pos.round(4)} outside the limits")
        if np.any(np.abs(vel) > MAX_VELOCITY + EPS):
            report.flag("position_violations", f"velocity command {vel.round(4)} beyond max_velocity")
        # Tracking: a command never leads the arm by more than max_tracking_error (plus a step), measured against
        # every reading published in the GRACE before it (older readings may not have reached the executor).
        recent = published(cmd.arrival - GRACE, cmd.arrival)
        if recent.size and np.any(commanded):
            gap = np.nanmin(np.abs(recent - pos), axis=0)
            if np.any(gap[commanded] > MAX_TRACKING_ERROR + MAX_VELOCITY * 2 * PERIOD + EPS):
                report.flag("tracking_violations", f"command {pos.round(4)} {gap.round(3)} from the measured arm")
        for rule, start, end in windows:
            if start + GRACE < cmd.arrival < end:
                if rule == "estop" and (np.any(commanded) or np.any(vel != 0.0)):
                    report.flag("during_estop", f"command {pos.round(4)} {vel.round(4)} during an e-stop")
                elif rule == "no_motion" and cmd.moving:
                    report.flag("moving_after_stop", f"moving command {vel.round(4)} in a stop window")
        last_good = _last_good_chunk(soak, cmd.arrival)
        if cmd.moving and cmd.arrival > last_good + STALE_TIMEOUT + GRACE:
            report.flag(
                "moving_after_stop",
                f"moving command {vel.round(4)} {cmd.arrival - last_good:.3f} s after the last good chunk was sent "
                f"(segment {cmd.segment}, {cmd.arrival - soak.started:.2f} s into the run)",
            )
        same = previous is not None and previous.segment == cmd.segment and cmd.stamp_ns > previous.stamp_ns
        if cmd.moving and same and previous.moving:
            dt = min((cmd.stamp_ns - previous.stamp_ns) * 1e-9, 2 * PERIOD)
            step = np.abs(pos - previous.positions)
            if np.any(step > MAX_VELOCITY * dt + EPS):
                report.flag("step_violations", f"step {step.round(4)} over {dt * 1e3:.1f} ms")
            dv = np.abs(vel - previous.velocities)
            if np.any(dv > MAX_ACCELERATION * dt + EPS):
                report.flag("acceleration_violations", f"velocity change {dv.round(4)} over {dt * 1e3:.1f} ms")
            chain = before_previous is not None and before_previous.segment == cmd.segment and before_previous.moving
            if chain and previous.stamp_ns > before_previous.stamp_ns:
                dt_prev = min((previous.stamp_ns - before_previous.stamp_ns) * 1e-9, 2 * PERIOD)
                change = np.abs(
                    (pos - previous.positions) / dt - (previous.positions - before_previous.positions) / dt_prev
                )
                if np.any(change > MAX_ACCELERATION * dt + 1e-3):
                    report.flag("acceleration_violations", f"position velocity change {change.round(3)}")
        elif cmd.moving:  # a first motion command: one step from a recent measurement, accelerating from rest
            recent = published(cmd.arrival - 1.0, cmd.arrival)
            if recent.size:
                near = float(np.nanmin(np.nanmax(np.abs(recent - pos), axis=1)))
                if near > MAX_VELOCITY * PERIOD + EPS:
                    report.flag("step_violations", f"first command {pos.round(4)} {near:.4f} from any measurement")
            if np.any(np.abs(vel) > MAX_ACCELERATION * PERIOD + EPS):
                report.flag("acceleration_violations", f"first velocity command {vel.round(4)} from rest")
        before_previous, previous = previous, cmd
    arrivals = np.array([c.arrival for c in received if c.moving])
    for what, at in soak.recoveries:
        later = arrivals[arrivals > at]
        if later.size == 0 or later[0] - at > RESUME_LIMIT:
            report.flag("not_resumed", f"no motion within {RESUME_LIMIT} s after {what}")
        else:
            report.resume_times.append(float(later[0] - at))


def _last_good_chunk(soak: Soak, when: float) -> float:
    """The monotonic time of the last good chunk sent before `when`."""
    times = soak.good_chunk_times
    i = int(np.searchsorted(times, when)) - 1
    return times[i] if i >= 0 else -math.inf


def print_report(report: Report) -> None:
    total = sum(report.messages.values())
    sent = ", ".join(f"{k} {v:,}" for k, v in sorted(report.messages.items()))
    bad = sum(report.bad_chunks.values())
    resume, shutdown = _percentiles(report.resume_times), _percentiles(report.shutdown_times)
    print(f"soak: {total:,} messages in {report.seconds:.1f} s ({sent}; {bad:,} bad chunks of {len(BAD_KINDS)} kinds)")
    print(f"  faults injected: {', '.join(f'{k} x{v}' for k, v in sorted(report.faults.items()))}")
    print(
        f"  executor commands checked: {report.commands:,} (the executor rejected {report.executor_rejected:,} chunks)"
    )
    print(f"    commands derived from a bad input      {report.from_bad_input}")
    print(
        f"    limit violations                       position {report.position_violations}, "
        f"step {report.step_violations}, acceleration {report.acceleration_violations}, "
        f"tracking {report.tracking_violations}"
    )
    print(f"    commands during e-stop                 {report.during_estop}")
    print(f"    moving velocity after a stop           {report.moving_after_stop}")
    print(f"    node crashes                           {report.crashes} (slow shutdowns {report.slow_shutdowns})")
    if resume["n"]:
        print(
            f"    time to resume after recovery          p50 {resume['p50']:.3f} s, p99 {resume['p99']:.3f} s "
            f"(n={resume['n']}, not resumed {report.not_resumed})"
        )
    if shutdown["n"]:
        print(
            f"    SIGINT to exit                         p50 {shutdown['p50']:.3f} s, max {shutdown['max']:.3f} s "
            f"(n={shutdown['n']})"
        )
    print(f"  policy node chunks checked: {report.policy_chunks:,}, from a bad input: {report.policy_from_bad_input}")
    for example in report.examples:
        print(f"    {example}")
    print("soak OK" if report.ok else "soak FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="messages to send at least (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--namespace", default="soak")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    log_dir = Path(tempfile.mkdtemp(prefix="openpi_soak_"))
    env.setdefault("ROS_LOG_DIR", str(log_dir / "ros"))
    config = SoakConfig(messages=args.messages, seed=args.seed, namespace=args.namespace)
    print(f"soak: {config.messages:,} messages, node logs in {log_dir}", flush=True)
    with stop_on_signals(signal.SIGINT, signal.SIGTERM) as stop:
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        driver = Driver(config, env, log_dir)
        try:
            report = driver.run_until(stop)
        finally:
            for proc in (driver.executor, driver.policy):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
            driver.soak.destroy_node()
            rclpy.try_shutdown()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2, default=float))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
