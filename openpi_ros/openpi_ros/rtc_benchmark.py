"""Real-time chunking measured: motion at chunk switches per execution strategy and inference delay, in the ALOHA sim.

    python -m openpi_ros.rtc_benchmark                                  # broker/ensemble/blend/rtc x 100/200/300 ms
    python -m openpi_ros.rtc_benchmark --delays 200 --strategies broker rtc --seconds 5
    python -m openpi_ros.rtc_benchmark --cost-only                      # the inference cost of guidance only

Each case runs the ALOHA sim graph (sim bridge -> policy node -> chunk executor, each its own process over real
DDS, on sim time) against a policy server in this process that serves a SMALL RANDOM-WEIGHT π₀ model
(`make_small_policy`, no pretrained weights are reachable here) and pads every answer to the injected inference
delay. Strategy ``rtc`` turns on the policy node's real-time chunking (guided sampling towards the last chunk);
``rtc-training`` is the same graph with a model configured for training-time RTC (its given rows are the prefix;
random weights, so only the mechanics are measured). From the executor's commands it reports, per case, the
largest joint step per control period at chunk switches (the two commands after each chunk's arrival) and within
chunks (max and p99, rad or gripper units), the RMS jerk, and the time the executor was not executing (holding
for want of a fresh chunk, stopped, or in a tracking fault). Then,
outside ROS, the cost of guidance: model time of a guided and a training-time chunk relative to a plain one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState

from openpi_core.policies import PolicyClient
from openpi_core.policies.protocol import DELAY_KEY, HORIZON_KEY, PREFIX_KEY
from openpi_core.robots import registry
from openpi_msgs.msg import ActionChunk, ExecutorStatus
from openpi_ros.dds import apply_large_data_profile
from openpi_ros.graphs import RobotGraphConfig, robot_graph
from openpi_ros.messages import from_time
from openpi_ros.processes import local_graph_env, stop_on_signals, stop_processes
from openpi_ros.sim_eval import log_tail, start_nodes

STRATEGIES = ("broker", "ensemble", "blend", "rtc", "rtc-training")
CONFIG = "pi0_aloha_sim"
SWITCH_STEPS = 2  # commands after a chunk's arrival that count as "at the switch"
TRAINING_RTC_MAX_DELAY = 25
STALE_TIMEOUT_S = 2.0


class PaddedLatencyPolicy:
    """A policy whose answers take at least `latency_s` (the injected inference delay); counts prefixed requests."""

    def __init__(self, policy: PolicyClient, latency_s: float = 0.0) -> None:
        self.policy = policy
        self.latency_s = latency_s
        self.requests = 0
        self.prefixed = 0
        self.delays: list[int] = []
        self.over = 0  # answers that took longer than the target without padding
        self._lock = threading.Lock()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.policy.metadata

    def reset(self) -> None:
        self.policy.reset()

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        result = self.policy.infer(obs)
        left = self.latency_s - (time.perf_counter() - start)
        with self._lock:
            self.requests += 1
            if PREFIX_KEY in obs:
                self.prefixed += 1
                self.delays.append(int(obs[DELAY_KEY]))
            self.over += left < 0
        if left > 0:
            time.sleep(left)
        return result

    def reset_counts(self) -> None:
        with self._lock:
            self.requests, self.prefixed, self.delays, self.over = 0, 0, [], 0


def motion_metrics(
    stamps_ns: np.ndarray,
    commands: np.ndarray,
    arrivals_ns: np.ndarray,
    *,
    status: list[tuple[int, int]],
    period_s: float,
    window_ns: tuple[int, int],
) -> dict[str, float]:
    """Smoothness of the commands [N, J] stamped `stamps_ns` within `window_ns`, given chunk arrival times and the
    executor's (stamp, state) reports. Steps: the largest joint change between consecutive commands; a step is at a
    switch when it is one of the `SWITCH_STEPS` first commands at or after a chunk's arrival."""
    start, end = window_ns
    keep = (stamps_ns >= start) & (stamps_ns <= end)
    stamps, commands = stamps_ns[keep], commands[keep]
    if len(commands) < 4:
        raise ValueError(f"only {len(commands)} commands in the measured window: did the executor run?")
    steps = np.max(np.abs(np.diff(commands, axis=0)), axis=1)  # step k: between command k and k + 1
    step_stamps = stamps[1:]
    arrivals = arrivals_ns[(arrivals_ns >= start) & (arrivals_ns <= end)]
    at_switch = np.zeros(len(steps), bool)
    for arrival in arrivals:
        first = int(np.searchsorted(step_stamps, arrival))
        at_switch[first : first + SWITCH_STEPS] = True
    jerk = np.diff(commands, n=3, axis=0) / period_s**3
    not_executing = _not_executing_seconds(status, start, end)

    def stat(values: np.ndarray, q: float | None) -> float:
        if not len(values):
            return float("nan")
        return float(np.max(values) if q is None else np.percentile(values, q))

    return {
        "switch_step_max": stat(steps[at_switch], None),
        "switch_step_p99": stat(steps[at_switch], 99),
        "within_step_max": stat(steps[~at_switch], None),
        "within_step_p99": stat(steps[~at_switch], 99),
        "jerk_rms": float(np.sqrt(np.mean(jerk**2))),
        "not_executing_s": not_executing,
        "switches": len(arrivals),
        "commands": len(commands),
    }


