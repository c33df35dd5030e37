"""The recorder node over real DDS: a synthetic ALOHA publishes cameras and joints, the recorder writes one bag per
episode (start/stop/discard through its services, a clean close on SIGINT), and the bags go through the converter
into a LeRobot dataset that `training/train.py` trains on for 2 steps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.ros import DISCOVERY_TIMEOUT, Probe, python_module

REPO = Path(__file__).resolve().parent.parent
CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


def _call(probe: Probe, client: object, request: object) -> object:
    future = client.call_async(request)
    probe.wait(future.done, f"{client.srv_name} to answer")
    return future.result()


def _read_bag(path: Path) -> tuple[dict[str, int], dict[str, str]]:
    from rosbags.highlevel import AnyReader  # noqa: PLC0415

    with AnyReader([path]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    custom = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    return counts, custom


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_records_episodes_that_convert_and_train(
    tmp_path: Path, ros_context: object, spawn: object, storage: str
) -> None:
    from openpi_msgs.srv import StartEpisode, StopEpisode  # noqa: PLC0415

    ns = f"rec_{storage}"
    topics = [f"/{ns}/{cam}/image_raw" for cam in CAMERAS] + [f"/{ns}/joint_states"]
    robot = ["--ros-args", "-r", f"__ns:=/{ns}", "-p", "image_height:=48", "-p", "image_width:=64"]
    spawn(python_module("openpi_ros.synthetic_robot_node", *robot))
    recorder = spawn(
        python_module(
            "openpi_ros.recorder_node",
            *("--ros-args", "-r", f"__ns:=/{ns}", "-p", f"topics:=[{','.join(topics)}]"),
            *("-p", f"output_dir:={tmp_path / 'demos'}", "-p", f"storage:={storage}", "-p", "task:=wave hello"),
        )
    )
    probe = Probe(ros_context, ns)
    try:
        start = probe.node.create_client(StartEpisode, f"/{ns}/recorder/start_episode")
        stop = probe.node.create_client(StopEpisode, f"/{ns}/recorder/stop_episode")
        probe.wait(lambda: start.service_is_ready() and stop.service_is_ready(), "the recorder's services")
        probe.wait(
            lambda: all(probe.node.count_subscribers(t) >= 1 for t in topics),
            "the recorder to subscribe",
            DISCOVERY_TIMEOUT,
        )
        assert not _call(probe, stop, StopEpisode.Request()).success  # nothing is recording yet

        first = _call(probe, start, StartEpisode.Request(task="stack the cups"))
        assert first.success, first.message
        assert not _call(probe, start, StartEpisode.Request()).success  # one episode at a time
        probe.spin(3.0)
        saved = _call(probe, stop, StopEpisode.Request())
        assert saved.success, saved.message
        assert saved.bag_path == first.bag_path
        assert saved.messages > 100

        failed = _call(probe, start, StartEpisode.Request(task="a failed try"))
        probe.spin(0.5)
        assert _call(probe, stop, StopEpisode.Request(discard=True)).success
        assert not Path(failed.bag_path).exists()

        last = _call(probe, start, StartEpisode.Request())
        probe.spin(3.0)
    finally:
        probe.close()
    recorder.send_signal(signal.SIGINT)  # mid-episode: the bag must still be closed properly
    assert recorder.wait(timeout=20) == 0, recorder.stdout.read()

    counts, custom = _read_bag(Path(saved.bag_path))
    assert set(counts) == set(topics)
    assert counts[f"/{ns}/joint_states"] >= 50  # 3 s at 50 Hz, on a loaded 2-core box at least a third
    assert all(counts[t] >= 30 for t in topics[:3])
    assert custom["openpi.task"] == "stack the cups"
    assert custom["openpi.end"] == "stopped"
    counts, custom = _read_bag(Path(last.bag_path))
    assert custom["openpi.task"] == "wave hello"
    assert custom["openpi.end"] == "shutdown"
    assert counts[f"/{ns}/joint_states"] >= 50
    assert sorted(p.name for p in (tmp_path / "demos").iterdir()) == ["episode_000000", "episode_000002"]
    if storage != "mcap":
        return

    mapping = {
        "repo_id": "local/aloha_demos",
        "fps": 30,
        "robot_type": "aloha",
        "max_staleness": 0.25,  # a 2-core box running the robot, the recorder and DDS can hiccup:
        "on_bad": "split",  # a hiccup ends an episode rather than the conversion
        "cameras": {"top": topics[0], "left_wrist": topics[1], "right_wrist": topics[2]},
        "state": [{"topic": topics[3]}],
        "action": "next_state",
    }
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    dataset = tmp_path / "aloha_demos"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "openpi_core.rosbag_to_lerobot.convert", str(tmp_path / "demos"),
         "--mapping", str(tmp_path / "mapping.yaml"), "--output", str(dataset), "--quiet"],
        check=False, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "2 episode(s)" in run.stdout

    # debug_aloha is offline by default: its small built-in tokenizer is made in this test's cache.
    env["OPENPI_DATA_HOME"] = str(tmp_path / "cache")
    overrides = [
        *("--data.repo-id", "local/aloha_demos", "--data.root", str(dataset)),
        *("--assets-base-dir", str(tmp_path / "assets"), "--checkpoint-base-dir", str(tmp_path / "ckpt")),
    ]
    stats = subprocess.run(
        [sys.executable, str(REPO / "training" / "compute_norm_stats.py"), "debug_aloha", *overrides],
        check=False, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert stats.returncode == 0, stats.stderr[-3000:]
    train = subprocess.run(
        [sys.executable, str(REPO / "training" / "train.py"), "debug_aloha", *overrides,
         "--exp-name", "recorded", "--num-train-steps", "2", "--save-interval", "2"],
        check=False, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "trained debug_aloha/recorded to step 2" in train.stdout
    checkpoint = tmp_path / "ckpt" / "debug_aloha" / "recorded" / "2"
    assert (checkpoint / "params").is_dir()
    # The checkpoint carries its tokenizer: served from a machine with an empty cache and no network.
    assert (checkpoint / "assets" / "tokenizers" / "paligemma_tokenizer.model").is_file()
    serve = (
        "from openpi_core.policies.aloha_policy import make_aloha_example;"
        "from openpi_core.policies.policy_config import create_trained_policy;"
        "from openpi_core.training.config import get_config;"
        f"policy = create_trained_policy(get_config('debug_aloha'), {str(checkpoint)!r}, "
        "sample_kwargs={'num_steps': 1});"
        "print(policy.infer(make_aloha_example())['actions'].shape)"
    )
    served = subprocess.run(
        [sys.executable, "-c", serve], check=False, capture_output=True, text=True, timeout=300,
        env={**env, "OPENPI_DATA_HOME": str(tmp_path / "empty_cache")},
    )  # fmt: skip
    assert served.returncode == 0, served.stderr[-3000:]
    assert served.stdout.strip().endswith("(10, 14)")
    assert not (tmp_path / "empty_cache" / "builtin").exists()  # the checkpoint's copy, not a fresh one
