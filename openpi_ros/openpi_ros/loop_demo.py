"""The whole demonstration loop without hardware, in one command: record, convert, normalise, train, serve, run.

    python -m openpi_ros.loop_demo                          # ALOHA sim, 2 episodes (what `make demo-loop` runs)
    python -m openpi_ros.loop_demo --robot ur5e_lift        # any registered robot with a simulator
    python -m openpi_ros.loop_demo --episodes 4 --record-seconds 8 --train-steps 50 --policy checkpoint

1. **record**: the robot's sim bridge and the recorder node run over DDS; a scripted motion (each joint swinging
   around its start pose, the grippers opening and closing, different per episode) drives the sim through
   ``joint_commands`` while the recorder writes one rosbag2 per episode (``openpi-record``'s services).
2. **convert**: ``openpi-convert-rosbag`` with the mapping (``--mapping``, default: made from the robot spec and
   written beside the bags), into a LeRobot v3 dataset.
3. **norm stats**: ``training/compute_norm_stats.py`` for the robot's tiny debug config on that dataset.
4. **train**: ``training/train.py`` for ``--train-steps`` steps (small built-in tokenizer: offline).
5. **serve + run**: the checkpoint behind a policy server (``--policy remote``), in the policy node (``--policy
   checkpoint``) or both, one episode each in the sim through the ROS graph (`openpi_ros.sim_eval`).

Prints each stage's time and what it produced, then the table; exit 0 only when every stage did its job. The
model is tiny and trained for seconds: it runs, it does not solve the task.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
import yaml
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState

from openpi_core.errors import OpenpiError
from openpi_core.robots import registry
from openpi_core.robots.spec import RobotSpec
from openpi_msgs.msg import EpisodeStatus
from openpi_msgs.srv import ResetEpisode
from openpi_ros import sim_eval
from openpi_ros.dds import apply_large_data_profile
from openpi_ros.graphs import NodeSpec
from openpi_ros.messages import from_time
from openpi_ros.processes import stop_processes
from openpi_ros.record_cli import RecorderCallError, call_recorder

__all__ = ["ScriptedMotion", "main"]

REPO = Path(__file__).resolve().parents[2]
TASK = "wave the arms"


class LoopError(OpenpiError):
    """A stage did not produce what the next one needs (the message says which and why)."""


@dataclasses.dataclass(frozen=True)
class ScriptedMotion:
    """Joint targets for a position-controlled robot: each arm joint swings around its start pose, grippers cycle."""

    start: np.ndarray
    gripper: np.ndarray
    """True for the gripper columns."""
    lower: np.ndarray
    upper: np.ndarray
    episode: int
    amplitude: float = 0.15

    def at(self, seconds: float) -> np.ndarray:
        phase = 2 * math.pi * (0.25 + 0.05 * self.episode) * seconds
        offsets = self.amplitude * np.sin(phase + np.arange(self.start.size) * 0.7)
        target = np.where(self.gripper, 0.5 + 0.4 * math.sin(phase), self.start + offsets)
        return np.clip(target, self.lower, self.upper)


def _motion(robot: RobotSpec, start: np.ndarray, episode: int) -> ScriptedMotion:
    n = robot.action_dim
    lower = np.asarray(robot.limits.lower or (-np.inf,) * n, float)
    upper = np.asarray(robot.limits.upper or (np.inf,) * n, float)
    gripper = np.array([a in robot.gripper_columns for a in robot.actions])
    return ScriptedMotion(start[:n].astype(float), gripper, lower, upper, episode)


class Driver(Node):
    """Publishes the scripted motion as `joint_commands` on every joint reading of the episode being recorded."""

    def __init__(self, ns: str, robot: RobotSpec) -> None:
        super().__init__("loop_demo_driver")
        self.robot = robot
        self.status: EpisodeStatus | None = None
        self.motion: ScriptedMotion | None = None
        self.episode = 0
        self._t0: float | None = None
        self._commands = self.create_publisher(JointState, f"/{ns}/joint_commands", 10)
        self.create_subscription(JointState, f"/{ns}/joint_states", self._on_joints, 10)
        self.create_subscription(EpisodeStatus, f"/{ns}/episode_status", self._on_status, 10)
        self.reset = self.create_client(ResetEpisode, f"/{ns}/reset")

    def _on_status(self, msg: EpisodeStatus) -> None:
        self.status = msg

    def start(self, episode: int) -> None:
        self.episode, self.motion, self._t0 = episode, None, None

    def _on_joints(self, msg: JointState) -> None:
        positions = np.asarray(msg.position, float)
        if positions.size != self.robot.state_dim:
            return
        t = from_time(msg.header.stamp) * 1e-9
        if self.motion is None:
            self.motion, self._t0 = _motion(self.robot, positions, self.episode), t
        command = JointState(name=list(self.robot.actions), position=self.motion.at(t - self._t0).tolist())
        command.header.stamp = msg.header.stamp
        self._commands.publish(command)


def _spin_until(node: Node, done: Callable[[], bool], timeout: float, what: str, procs: list) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        dead = [p.args[2] for p in procs if p.poll() is not None]
        if dead:
            raise LoopError(f"{what}: node process(es) exited early: {dead}")
        if time.monotonic() > deadline:
            raise LoopError(f"{what}: not within {timeout:.0f} s")
        rclpy.spin_once(node, timeout_sec=0.05)


def record(robot: RobotSpec, args: argparse.Namespace, bags: Path, log_dir: Path) -> list[str]:
    """Stage 1: `args.episodes` scripted episodes through the recorder; returns the bag folders."""
    ns = args.namespace
    topics = [f"/{ns}/{c.topic}" for c in robot.cameras] + [f"/{ns}/{t}" for t in robot.joint_state_topics]
    bridge = NodeSpec(
        "sim_bridge",
        "openpi_ros.sim_bridge_node",
        "sim_bridge",
        {
            "sim": robot.name,
            "image_height": args.image_size,
            "image_width": args.image_size,
            "camera_rate": float(args.fps),
            "max_steps": 1_000_000,  # the recorder's stop ends an episode, never the sim
        },
        namespace=ns,
    )
    recorder = NodeSpec(
        "recorder",
        "openpi_ros.recorder_node",
        "recorder",
        {"topics": topics, "output_dir": str(bags), "task": TASK},
        namespace=ns,
    )
    procs = []
    for spec in (bridge, recorder):
        log = open(log_dir / f"record_{spec.name}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(spec.command(), stdout=log, stderr=subprocess.STDOUT))
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    driver = Driver(ns, robot)
    saved = []
    steps = round(args.record_seconds * robot.control_rate)
    try:
        _spin_until(driver, lambda: driver.reset.service_is_ready() and driver.status is not None, 180, "sim up", procs)
        _spin_until(
            driver,
            lambda: all(driver.count_subscribers(t) >= 1 for t in topics),
            60,
            "the recorder subscribing to every topic",
            procs,
        )
        for episode in range(args.episodes):
            future = driver.reset.call_async(ResetEpisode.Request(seed=episode))
            _spin_until(driver, future.done, 60, "the sim's reset", procs)
            target = int(future.result().message.rsplit("episode ", 1)[1].rstrip(")"))
            driver.start(episode)
            _spin_until(driver, lambda t=target: driver.status.episode == t, 30, "the new episode", procs)
            started = call_recorder(driver, f"/{ns}/recorder", "start", task=TASK, timeout=30)
            first = driver.status.step
            _spin_until(
                driver,
                lambda f=first: driver.status.step - f >= steps,
                args.record_seconds * 10 + 60,
                f"episode {episode}'s {steps} steps",
                procs,
            )
            stopped = call_recorder(driver, f"/{ns}/recorder", "stop", timeout=30)
            print(f"  episode {episode}: {stopped.message} ({started.bag_path})", flush=True)
            saved.append(stopped.bag_path)
    except RecorderCallError as exc:
        raise LoopError(f"record: {exc}") from None
    finally:
        driver.destroy_node()
        rclpy.try_shutdown()
        stop_processes(procs, timeout=15.0)
    return saved


def _run(command: list[str], log: Path, env: dict[str, str], what: str, timeout: float) -> str:
    print(f"  $ {' '.join(command)}", flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LoopError(f"{what}: did not finish within {timeout:.0f} s") from None
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise LoopError(f"{what} failed (exit {result.returncode}, log {log}):\n{tail}")
    return result.stdout


def _mapping(robot: RobotSpec, args: argparse.Namespace, out: Path) -> Path:
    if args.mapping:
        return Path(args.mapping)
    mapping = robot.rosbag_mapping(args.namespace)
    # The sim renders at --fps; a loaded CPU can stall a stream for a moment: split rather than fail.
    mapping |= {"fps": args.fps, "max_staleness": 2.5 / args.fps, "on_bad": "split"}
    path = out / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robot", default="aloha", help="a registered robot with a simulator (position-controlled)")
    p.add_argument("--episodes", type=int, default=2, help="demonstrations to record")
    p.add_argument("--record-seconds", type=float, default=3.0, help="sim seconds per recorded episode")
    p.add_argument("--fps", type=int, default=10, help="camera rate and the dataset's frame rate (or the mapping's)")
    p.add_argument("--image-size", type=int, default=96, help="square size of the sim's cameras")
    p.add_argument("--mapping", default="", help="converter mapping (default: made from the robot spec)")
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument(
        "--policy",
        choices=("remote", "checkpoint", "both"),
        default="remote",
        help="the checkpoint behind a policy server, in the policy node, or one episode each",
    )
    p.add_argument("--eval-seconds", type=float, default=3.0, help="sim seconds of the final episode")
    p.add_argument(
        "--eval-real-time-factor",
        type=float,
        default=1.0,
        help="sim seconds per wall second at most in the final episode; below 1 on a machine where the policy "
        "answers later than its chunks last",
    )
    p.add_argument("--namespace", default="", help="default: the robot's name")
    p.add_argument("--out", type=Path, default=Path("loop_out"), help="bags, dataset, checkpoint, logs, report")
    return p


def _check_robot(name: str) -> RobotSpec:
    robot = registry.get(name)
    if not robot.sim or not robot.debug_config:
        raise LoopError(f"robot {name!r}: the loop needs a simulator and a debug config in its spec")
    if robot.actions != robot.joint_names:
        raise LoopError(f"robot {name!r} acts in {list(robot.actions)}: the scripted motion drives joint positions")
    return robot


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.namespace = args.namespace or args.robot
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        print(f"loop_demo: error: {out} is not empty (pick another --out)", file=sys.stderr)
        return 2
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_LOG_DIR", str(Path(tempfile.gettempdir()) / "openpi_ros_logs"))
    os.environ.update(env)
    apply_large_data_profile()
    stages: list[tuple[str, float, str]] = []

    def stage(name: str, work: Callable[[], str]) -> None:
        print(f"\n== {name}", flush=True)
        start = time.monotonic()
        produced = work()
        stages.append((name, time.monotonic() - start, produced))
        print(f"  -> {produced} ({stages[-1][1]:.1f} s)", flush=True)

    try:
        robot = _check_robot(args.robot)
        config = robot.debug_config
        dataset, bags = out / "dataset", out / "bags"
        mapping = _mapping(robot, args, out)
        mapped = yaml.safe_load(mapping.read_text())
        args.fps = int(mapped["fps"])  # the cameras render at the dataset's frame rate
        overrides = [
            *("--data.repo-id", str(mapped["repo_id"]), "--data.root", str(dataset)),
            *("--assets-base-dir", str(out / "assets"), "--checkpoint-base-dir", str(out / "checkpoints")),
        ]
        checkpoint = out / "checkpoints" / config / "loop" / str(args.train_steps)

        def do_record() -> str:
            saved = record(robot, args, bags, logs)
            return f"{len(saved)} bag(s) in {bags}"

        def do_convert() -> str:
            command = [
                sys.executable,
                "-m",
                "openpi_core.rosbag_to_lerobot.convert",
                str(bags),
                "--mapping",
                str(mapping),
                "--output",
                str(dataset),
                "--quiet",
                "--report",
                str(out / "conversion.json"),
            ]
            report = _run(command, logs / "convert.log", env, "convert", 600)
            print("  " + report.strip().replace("\n", "\n  "))
            return report.splitlines()[0]

        def do_stats() -> str:
            command = [sys.executable, str(REPO / "training" / "compute_norm_stats.py"), config, *overrides]
            _run(command, logs / "norm_stats.log", env, "norm stats", 600)
            found = sorted((out / "assets").rglob("norm_stats.json"))
            if not found:
                raise LoopError(f"norm stats: no norm_stats.json under {out / 'assets'}")
            return str(found[0])

        def do_train() -> str:
            command = [
                sys.executable,
                str(REPO / "training" / "train.py"),
                config,
                *overrides,
                "--exp-name",
                "loop",
                "--num-train-steps",
                str(args.train_steps),
                "--save-interval",
                str(args.train_steps),
            ]
            _run(command, logs / "train.log", env, "train", 1800)
            if not (checkpoint / "params").is_dir():
                raise LoopError(f"train: no checkpoint at {checkpoint}")
            return f"{config} checkpoint at {checkpoint}"

        def do_run() -> str:
            ran = []
            for policy in ("remote", "checkpoint") if args.policy == "both" else (args.policy,):
                code = _serve_and_run(robot, config, checkpoint, args, policy_source=policy, out=out / f"eval_{policy}")
                if code != 0:
                    raise LoopError(f"run: sim_eval exited {code} (its logs: {out / f'eval_{policy}' / 'logs'})")
                ran.append(policy)
            return f"{len(ran)} episode(s) of {args.eval_seconds:g} s through the ROS graph ({', '.join(ran)})"

        stage("record", do_record)
        stage("convert", do_convert)
        stage("norm stats", do_stats)
        stage("train", do_train)
        stage("serve + run", do_run)
    except (LoopError, registry.UnknownRobotError) as exc:
        _table(stages)
        print(f"loop_demo: error: {exc}", file=sys.stderr)
        return 1
    _table(stages)
    print("loop_demo OK", flush=True)
    return 0


def _serve_and_run(
    robot: RobotSpec, config: str, checkpoint: Path, args: argparse.Namespace, *, policy_source: str, out: Path
) -> int:
    common = [
        "--sim",
        robot.name,
        "--max-steps",
        str(round(args.eval_seconds * robot.control_rate)),
        "--out",
        str(out),
        "--namespace",
        f"{args.namespace}_eval",
        "--rate",
        str(robot.policy_rate),
        "--real-time-factor",
        str(args.eval_real_time_factor),
    ]
    if policy_source == "checkpoint":
        return sim_eval.main(
            [*common, "--policy", "checkpoint", "--config-name", config, "--checkpoint-dir", str(checkpoint)]
        )
    from openpi_core.policies.policy_config import create_trained_policy  # noqa: PLC0415
    from openpi_core.serving.server import PolicyServer, ServerConfig  # noqa: PLC0415
    from openpi_core.serving.spec import spec_for  # noqa: PLC0415
    from openpi_core.training import configs as _configs  # noqa: PLC0415

    policy = create_trained_policy(_configs.get_config(config), checkpoint)
    policy.infer(robot.make_example())  # compile before the episode
    server = PolicyServer(policy, ServerConfig(port=0), spec=spec_for(robot.name)).start()
    try:
        print(f"  serving {checkpoint} at ws://127.0.0.1:{server.port}", flush=True)
        return sim_eval.main([*common, "--policy", "remote", "--server-url", f"ws://127.0.0.1:{server.port}"])
    finally:
        server.stop()


def _table(stages: list[tuple[str, float, str]]) -> None:
    print(f"\n{'stage':12} {'seconds':>8}  produced")
    for name, seconds, produced in stages:
        print(f"{name:12} {seconds:8.1f}  {produced}")
    print(f"{'total':12} {sum(s for _, s, _ in stages):8.1f}")


if __name__ == "__main__":
    sys.exit(main())