def _not_executing_seconds(status: list[tuple[int, int]], start: int, end: int) -> float:
    """Seconds within [start, end] the executor reported a state other than EXECUTING."""
    total, state, since = 0, None, start
    for stamp, reported in sorted(status):
        if stamp <= start:
            state = reported
            continue
        if stamp > end:
            break
        if state is not None and state != ExecutorStatus.STATE_EXECUTING:
            total += stamp - since
        state, since = reported, stamp
    if state is not None and state != ExecutorStatus.STATE_EXECUTING:
        total += end - since
    return total * 1e-9


class Recorder(Node):
    """Commands, chunk arrivals (sim time) and executor states of one namespace."""

    def __init__(self, ns: str) -> None:
        super().__init__("rtc_benchmark_recorder", parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.stamps: list[int] = []
        self.commands: list[np.ndarray] = []
        self.arrivals: list[int] = []
        self.status: list[tuple[int, int]] = []
        self.create_subscription(JointState, f"/{ns}/joint_commands", self._on_command, 200)
        self.create_subscription(ActionChunk, f"/{ns}/action_chunk", self._on_chunk, 50)
        self.create_subscription(ExecutorStatus, f"/{ns}/executor_status", self._on_status, 50)

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_command(self, msg: JointState) -> None:
        self.stamps.append(from_time(msg.header.stamp))
        self.commands.append(np.asarray(msg.position, np.float64))

    def _on_chunk(self, msg: ActionChunk) -> None:
        self.arrivals.append(self.now_ns())

    def _on_status(self, msg: ExecutorStatus) -> None:
        self.status.append((from_time(msg.header.stamp), int(msg.state)))


@dataclasses.dataclass(frozen=True)
class Case:
    strategy: str
    delay_ms: int


def run_case(
    case: Case, *, server_url: str, policy: PaddedLatencyPolicy, args: argparse.Namespace, log_dir: Path, stop: Any
) -> dict[str, Any]:
    ns = f"rtc_bench_{case.strategy.replace('-', '_')}_{case.delay_ms}"
    config = RobotGraphConfig(
        robot="aloha",
        namespace=ns,
        policy="remote",
        server_url=server_url,
        strategy="rtc" if case.strategy.startswith("rtc") else case.strategy,
        rate=args.rate,
        sim=True,
        max_steps=1_000_000,  # one episode for the whole case
        sim_image_size=args.image_size,
        max_chunk_age=2.0,
    )
    # The executor's freshness limit is wall time and the sim runs slower than real time here: hold only when a
    # chunk has really run out (its rows are 1 s of sim time), not because the wall clock ran ahead.
    graph = [
        dataclasses.replace(spec, parameters={**spec.parameters, "stale_timeout": STALE_TIMEOUT_S})
        if spec.name == "chunk_executor"
        else spec
        for spec in robot_graph(config)
    ]
    policy.latency_s = case.delay_ms * 1e-3
    policy.reset_counts()
    period = 1.0 / registry.get("aloha").control_rate
    recorder = Recorder(ns)
    procs = start_nodes(graph, local_graph_env(), log_dir)
    try:
        deadline = time.monotonic() + args.startup_timeout
        warmup_end = measure_end = None
        while True:
            rclpy.spin_once(recorder, timeout_sec=0.02)
            dead = [spec.name for spec, proc in zip(graph, procs, strict=True) if proc.poll() is not None]
            if dead or stop.is_set():
                tails = "\n".join(f"--- {n} ---\n{log_tail(log_dir / f'{n}.log')}" for n in dead)
                raise RuntimeError(f"{case}: node(s) {dead or '(interrupted)'} exited early\n{tails}")
            if warmup_end is None:
                if recorder.arrivals and recorder.stamps:
                    warmup_end = recorder.now_ns() + int(args.warmup * 1e9)
                    measure_end = warmup_end + int(args.seconds * 1e9)
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"{case}: no chunk within {args.startup_timeout} s (logs in {log_dir})")
            elif recorder.now_ns() >= measure_end:
                break
            elif time.monotonic() > deadline + args.case_timeout:
                raise RuntimeError(f"{case}: {args.seconds} sim s did not pass within {args.case_timeout} wall s")
    finally:
        codes = stop_processes(procs, timeout=15.0)
        recorder.destroy_node()
    metrics = motion_metrics(
        np.asarray(recorder.stamps, np.int64),
        np.stack(recorder.commands),
        np.asarray(recorder.arrivals, np.int64),
        status=recorder.status,
        period_s=period,
        window_ns=(warmup_end, measure_end),
    )
    return {
        "strategy": case.strategy,
        "delay_ms": case.delay_ms,
        **metrics,
        "requests": policy.requests,
        "prefixed": policy.prefixed,
        "delay_rows_p50": float(np.median(policy.delays)) if policy.delays else float("nan"),
        "slower_than_delay": policy.over,
        "exit_codes": dict(zip([s.name for s in graph], codes, strict=True)),
    }


