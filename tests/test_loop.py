"""The loop without hardware, end to end at minimum size: record in the sim through the recorder, convert, norm
stats, train, serve, run through the ROS graph (ALOHA remote; the UR5e plugin both remote and in-process). Also
the tools around it: `openpi-record`, nodes answering `--help`, and `sim_eval` saying why it failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.ros import python_module

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
NODES = ["policy_node", "chunk_executor_node", "sim_bridge_node", "recorder_node", "synthetic_robot_node"]


def _loop(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = python_module(
        "openpi_ros.loop_demo",
        *("--out", str(tmp_path / "loop"), "--episodes", "2", "--record-seconds", "1.5"),
        *("--train-steps", "2", "--eval-seconds", "4", *args),
    )
    env = {**os.environ, "OPENPI_DATA_HOME": str(tmp_path / "cache")}  # the small tokenizer is made there
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, env=env)


@pytest.mark.parametrize(
    ("robot", "policy", "config"),
    [("aloha", "remote", "debug_aloha"), ("ur5e_lift", "checkpoint", "debug_ur5e_lift")],  # remote: ALOHA
)
def test_loop_records_converts_trains_serves_and_runs(tmp_path: Path, robot: str, policy: str, config: str) -> None:
    # The final episode at 0.1x real time: a loaded 2-core machine answered in ~1 s of wall time, and at the
    # sim's own pace (~0.28x) that is later than the debug config's 10-row (0.2 s) chunks last in sim time, so
    # the executor had nothing left to play.
    run = _loop(tmp_path, "--robot", robot, "--policy", policy, "--eval-real-time-factor", "0.1")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert run.stdout.rstrip().endswith("loop_demo OK")
    table = run.stdout[run.stdout.rindex("stage ") :]
    for stage in ("record", "convert", "norm stats", "train", "serve + run", "total"):
        assert f"\n{stage}" in table
    out = tmp_path / "loop"
    assert len(list((out / "bags").glob("episode_*"))) == 2
    report = json.loads((out / "conversion.json").read_text())
    assert report["episodes"] >= 2
    checkpoint = out / "checkpoints" / config / "loop" / "2"
    assert (checkpoint / "params").is_dir()
    # The checkpoint carries its tokenizer: it serves from a machine with an empty cache and no network.
    assert (checkpoint / "assets" / "tokenizers" / "paligemma_tokenizer.model").is_file()
    if robot == "aloha":
        serve = (
            "from openpi_core.robots import registry;"
            "from openpi_core.policies.policy_config import create_trained_policy;"
            "from openpi_core.training.configs import get_config;"
            f"policy = create_trained_policy(get_config({config!r}), {str(checkpoint)!r},"
            " sample_kwargs={'num_steps': 1});"
            f"print(policy.infer(registry.get({robot!r}).make_example())['actions'].shape)"
        )
        empty = {**os.environ, "OPENPI_DATA_HOME": str(tmp_path / "empty_cache"), "HF_HUB_OFFLINE": "1"}
        served = subprocess.run(
            [sys.executable, "-c", serve], capture_output=True, text=True, timeout=300, env=empty, check=False
        )
        assert served.returncode == 0, served.stderr[-3000:]
        assert served.stdout.strip().endswith("(10, 14)")
        assert not (tmp_path / "empty_cache" / "builtin").exists()  # the checkpoint's copy, not a fresh one
    for source in ("remote", "checkpoint") if policy == "both" else (policy,):
        episode = json.loads((out / f"eval_{source}" / "report.json").read_text())
        assert episode["policy"] == source
        assert episode["episodes"][0]["chunks"] >= 3
        assert episode["exit_codes"] == {"sim_bridge": 0, "policy_node": 0, "chunk_executor": 0}


def test_loop_refuses_a_robot_it_cannot_drive(tmp_path: Path) -> None:
    run = _loop(tmp_path, "--robot", "droid")
    assert run.returncode == 1
    assert "needs a simulator" in run.stderr


def test_openpi_record_drives_the_recorder(tmp_path: Path, ros_context: object, spawn: object) -> None:
    def record(*args: str) -> subprocess.CompletedProcess:
        command = python_module("openpi_ros.record_cli", *args, "--recorder", "/cli/recorder", "--timeout", "30")
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    missing = subprocess.run(
        python_module("openpi_ros.record_cli", "stop", "--recorder", "/nobody/recorder", "--timeout", "1"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "no recorder at /nobody/recorder answered" in missing.stderr
    spawn(
        python_module(
            "openpi_ros.recorder_node",
            *("--ros-args", "-r", "__ns:=/cli", "-p", "topics:=[/cli/joint_states]"),
            *("-p", f"output_dir:={tmp_path / 'demos'}"),
        )
    )
    started = record("start", "--task", "stack the cups")
    assert started.returncode == 0, started.stderr
    assert "recording episode_000000" in started.stdout
    stopped = record("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "saved episode_000000" in stopped.stdout
    assert (tmp_path / "demos" / "episode_000000" / "metadata.yaml").is_file()
    assert record("start").returncode == 0
    discarded = record("discard")
    assert "discarded episode_000001" in discarded.stdout
    assert not (tmp_path / "demos" / "episode_000001").exists()
    again = record("stop")
    assert again.returncode == 1
    assert "no episode is recording" in again.stderr


@pytest.mark.parametrize("node", NODES)
def test_nodes_answer_help_instead_of_starting(node: str) -> None:
    run = subprocess.run(
        python_module(f"openpi_ros.{node}", "--help"), capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "--ros-args -p" in run.stdout
    assert "Node `" in run.stdout or "node" in run.stdout.lower()
    assert "[INFO]" not in run.stdout + run.stderr  # no node came up


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # A policy node whose configure fails: its own error line reaches the screen, the run fails.
        (["--policy", "checkpoint", "--config-name", "debug_aloha", "--checkpoint-dir", "/nonexistent/ckpt"],
         "last lines of policy_node (exit 1)"),
        # A run that never really acted is no success.
        (["--policy", "hold", "--min-chunks", "100000"], "fewer than 100000 chunks"),
    ],
)  # fmt: skip
def test_sim_eval_says_why_it_failed(tmp_path: Path, args: list[str], says: str) -> None:
    command = python_module(
        "openpi_ros.sim_eval", "--sim", "aloha", "--max-steps", "20", "--out", str(tmp_path), "--startup-timeout",
        "120", "--namespace", f"fail_{len(args)}", *args,
    )  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1, run.stdout[-2000:]
    assert says in run.stderr, run.stderr[-3000:]
    assert "sim_eval FAILED" in run.stdout
    if "checkpoint" in args:
        assert "/nonexistent/ckpt" in run.stderr  # the reason itself, not just "FAILED"
