"""Run sim episodes through the full ROS graph (sim bridge → policy node → chunk executor → sim bridge) and report.

    python -m openpi_ros.sim_eval --sim aloha --episodes 3                        # small random model (no weights)
    python -m openpi_ros.sim_eval --sim libero --task libero_spatial/0 --policy remote --server-url ws://gpu:8000
    python -m openpi_ros.sim_eval --sim aloha --policy checkpoint --config-name pi0_aloha_sim --checkpoint-dir CKPT
    python -m openpi_ros.sim_eval --demo                                          # what `make demo` runs

Every node is its own process over real DDS, on sim time (`/clock` from the bridge). Prints live rates and
latencies, then a table (success, steps, reward, inference and loop latencies per episode), and writes a JSON
report and a PNG strip of the first camera. With an official checkpoint folder this is the same evaluation users
run for openpi's LIBERO table (`--episodes 50` per task). Exit status 0 when every episode ran to its end with
commands flowing (at least `--min-chunks` chunks) and every node exited cleanly; success rates are reported, not
required. On a failure the failing nodes' last log lines are printed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState

from openpi_core.robots import registry
from openpi_core.robots.spec import RobotSpec
from openpi_msgs.msg import EpisodeStatus, ExecutorStatus, PolicyStatus
from openpi_msgs.srv import ResetEpisode
from openpi_ros.dds import apply_large_data_profile
from openpi_ros.graphs import NodeSpec, RobotGraphConfig, robot_graph
from openpi_ros.image_messages import image_to_rgb
from openpi_ros.policy_runner import POLICY_SOURCES
from openpi_ros.processes import local_graph_env, stop_on_signals, stop_processes

MIN_CHUNKS = 3  # an episode counts only once the policy has really acted (not one chunk and a hold)
LOG_TAIL_LINES = 15


def simulated_robots() -> list[str]:
    """Registered robots with a simulator (their spec's `sim`)."""
    return [name for name, spec in registry.robots().items() if spec.sim]


@dataclasses.dataclass
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    steps: int
    reward: float
    sim_seconds: float
    wall_seconds: float
    chunks: int
    commands: int
    inference_ms_p50: float
    obs_to_chunk_ms_p50: float
    command_rate_hz: float
    jitter_ms_p99: float


class Monitor(Node):
    def __init__(self, ns: str, camera_topic: str) -> None:
        super().__init__("sim_eval_monitor")
        self.episode: EpisodeStatus | None = None
        self.policy_status: PolicyStatus | None = None
        self.executor_status: ExecutorStatus | None = None
        self.counts: collections.Counter[str] = collections.Counter()
        self.frames: list[np.ndarray] = []
        self.keep_frame_every = 1.0  # s of sim time between kept frames
        self._last_kept = -1e9
        self.create_subscription(EpisodeStatus, f"/{ns}/episode_status", self._on_episode, 10)
        self.create_subscription(PolicyStatus, f"/{ns}/policy_status", lambda m: setattr(self, "policy_status", m), 10)
        self.create_subscription(
            ExecutorStatus, f"/{ns}/executor_status", lambda m: setattr(self, "executor_status", m), 10
        )
        self.create_subscription(JointState, f"/{ns}/joint_commands", lambda _m: self.counts.update(["commands"]), 50)
        self.create_subscription(Image, f"/{ns}/{camera_topic}", self._on_frame, 2)
        self.reset = self.create_client(ResetEpisode, f"/{ns}/reset")

    def _on_episode(self, msg: EpisodeStatus) -> None:
        self.episode = msg

    def _on_frame(self, msg: Image) -> None:
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if t - self._last_kept >= self.keep_frame_every and len(self.frames) < 8:
            self._last_kept = t
            self.frames.append(image_to_rgb(msg))


def _serve_small_policy(robot: RobotSpec, workdir: Path) -> tuple[object, str]:
    from openpi_core.policies.small_policy import make_small_policy  # noqa: PLC0415
    from openpi_core.serving.server import PolicyServer, ServerConfig  # noqa: PLC0415
    from openpi_core.serving.spec import spec_for  # noqa: PLC0415

    policy = make_small_policy(robot.sim_config, workdir / "small_policy")
    policy.infer(robot.make_example())  # compile before the episode starts
    server = PolicyServer(policy, ServerConfig(port=0), spec=spec_for(robot.name)).start()
    return server, f"ws://127.0.0.1:{server.port}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a node's log ('' when it has none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_nodes(graph: list[NodeSpec], env: dict[str, str], log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for spec in graph:
        log = open(log_dir / f"{spec.name}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(spec.command(), env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="`make demo`: one short ALOHA sim episode, outputs in demo_out/")
    p.add_argument("--sim", choices=simulated_robots(), default="aloha", help="the robot whose simulator to run")
    p.add_argument("--task", default="", help="default: the robot's sim_task (AlohaTransferCube-v0, ...)")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=400, help="control steps per episode")
    p.add_argument("--real-time-factor", type=float, default=1.0, help="sim s per wall s at most (0: max)")
    p.add_argument("--policy", choices=("small", *POLICY_SOURCES), default="small")
    p.add_argument("--config-name", default="", help="--policy checkpoint: e.g. pi0_aloha_sim, pi05_libero")
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--server-url", default="", help="--policy remote (key from $OPENPI_SERVER_API_KEY)")
    p.add_argument("--prompt", default="", help="default: the task's own instruction")
    p.add_argument("--rate", type=float, default=10.0, help="policy inference rate, Hz of sim time")
    p.add_argument("--namespace", default="sim_eval")
    p.add_argument("--out", type=Path, default=Path("sim_eval_out"), help="folder for the JSON report, PNG, logs")
    p.add_argument("--episode-timeout", type=float, default=600.0, help="wall seconds per episode")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="wall seconds for the nodes to come up")
    p.add_argument("--min-chunks", type=int, default=MIN_CHUNKS, help="chunks an episode needs to count as run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.demo:
        args.sim, args.episodes, args.max_steps = "aloha", 1, min(args.max_steps, 150)
        args.out = Path("demo_out") if args.out == Path("sim_eval_out") else args.out
        if os.environ.get("CHECKPOINT"):  # CONFIG= names the checkpoint's config (default: the sim's)
            args.policy, args.checkpoint_dir = "checkpoint", os.environ["CHECKPOINT"]
            args.config_name = args.config_name or os.environ.get("CONFIG", "")
    robot = registry.get(args.sim)
    if args.policy == "checkpoint":
        args.config_name = args.config_name or robot.sim_config
    task = args.task or robot.sim_task
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "logs"
    log_dir.mkdir(exist_ok=True)
    env = local_graph_env()

    server = None
    server_url = args.server_url
    policy = args.policy
    if policy == "small":
        print(
            f"policy: a SMALL {robot.sim_config} model with RANDOM weights (no pretrained weights are reachable"
            " here): the arms move, but not towards the task. Pass CHECKPOINT=<folder> (or --policy checkpoint) for"
            " a real one.",
            flush=True,
        )
        workdir = Path(tempfile.mkdtemp(prefix="openpi_small_policy_"))
        server, server_url = _serve_small_policy(robot, workdir)
        policy = "remote"
    config = RobotGraphConfig(
        robot=args.sim,
        namespace=args.namespace,
        policy=policy,
        config_name=args.config_name,
        checkpoint_dir=args.checkpoint_dir,
        server_url=server_url,
        prompt=args.prompt,
        rate=args.rate,
        sim=True,
        task=task,
        max_steps=args.max_steps,
        sim_real_time_factor=args.real_time_factor,
    )
    graph = robot_graph(config)
    print(
        f"sim_eval: {task}, {args.episodes} episode(s) of up to {args.max_steps} steps; nodes: "
        f"{', '.join(s.name for s in graph)} (logs in {log_dir})",
        flush=True,
    )
    apply_large_data_profile()
    results: list[EpisodeResult] = []
    codes: list[int] = []
    ok = True
    with stop_on_signals(signal.SIGINT, signal.SIGTERM) as stop:
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        procs = start_nodes(graph, env, log_dir)
        monitor = Monitor(args.namespace, robot.camera_topics[0])
        try:
            results, ok = _run_episodes(monitor, procs, graph, args, stop)
        finally:
            codes = stop_processes(procs, timeout=15.0)
            frames = list(monitor.frames)
            executor_status = monitor.executor_status
            monitor.destroy_node()
            rclpy.try_shutdown()
            if server is not None:
                server.stop()
    exit_codes = dict(zip([s.name for s in graph], codes, strict=True))
    _report(results, args, task, exit_codes, frames)
    few_chunks = [r.episode for r in results if r.chunks < args.min_chunks]
    if few_chunks:
        print(
            f"error: episode(s) {few_chunks} got fewer than {args.min_chunks} chunks from the policy", file=sys.stderr
        )
    no_commands = [r.episode for r in results if r.commands == 0]
    if no_commands:
        last = "none received" if executor_status is None else repr(executor_status.message)
        print(
            f"error: episode(s) {no_commands} got no command from the executor (its last status: {last})",
            file=sys.stderr,
        )
    bad_episodes = few_chunks + no_commands
    failed = {name: code for name, code in exit_codes.items() if code != 0}
    ok = ok and len(results) == args.episodes and not failed and not bad_episodes
    if not ok:
        for spec in graph:  # the nodes that failed first, then the rest: the reason is in someone's last lines
            if failed and spec.name not in failed:
                continue
            tail = log_tail(log_dir / f"{spec.name}.log")
            if tail:
                print(f"--- last lines of {spec.name} (exit {exit_codes[spec.name]}) ---\n{tail}", file=sys.stderr)
    print("sim_eval OK" if ok else "sim_eval FAILED", flush=True)
    return 0 if ok else 1


def _run_episodes(
    monitor: Monitor, procs: list[subprocess.Popen], graph: list[NodeSpec], args: argparse.Namespace, stop: object
) -> tuple[list[EpisodeResult], bool]:
    def spin(seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(monitor, timeout_sec=0.02)
            dead = [s.name for s, p in zip(graph, procs, strict=True) if p.poll() is not None]
            if dead:
                print(f"error: node(s) exited early: {dead} (see their logs)", file=sys.stderr)
                return False
            if stop.is_set():
                return False
        return True

    # The episode starts once the bridge and the policy node are up (an in-process policy compiles at configure).
    deadline = time.monotonic() + args.startup_timeout
    while not monitor.reset.service_is_ready() or monitor.episode is None or monitor.policy_status is None:
        late = time.monotonic() > deadline
        if late:
            print(f"error: the sim bridge and policy node were not up within {args.startup_timeout} s", file=sys.stderr)
        if late or not spin(0.2):
            return [], False
    results = []
    dt = 1.0 / registry.get(args.sim).control_rate  # the sim's control period
    for index in range(args.episodes):
        future = monitor.reset.call_async(ResetEpisode.Request(seed=index))
        while not future.done():
            if not spin(0.05):
                return results, False
        reply = future.result()
        if not reply.success:
            print(f"error: reset failed: {reply.message}", file=sys.stderr)
            return results, False
        target = int(reply.message.rsplit("episode ", 1)[1].rstrip(")"))
        print(f"episode {index}: {reply.message}", flush=True)
        commands0 = monitor.counts["commands"]
        start, next_print = time.monotonic(), 0.0
        while True:
            if not spin(0.05):
                return results, False
            ep = monitor.episode
            if ep is None or ep.episode != target:
                continue
            now = time.monotonic()
            figures = _figures(monitor)
            if now >= next_print:
                next_print = now + 2.0
                print(
                    f"  step {ep.step:4d}/{args.max_steps}  reward {ep.reward:.0f}/{ep.max_reward:.0f}"
                    f"  sim {ep.step * dt:5.1f} s in {now - start:5.1f} s wall"
                    f"  chunks {figures['chunks']:4d}  infer p50 {figures['inference_ms_p50']:7.1f} ms"
                    f"  obs->chunk p50 {figures['obs_to_chunk_ms_p50']:7.1f} ms"
                    f"  commands {monitor.counts['commands'] - commands0:5d}"
                    f" ({figures['command_rate_hz']:4.1f} Hz sim)",
                    flush=True,
                )
            if ep.done:
                break
            if now - start > args.episode_timeout:
                print(f"error: episode {index} did not finish within {args.episode_timeout} s", file=sys.stderr)
                return results, False
        results.append(
            EpisodeResult(
                episode=index,
                seed=index,
                success=bool(ep.success),
                steps=int(ep.step),
                reward=float(ep.reward),
                sim_seconds=ep.step * dt,
                wall_seconds=time.monotonic() - start,
                commands=monitor.counts["commands"] - commands0,
                **_figures(monitor),
            )
        )
    return results, True


def _figures(monitor: Monitor) -> dict:
    """The policy node's and executor's latest reported figures (NaN until they have produced anything)."""
    nan = float("nan")
    policy, executor = monitor.policy_status, monitor.executor_status
    running = policy is not None and policy.published_chunks > 0
    executing = executor is not None and executor.commands_published > 0
    return {
        "chunks": int(policy.published_chunks) if running else 0,
        "inference_ms_p50": policy.inference_p50 * 1e3 if running else nan,
        "obs_to_chunk_ms_p50": policy.latency_p50 * 1e3 if running else nan,
        "command_rate_hz": executor.command_rate if executing else nan,
        "jitter_ms_p99": executor.jitter_p99 * 1e3 if executing else nan,
    }


def _report(
    results: list[EpisodeResult], args: argparse.Namespace, task: str, codes: dict, frames: list[np.ndarray]
) -> None:
    print(f"\n{task}: {sum(r.success for r in results)}/{len(results)} successful")
    header = (
        "episode",
        "success",
        "steps",
        "reward",
        "sim s",
        "wall s",
        "chunks",
        "commands",
        "infer ms",
        "obs->chunk ms",
        "cmd Hz",
        "jitter p99 ms",
    )
    print("  " + "  ".join(f"{h:>9}" for h in header))
    for r in results:
        row = (
            r.episode,
            "yes" if r.success else "no",
            r.steps,
            f"{r.reward:.0f}",
            f"{r.sim_seconds:.1f}",
            f"{r.wall_seconds:.1f}",
            r.chunks,
            r.commands,
            f"{r.inference_ms_p50:.1f}",
            f"{r.obs_to_chunk_ms_p50:.1f}",
            f"{r.command_rate_hz:.1f}",
            f"{r.jitter_ms_p99:.2f}",
        )
        print("  " + "  ".join(f"{v!s:>9}" for v in row))
    if results:
        sim, wall = sum(r.sim_seconds for r in results), sum(r.wall_seconds for r in results)
        print(f"  sim speed: {sim / wall:.2f}x real time ({sum(r.steps for r in results) / wall:.1f} steps/s)")
    print(f"  node exit codes: {codes}")
    report = {
        "task": task,
        "policy": args.policy,
        "success_rate": (sum(r.success for r in results) / len(results)) if results else 0.0,
        "episodes": [dataclasses.asdict(r) for r in results],
        "exit_codes": codes,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"  report: {args.out / 'report.json'}")
    if frames:
        strip = cv2.cvtColor(np.concatenate(frames, axis=1), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(args.out / "camera_strip.png"), strip)
        print(f"  camera strip ({len(frames)} frames, 1 s of sim time apart): {args.out / 'camera_strip.png'}")


if __name__ == "__main__":
    sys.exit(main())