def guidance_cost(repeats: int) -> list[dict[str, Any]]:
    """Model time of plain, guided (VJP and LeRobot's identity Jacobian) and training-time-RTC chunks, tiny models."""
    from openpi_core.models import rtc  # noqa: PLC0415
    from openpi_core.policies.small_policy import make_small_policy  # noqa: PLC0415

    rows = []
    example = registry.get("aloha").make_example()
    horizon = 50
    prefix = {
        PREFIX_KEY: np.zeros((horizon - 5, 14), np.float32),
        DELAY_KEY: 4,
        HORIZON_KEY: horizon - 5,
    }
    with tempfile.TemporaryDirectory(prefix="rtc_cost_") as tmp:
        for config_name in ("pi0_aloha_sim", "pi05_aloha"):
            variants = {
                "plain": ({}, {}, False),
                "guided (VJP)": ({}, {}, True),
                "guided (identity)": ({}, {"guidance": rtc.Guidance(through_denoiser=False)}, True),
                "training-time": ({"training_rtc_max_delay": 10}, {}, True),
            }
            timings = {}
            for name, (overrides, sample_kwargs, with_prefix) in variants.items():
                policy = make_small_policy(
                    config_name,
                    Path(tmp) / f"{config_name}_{len(timings)}",
                    num_steps=10,
                    model_overrides=overrides,
                    sample_kwargs=sample_kwargs,
                )
                obs = {**example, **prefix} if with_prefix else example
                policy.infer(obs)  # compile
                timings[name] = float(
                    np.median([policy.infer(obs)["policy_timing"]["infer_ms"] for _ in range(repeats)])
                )
            plain = timings["plain"]
            for name, ms in timings.items():
                rows.append({"model": config_name, "variant": name, "infer_ms": ms, "ratio": ms / plain})
                print(f"  {config_name:14s} {name:18s} {ms:8.1f} ms  x{ms / plain:.2f}", flush=True)
    return rows


