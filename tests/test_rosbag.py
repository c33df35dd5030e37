"""rosbag → LeRobot v3.0 conversion: bags written at realistic rates, converted by the CLI in a child process,
reopened with lerobot's `LeRobotDataset` and checked frame by frame against what the bags hold; each kind of bad
input gets an error naming the bag, topic and time, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import bags as b

from openpi_core.rosbag_to_lerobot.convert import convert
from openpi_core.rosbag_to_lerobot.errors import ConversionError, MappingError
from openpi_core.rosbag_to_lerobot.mapping import parse_mapping

REPO = Path(__file__).resolve().parent.parent
FPS = 30


def _convert(
    tmp: Path, inputs: list[Path], mapping: dict, *extra: str, output: str = "dataset"
) -> subprocess.CompletedProcess:
    (tmp / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    cmd = [sys.executable, "-m", "openpi_core.rosbag_to_lerobot.convert", *map(str, inputs)]
    cmd += ["--mapping", str(tmp / "mapping.yaml"), "--output", str(tmp / output), "--quiet", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, env=env)


def _open(root: Path) -> object:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: PLC0415

    return LeRobotDataset("local/demo_bags", root=root)


def _image(item: dict, camera: str) -> np.ndarray:
    """A frame as HWC uint8 (lerobot returns float CHW in [0, 1])."""
    return np.round(item[f"observation.images.{camera}"].numpy().transpose(1, 2, 0) * 255).astype(np.int16)


def _expected(k: int, joint_rate: int = 50, duration: float = 2.0) -> tuple[float, int]:
    """Frame k of an unbroken demo bag: the time of the joint message it holds, and its camera message index
    (frames after a stream's last message hold it while it is fresh)."""
    joint = min(k * joint_rate // FPS, int(duration * joint_rate) - 1)
    return joint / joint_rate, min(k, int(duration * FPS) - 1)  # cameras run at the dataset's 30 fps


def _no_leftovers(tmp: Path) -> None:
    assert not (tmp / "dataset").exists()
    assert not [p for p in tmp.iterdir() if ".partial-" in p.name], "a staging folder was left behind"


@pytest.mark.slow
@pytest.mark.parametrize(("storage", "video"), [("mcap", True), ("sqlite3", False), ("ros1", False)])
def test_bags_convert_frame_by_frame(tmp_path: Path, storage: str, video: bool) -> None:
    suffix = ".bag" if storage == "ros1" else ""
    first = b.write_demo_bag(tmp_path / f"a{suffix}", storage=storage, task="pick up the cube", ros1=storage == "ros1")
    second = b.write_demo_bag(
        tmp_path / f"b{suffix}", storage=storage, shuffle_joint_order=True, ros1=storage == "ros1"
    )
    run = _convert(tmp_path, [first, second], b.mapping(video=video), "--workers", "2")
    assert run.returncode == 0, run.stderr
    dataset = _open(tmp_path / "dataset")
    assert dataset.meta.total_episodes == 2
    # t = 0 .. 62/30 s: the cameras' last message (59/30 s) stays fresh (max_staleness 0.1 s) for 3 more frames
    frames_per_episode = 63
    assert len(dataset) == 2 * frames_per_episode
    assert dataset.fps == FPS
    names = dataset.meta.features["observation.state"]["names"]
    assert names[:2] == ["left/left_waist", "left/left_shoulder"]  # prefixed with each arm's namespace
    assert names[7] == "right/left_waist".replace("left_", "right_")
    assert len(set(names)) == 14
    tolerance = 6 if video else 2  # video is lossy; raw frames are stored losslessly, JPEG off by a level or two
    # The task from the bag's metadata (rosbag2 custom_data; ROS 1 bags have none), else the mapping's.
    tasks = ["fold the towel" if storage == "ros1" else "pick up the cube", "fold the towel"]
    for episode, task in enumerate(tasks):
        for k in range(0, frames_per_episode, 7 if video else 1):
            item = dataset[episode * frames_per_episode + k]
            assert item["task"] == task
            assert int(item["frame_index"]) == k
            assert float(item["timestamp"]) == pytest.approx(k / FPS, abs=1e-4)
            t_joint, camera_index = _expected(k)
            state = np.concatenate([b.joint_values(t_joint, 7), b.joint_values(t_joint, 7)]).astype(np.float32)
            np.testing.assert_array_equal(
                item["observation.state"].numpy(), state, err_msg=f"episode {episode} frame {k}"
            )
            np.testing.assert_array_equal(item["action"].numpy(), -state)
            for c_index, camera in enumerate(b.CAMERAS):
                got = _image(item, camera.name)
                assert got.shape == (48, 64, 3)
                err = np.abs(got - np.array(b.colour(c_index, camera_index))).max()
                assert err <= tolerance, f"episode {episode} frame {k} camera {camera.name}: off by {err}"
    report = json.loads((tmp_path / "dataset" / "conversion_report.json").read_text())
    assert [bag["frames"] for bag in report["bags"]] == [63, 63]
    camera = report["bags"][0]["topics"]["/cam_high/image_raw"]
    assert camera["messages"] == 60
    assert camera["rate_hz"] == pytest.approx(30.0)
    assert camera["gaps"] == 0


@pytest.mark.slow
def test_markers_split_episodes_and_next_state_actions(tmp_path: Path) -> None:
    bag = b.write_demo_bag(
        tmp_path / "bag",
        duration=3.0,
        markers=[(0.2, "start: open the drawer"), (1.2, "stop"), (1.5, "start"), (2.9, "stop")],
    )
    mapping = b.mapping(action="next_state", episodes={"split": "markers", "marker_topic": "/episode_marker"})
    run = _convert(tmp_path, [bag], mapping, "--workers", "1")
    assert run.returncode == 0, run.stderr
    dataset = _open(tmp_path / "dataset")
    assert dataset.meta.total_episodes == 2
    tasks = [dataset[int(dataset.meta.episodes[i]["dataset_from_index"])]["task"] for i in range(2)]
    assert tasks == ["open the drawer", "fold the towel"]  # the marker's task, else the mapping's
    # Markers count by their receive time; episode 1 covers the frames at 0.2 s <= t < 1.2 s.
    first = dataset.meta.episodes[0]
    assert first["length"] == 30  # frames k = 6..35 (t < 1.2 s); the last one's next state (k = 36) is fresh
    for i in range(first["length"] - 1):
        item, following = dataset[i], dataset[i + 1]
        np.testing.assert_array_equal(item["action"].numpy(), following["observation.state"].numpy())
    item = dataset[0]
    t_joint, _camera_index = _expected(6)  # the first frame at or after the 0.2 s marker: k = 6
    np.testing.assert_array_equal(item["observation.state"].numpy()[:7], b.joint_values(t_joint, 7).astype(np.float32))


@pytest.mark.slow
def test_a_camera_gap_splits_the_episode_and_is_reported(tmp_path: Path) -> None:
    bag = b.write_demo_bag(tmp_path / "bag", duration=3.0, camera_gap=(1.0, 1.5))
    run = _convert(tmp_path, [bag], b.mapping())  # on_bad: fail (the default) refuses and says what would keep it
    assert run.returncode == 2
    assert "topic /cam_high/image_raw went stale at t=1700000001.100000 s for 0.400 s" in run.stderr, run.stderr
    assert "max_staleness 0.500 would keep these frames" in run.stderr
    _no_leftovers(tmp_path)
    run = _convert(tmp_path, [bag], b.mapping(on_bad="split"), "--report", str(tmp_path / "report.json"))
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())["bags"][0]
    top = report["topics"]["/cam_high/image_raw"]
    assert top["gaps"] == 1
    assert top["max_gap_s"] == pytest.approx(16 / 30, abs=1e-3)
    assert top["dropped_estimate"] == 15
    # The gap holds frame 29 (0.9667 s) until 1.5 s; frames older than 0.1 s there are dropped: t in (1.0667, 1.5)
    assert report["stale_frames"] == 12
    assert [e["frames"] for e in report["episodes"]] == [33, 48]
    assert report["splits"] == [
        "split at t=1700000001.100 s: /cam_high/image_raw stale for 0.400 s "
        "(newest message up to 0.500 s old; max_staleness 0.500 would have kept it)"
    ]
    assert "split at t=1700000001.100 s" in run.stdout
    assert "/cam_high/image_raw" in run.stdout
    assert "gaps" in run.stdout
    dataset = _open(tmp_path / "dataset")
    assert dataset.meta.total_episodes == 2


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


BAD = {
    # name: (bag writer options, how to break it afterwards, mapping overrides, expected message)
    "truncated mcap": ({}, lambda p: _truncate(next(p.glob("*.mcap")), 0.5), {}, r"bag .*bad.*: .*"),
    "corrupt sqlite": (
        {"storage": "sqlite3"},
        lambda p: _truncate(next(p.glob("*.db3")), 0.3),
        {},
        r"bag .*bad.*(malformed|not a database|cannot open|Error)",
    ),
    "no metadata (killed recorder)": ({}, lambda p: (p / "metadata.yaml").unlink(), {}, r"no metadata\.yaml"),
    "missing topic": ({"skip_topics": ["/right/commands"]}, None, {}, r"topic /right/commands: not in the bag"),
    "unknown message type": (
        {},
        None,
        {"cameras": {"top": "/left/commands"}, "action": "next_state"},
        r"topic /left/commands: unsupported message type sensor_msgs/msg/JointState for a camera",
    ),
    "missing joint": (
        {"rename_joint": "left_base"},
        None,
        {},
        r"topic /left/joint_states, t=1700000000\.002000 s: .*\['left_waist'\] missing",
    ),
    "time goes backwards": (
        {"backwards_at": 1.0},
        None,
        {},
        r"topic /left/joint_states, t=1700000000\.500000 s: header time goes backwards",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_bags_are_named_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    """In this process (workers=0: no process start-up); the CLI's exit code and message are checked below."""
    options, breaker, overrides, message = BAD[case]
    good = b.write_demo_bag(tmp_path / "good", storage=options.get("storage", "mcap"))
    bad = b.write_demo_bag(tmp_path / "bad", **options)
    if breaker:
        breaker(bad)
    mapping = parse_mapping(b.mapping(**overrides))
    with pytest.raises(ConversionError) as error:
        convert([bad, good], mapping, tmp_path / "dataset", workers=0, show_progress=False)
    text = str(error.value)
    assert text.startswith(f"bag {bad}"), text
    assert re.search(message, text), text
    assert "nothing was written" in text
    _no_leftovers(tmp_path)


def test_cli_reports_a_bad_bag_and_exits_2(tmp_path: Path) -> None:
    good = b.write_demo_bag(tmp_path / "good")
    bad = b.write_demo_bag(tmp_path / "bad", backwards_at=1.0)
    run = _convert(tmp_path, [good, bad], b.mapping(), "--workers", "2")
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith(f"error: bag {bad}, topic /left/joint_states"), run.stderr
    assert "time goes backwards" in run.stderr
    _no_leftovers(tmp_path)


def test_joint_names_that_differ_between_episodes_are_refused(tmp_path: Path) -> None:
    first = b.write_demo_bag(tmp_path / "first")
    second = b.write_demo_bag(tmp_path / "second", rename_joint="left_base")
    mapping = b.mapping(action="next_state", state=[{"topic": t} for t in b.ARMS])  # names from the bags
    run = _convert(tmp_path, [first, second], mapping)
    assert run.returncode == 2
    assert "bag " + str(tmp_path / "second") in run.stderr
    assert "joint names" in run.stderr
    assert "differ from bag " + str(tmp_path / "first") in run.stderr
    _no_leftovers(tmp_path)


@pytest.mark.slow
def test_skip_bad_keeps_the_good_bags_and_reports_the_bad(tmp_path: Path) -> None:
    good = b.write_demo_bag(tmp_path / "good")
    bad = b.write_demo_bag(tmp_path / "bad", backwards_at=1.0)
    (tmp_path / "dataset").mkdir()  # an older conversion: replaced only once the new one is complete
    (tmp_path / "dataset" / "old").write_text("x")
    run = _convert(tmp_path, [good, bad], b.mapping(), "--skip-bad")
    assert run.returncode == 2
    assert "exists; pass --overwrite" in run.stderr
    run = _convert(tmp_path, [good, bad], b.mapping(), "--skip-bad", "--overwrite")
    assert run.returncode == 0, run.stderr
    assert "SKIPPED bag " + str(bad) in run.stdout
    dataset = _open(tmp_path / "dataset")
    assert dataset.meta.total_episodes == 1
    assert not (tmp_path / "dataset" / "old").exists()
    report = json.loads((tmp_path / "dataset" / "conversion_report.json").read_text())
    assert "time goes backwards" in report["bags"][1]["error"]


def test_mapping_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"m\.yaml\.cameras\.top: unknown key\(s\) \['topik'\]"):
        parse_mapping(b.mapping(cameras={"top": {"topik": "/x"}}), "m.yaml")
    with pytest.raises(MappingError, match=r"m\.yaml: missing key 'state'"):
        parse_mapping({k: v for k, v in b.mapping().items() if k != "state"}, "m.yaml")
    with pytest.raises(MappingError, match=r"m\.yaml\.episodes\.marker_topic: required"):
        parse_mapping(b.mapping(episodes={"split": "markers"}), "m.yaml")
    with pytest.raises(MappingError, match=r"topic /left/joint_states is used twice \(cameras\.top and state\)"):
        parse_mapping(b.mapping(cameras={"top": "/left/joint_states"}), "m.yaml")
    with pytest.raises(MappingError, match=r"m\.yaml\.fps: expected a positive integer"):
        parse_mapping(b.mapping(fps=0), "m.yaml")
    mapping = parse_mapping(b.mapping(), "m.yaml")
    assert mapping.cameras["right_wrist"].topic == "/cam_right_wrist/image_raw/compressed"
    (tmp_path / "m.yaml").write_text(": not yaml : [")
    run = subprocess.run(
        [sys.executable, "-m", "openpi_core.rosbag_to_lerobot.convert", str(tmp_path),
         "--mapping", str(tmp_path / "m.yaml"), "--output", str(tmp_path / "out")],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "not valid YAML" in run.stderr


def _convert_here(tmp: Path, bag: Path, **overrides: object) -> tuple[object, dict]:
    """In this process (workers=0); returns the dataset and the bag's report."""
    result = convert([bag], parse_mapping(b.mapping(**overrides)), tmp / "dataset", workers=0, show_progress=False)
    report = json.loads((tmp / "dataset" / "conversion_report.json").read_text())["bags"][0]
    assert result.frames == sum(e["frames"] for e in report["episodes"])
    return _open(tmp / "dataset"), report


def _all_states(dataset: object) -> np.ndarray:
    return np.asarray(dataset.hf_dataset.with_format("numpy")["observation.state"])


def test_nan_joint_values_are_refused_dropped_or_split(tmp_path: Path) -> None:
    """Finding 1: NaN joint values used to be written without a word (and made an aggregated dataset unreadable)."""
    bag = b.write_demo_bag(tmp_path / "bag", nan_at=1.0)
    with pytest.raises(ConversionError) as error:
        convert([bag], parse_mapping(b.mapping()), tmp_path / "dataset", workers=0, show_progress=False)
    text = str(error.value)
    assert "topic /left/joint_states, field position[2] (left_elbow), t=1700000001.000000 s" in text, text
    assert "NaN/Inf" in text
    _no_leftovers(tmp_path)
    # drop_frames: the NaN reading is left out; its frames hold the reading before it (20 ms older, still fresh).
    dataset, report = _convert_here(tmp_path, bag, on_bad="drop_frames")
    assert report["dropped_messages"] == 1
    assert len(report["episodes"]) == 1
    assert np.all(np.isfinite(_all_states(dataset)))
    shutil.rmtree(tmp_path / "dataset")
    # split: the frames that would use it are removed and the episode ends there.
    dataset, report = _convert_here(tmp_path, bag, on_bad="split")
    assert len(report["episodes"]) == 2
    assert report["bad_frames"] >= 1
    assert "NaN/Inf values" in report["splits"][0]
    assert np.all(np.isfinite(_all_states(dataset)))


def test_time_going_backwards_is_dropped_or_split(tmp_path: Path) -> None:
    bag = b.write_demo_bag(tmp_path / "bag", backwards_at=1.0)
    _, report = _convert_here(tmp_path, bag, on_bad="drop_frames")
    assert report["dropped_messages"] == 1
    assert len(report["episodes"]) == 1
    shutil.rmtree(tmp_path / "dataset")
    _, report = _convert_here(tmp_path, bag, on_bad="split")
    assert report["parts"] == 2  # cut at the message whose stamp went back, each part gridded on its own
    assert len(report["episodes"]) == 2


def test_receive_timestamps_cannot_misalign_the_arms(tmp_path: Path) -> None:
    """Finding 3: the old error suggested `timestamps: receive`, which then aligned one arm's state 300 ms ahead of
    the other's without a word; the header stamps are now checked against each other in every mode."""
    bag = b.write_demo_bag(tmp_path / "bag", receive_delay={"/right/joint_states": 0.3})
    with pytest.raises(ConversionError, match=r"spread over more than max_skew 0\.1 s \(timestamps: receive\)"):
        convert([bag], parse_mapping(b.mapping(timestamps="receive")), tmp_path / "dataset", workers=0)
    _no_leftovers(tmp_path)
    _, report = _convert_here(tmp_path, bag)  # header stamps (the default) align them right
    assert report["bad_frames"] == 0


def test_discovery_lists_every_recording_and_why_it_is_skipped(tmp_path: Path) -> None:
    """Finding 2: a killed recording (no metadata.yaml) and nested batches used to be neither converted nor listed."""
    root = tmp_path / "demos"
    b.write_demo_bag(root / "monday" / "episode_0")
    b.write_demo_bag(root / "tuesday" / "morning" / "episode_0")
    killed = b.write_demo_bag(root / "tuesday" / "killed")
    (killed / "metadata.yaml").unlink()
    run = _convert(tmp_path, [root], b.mapping())
    assert run.returncode == 2
    assert f"bag {killed}: has killed.mcap but no metadata.yaml" in run.stderr, run.stderr
    assert "ros2 bag reindex" in run.stderr
    run = _convert(tmp_path, [root], b.mapping(), "--skip-bad")
    assert run.returncode == 0, run.stderr
    assert f"SKIPPED bag {killed}" in run.stdout
    assert _open(tmp_path / "dataset").meta.total_episodes == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_conversion_cleans_up_and_keeps_the_old_dataset(tmp_path: Path, signum: int) -> None:
    """Finding 5: SIGINT used to be ignored; SIGTERM left the staging folder and an orphaned worker behind."""
    bags = [b.write_demo_bag(tmp_path / f"bag{i}", duration=8.0, size=(240, 320)) for i in range(2)]
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "old").write_text("the previous conversion")
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(b.mapping(video=True)))
    cmd = [sys.executable, "-m", "openpi_core.rosbag_to_lerobot.convert", *map(str, bags), "--workers", "2"]
    cmd += ["--mapping", str(tmp_path / "mapping.yaml"), "--output", str(tmp_path / "dataset"), "--overwrite"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    parts = []
    while time.monotonic() < deadline and not parts:  # wait until the workers are writing
        parts = [p for s in tmp_path.glob(".dataset.partial-*") for p in (s / "parts").glob("*/meta")]
        time.sleep(0.1)
    assert parts, "the conversion never started writing"
    children = _children(proc.pid)
    assert children, "no worker processes"
    start = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode == 128 + signum, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert (tmp_path / "dataset" / "old").read_text() == "the previous conversion"
    assert not list(tmp_path.glob(".dataset.partial-*"))
    time.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists() and _alive(pid)], "orphaned workers"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
