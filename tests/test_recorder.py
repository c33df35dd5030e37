"""The recorder node over real DDS: a synthetic ALOHA publishes cameras and joints, the recorder writes one bag per
episode (start/stop/discard through its services, a clean close on SIGINT). That recorded bags convert, train and
serve is `tests/test_loop.py`'s loop (the recorder in the sim, then the converter, train.py and a policy server)."""

from __future__ import annotations

import signal
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
def test_recorder_records_episodes(tmp_path: Path, ros_context: object, spawn: object, storage: str) -> None:
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