def _serve(model_overrides: dict, tmp: Path) -> tuple[Any, PaddedLatencyPolicy, str]:
    from openpi_core.policies.small_policy import make_small_policy  # noqa: PLC0415
    from openpi_core.serving.server import PolicyServer, ServerConfig  # noqa: PLC0415
    from openpi_core.serving.spec import spec_for  # noqa: PLC0415

    robot = registry.get("aloha")
    policy = make_small_policy(CONFIG, tmp, num_steps=5, model_overrides=model_overrides)
    policy.infer(robot.make_example())  # compile the plain sampler
    policy.infer({**robot.make_example(), PREFIX_KEY: np.zeros((40, 14), np.float32), DELAY_KEY: 3})  # and the RTC one
    padded = PaddedLatencyPolicy(policy)
    server = PolicyServer(padded, ServerConfig(port=0), spec=spec_for("aloha")).start()
    return server, padded, f"ws://127.0.0.1:{server.port}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--delays", nargs="+", type=int, default=[100, 200, 300], help="injected inference delays, ms")
    p.add_argument("--seconds", type=float, default=8.0, help="measured sim seconds per case")
    p.add_argument("--warmup", type=float, default=1.0, help="sim seconds after the first chunk before measuring")
    p.add_argument("--rate", type=float, default=10.0, help="the policy node's request rate (Hz, upper bound)")
    p.add_argument("--image-size", type=int, default=96, help="the sim's camera size")
    p.add_argument("--startup-timeout", type=float, default=120.0, help="wall s for the first chunk of a case")
    p.add_argument("--case-timeout", type=float, default=300.0, help="wall s for a case's measurement")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per variant in the cost measurement")
    p.add_argument("--cost-only", action="store_true", help="only the inference cost of guidance")
    p.add_argument("--no-cost", action="store_true", help="skip the inference cost of guidance")
    p.add_argument("--out", type=Path, default=Path("rtc_benchmark_out"), help="folder for report.json and logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "logs"
    log_dir.mkdir(exist_ok=True)
    report: dict[str, Any] = {"model": f"{CONFIG}, small, RANDOM weights, 5 flow steps", "cases": [], "cost": []}
    if not args.cost_only:
        print(
            f"rtc_benchmark: ALOHA sim graph, a SMALL RANDOM-WEIGHT {CONFIG} model (mechanics only), "
            f"{args.seconds} sim s per case",
            flush=True,
        )
        local_graph_env()
        apply_large_data_profile()
        with stop_on_signals(signal.SIGINT, signal.SIGTERM) as stop, tempfile.TemporaryDirectory() as tmp:
            rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
            servers: dict[bool, tuple[Any, PaddedLatencyPolicy, str]] = {}
            print(_HEADER, flush=True)
            try:
                for strategy in args.strategies:
                    training = strategy == "rtc-training"
                    if training not in servers:
                        overrides = {"training_rtc_max_delay": TRAINING_RTC_MAX_DELAY} if training else {}
                        servers[training] = _serve(overrides, Path(tmp) / str(training))
                    _, policy, url = servers[training]
                    for delay in args.delays:
                        row = run_case(
                            Case(strategy, delay), server_url=url, policy=policy, args=args, log_dir=log_dir, stop=stop
                        )
                        report["cases"].append(row)
                        _print_row(row)
            finally:
                for server, _, _ in servers.values():
                    server.stop()
                rclpy.try_shutdown()
    if not args.no_cost:
        print("inference cost of guidance (tiny models, 50 rows, 10 flow steps, model time, median):", flush=True)
        report["cost"] = guidance_cost(args.repeats)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {args.out / 'report.json'}")
    failed = [r for r in report["cases"] if any(code != 0 for code in r["exit_codes"].values())]
    return 1 if failed else 0


_HEADER = (
    f"{'strategy':>12} {'delay':>6} {'switch max':>10} {'switch p99':>10} {'within max':>10} {'within p99':>10}"
    f" {'jerk rms':>10} {'idle s':>7} {'chunks':>6} {'prefixed':>8} {'d rows':>6}"
)


def _print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['strategy']:>12} {row['delay_ms']:>4}ms {row['switch_step_max']:10.4f} {row['switch_step_p99']:10.4f}"
        f" {row['within_step_max']:10.4f} {row['within_step_p99']:10.4f} {row['jerk_rms']:10.1f}"
        f" {row['not_executing_s']:7.2f} {row['switches']:6d} {row['prefixed']:8d} {row['delay_rows_p50']:6.1f}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
