"""The same bag, two ways, the same model inputs: converted and read by a config's training pipeline, and replayed
over DDS (recorded stamps, `/clock`) into the live policy node, whose observations a policy server records.

Finding 7 of the demonstrations issue: nothing checked that the converter and the live node turn the same topics
into the same observation (camera -> image key, joint order, gripper convention, resize). For every instant the
node answered, the test finds the dataset frame holding the same joint reading and compares the model inputs:
the image keys and masks, the state exactly, the images within the video codec's error.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.ros import Probe
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from openpi_core import transforms as tf
from openpi_core.robots import registry
from openpi_core.rosbag_to_lerobot.convert import convert
from openpi_core.rosbag_to_lerobot.mapping import parse_mapping
from openpi_core.rosbag_to_lerobot.metadata_keys import TASK_KEY
from openpi_core.serving.server import PolicyServer, ServerConfig
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs
from openpi_ros.graphs import NodeSpec
from openpi_ros.messages import to_time

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
RATE = 10  # Hz: cameras, joints and the dataset's fps; every instant has one message of each
SECONDS = 3.0
HEIGHT, WIDTH = 96, 128


class RecordingPolicy:
    """A policy server's policy that keeps every observation it is asked about."""

    def __init__(self, action_dim: int) -> None:
        self.observations: list[dict] = []
        self.action_dim = action_dim

    metadata: dict = {}  # noqa: RUF012

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        self.observations.append(obs)
        return {"actions": np.zeros((10, self.action_dim), np.float32)}


def _frame(camera: int, instant: int) -> np.ndarray:
    """Smooth, distinct per camera and instant (so a codec keeps it close, and a mix-up shows)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack([xx + 2 * instant, yy * 2, np.full_like(xx, 10 + 40 * camera + 2 * instant)], -1).astype(np.uint8)


def _joints(instant: int, count: int) -> np.ndarray:
    return 0.3 + 0.01 * instant + 0.001 * np.arange(count)  # grippers stay inside [0, 1]


def _write_bag(path: Path, namespace: str, topics: dict[str, str], joint_names: list[str]) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415
    from rosbags.typesys import Stores, get_typestore  # noqa: PLC0415

    store = get_typestore(Stores.ROS2_KILTED)
    t = store.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.set_custom_data(TASK_KEY, "stack the cups")
        connections = {}
        for instant in range(int(SECONDS * RATE)):
            stamp = T0 + instant * NS // RATE
            header = t["std_msgs/msg/Header"](
                stamp=t["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS), frame_id=""
            )
            messages = []
            for c, topic in enumerate(topics.values()):
                pixels = _frame(c, instant)
                image = t["sensor_msgs/msg/Image"](
                    header=header, height=HEIGHT, width=WIDTH, encoding="rgb8", is_bigendian=0, step=WIDTH * 3,
                    data=pixels.reshape(-1),
                )  # fmt: skip
                messages.append((f"/{namespace}/{topic}", "sensor_msgs/msg/Image", image))
            joints = t["sensor_msgs/msg/JointState"](
                header=header, name=joint_names, position=_joints(instant, len(joint_names)),
                velocity=np.zeros(0), effort=np.zeros(0),
            )  # fmt: skip
            messages.append((f"/{namespace}/joint_states", "sensor_msgs/msg/JointState", joints))
            for order, (topic, msgtype, msg) in enumerate(messages):
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(connections[topic], stamp + order * 100_000, store.serialize_cdr(msg, msgtype))


def _replay(probe: Probe, bag: Path, spin: float = 0.02) -> None:
    """Publish the bag's serialized messages at the recorded rate, with `/clock` following the recorded time."""
    from rosbags.highlevel import AnyReader  # noqa: PLC0415

    clock = probe.node.create_publisher(Clock, "/clock", 10)
    publishers: dict[str, object] = {}
    with AnyReader([bag]) as reader:
        types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/JointState": JointState}
        for connection in reader.connections:
            publishers[connection.topic] = probe.node.create_publisher(types[connection.msgtype], connection.topic, 10)
        probe.wait(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()), "the policy node")
        start_wall, start_bag = time.monotonic(), None
        for connection, log_ns, raw in reader.messages():
            start_bag = start_bag if start_bag is not None else log_ns
            while time.monotonic() - start_wall < (log_ns - start_bag) / NS:
                probe.executor.spin_once(timeout_sec=spin)
            clock.publish(Clock(clock=to_time(log_ns)))
            publishers[connection.topic].publish(bytes(raw))  # the recorded CDR bytes, unchanged
    probe.spin(1.0, every=lambda: clock.publish(Clock(clock=to_time(start_bag + int((SECONDS + 1) * NS)))))


def _model_inputs(config: _config.TrainConfig, sample: dict, *, from_dataset: bool) -> dict:
    data = config.data.create(Path("/nonexistent"), config.model)
    pipeline = [tf.PromptFromLeRobotTask()] if from_dataset else []
    pipeline += [*data.repack_transforms.inputs] if from_dataset else []
    pipeline += [*data.data_transforms.inputs, *data.model_transforms.inputs]
    return tf.compose(pipeline)({**sample, "prompt": "stack the cups"} if not from_dataset else sample)


CASES = {
    # robot: (config, the converter's camera names per node camera, dataset camera feature names)
    "aloha": ("debug_aloha", {"cam_high": "top", "cam_left_wrist": "left_wrist", "cam_right_wrist": "right_wrist"}),
    "droid": (
        "debug_droid",
        {"exterior_image_1_left": "exterior_image_1_left", "wrist_image_left": "wrist_image_left"},
    ),
}


@pytest.mark.parametrize("robot", sorted(CASES))
def test_converted_bag_and_live_node_give_the_same_model_inputs(
    robot: str, ros_context: object, spawn: object, tmp_path: Path
) -> None:
    config_name, dataset_cameras = CASES[robot]
    profile = registry.get(robot)
    namespace = f"consistency_{robot}"
    topics = dict(zip(profile.camera_names, profile.camera_topics, strict=True))
    joint_names = list(profile.joint_names)
    bag = tmp_path / "bag"
    _write_bag(bag, namespace, topics, joint_names)
    config = _configs.get_config(config_name)

    # (a) converted with the robot's layout, read back by lerobot, through the config's training pipeline.
    mapping = {
        "repo_id": f"local/{robot}_demos",
        "fps": RATE,
        "cameras": {dataset_cameras[cam]: f"/{namespace}/{topic}" for cam, topic in topics.items()},
        "state": [{"topic": f"/{namespace}/joint_states", "joints": joint_names}],
        "action": "next_state",
        "video": True,
    }
    convert([bag], parse_mapping(mapping), tmp_path / "dataset", workers=0, show_progress=False)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: PLC0415

    dataset = LeRobotDataset(mapping["repo_id"], root=tmp_path / "dataset")
    trained = {}
    codec_error, codec_mean = 0, 0.0  # the video codec's own error on these frames: the bounds downstream of it
    for i in range(len(dataset)):
        item = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in dataset[i].items()}
        instant = round((float(item["observation.state"][0]) - 0.3) / 0.01)
        for c, cam in enumerate(topics):
            decoded = np.round(item[f"observation.images.{dataset_cameras[cam]}"].transpose(1, 2, 0) * 255)
            difference = np.abs(decoded - _frame(c, instant))
            codec_error, codec_mean = max(codec_error, int(difference.max())), max(codec_mean, difference.mean())
        item["action"] = np.tile(item["action"], (config.model.action_horizon, 1))  # a chunk, as the loader reads
        inputs = _model_inputs(config, item, from_dataset=True)
        trained[tuple(np.round(item["observation.state"], 6))] = inputs

    # (b) replayed into the live policy node (remote policy: a server that records what the node sends).
    policy = RecordingPolicy(len(profile.actions))
    with PolicyServer(policy, ServerConfig(port=0)) as server:
        params = {"robot": robot, "policy": "remote", "server_url": f"ws://127.0.0.1:{server.port}"}
        params |= {"use_sim_time": True, "rate": float(RATE), "max_age": 0.5}
        spawn(NodeSpec("policy_node", "openpi_ros.policy_node", "policy_node", params, namespace=namespace).command())
        probe = Probe(ros_context, namespace)
        _replay(probe, bag)
        probe.close()
    assert len(policy.observations) >= 10, f"the node answered only {len(policy.observations)} instants"

    matched = 0
    for obs in policy.observations:
        live = _model_inputs(config, obs, from_dataset=False)
        raw_state = _raw_state(robot, obs)
        state = tuple(np.round(raw_state, 6))
        if state not in trained:
            continue
        # The node pairs the newest joint reading with the newest frame *received*: a camera's frame of this instant
        # may arrive after the tick (the one before it is used) or the next instant's frame before its joints
        # (within max_skew either way). The converter pairs by stamp. Compare only observations whose frames are of
        # the joint reading's instant.
        instant = round((float(raw_state[0]) - 0.3) / 0.01)
        frames = _frame_instants(robot, obs, profile.camera_names)
        assert all(abs(f - instant) <= 2 for f in frames), (instant, frames)
        if any(f != instant for f in frames):
            continue
        matched += 1
        train = trained[state]
        assert sorted(live["image"]) == sorted(train["image"])
        assert {k: bool(v) for k, v in live["image_mask"].items()} == {
            k: bool(v) for k, v in train["image_mask"].items()
        }
        np.testing.assert_array_equal(live["state"], train["state"])
        for key in live["image"]:
            error = np.abs(live["image"][key].astype(int) - train["image"][key].astype(int))
            assert error.max() <= codec_error + 1, (key, error.max(), codec_error)
            assert error.mean() <= codec_mean + 0.5, (key, error.mean(), codec_mean)
        np.testing.assert_array_equal(live["tokenized_prompt"], train["tokenized_prompt"])
    assert matched >= 10, f"only {matched} of the node's observations matched a dataset frame"


def _frame_instants(robot: str, obs: dict, cameras: tuple[str, ...]) -> list[int]:
    """The instant each camera's frame in a live observation shows (`_frame`'s blue channel is 10 + 40 * camera +
    2 * instant everywhere; the node's padding is black)."""
    instants = []
    for c, cam in enumerate(cameras):
        blue = obs["images"][cam][2] if robot == "aloha" else obs[f"observation/{cam}"][..., 2]  # CHW / HWC
        instants.append(round((float(np.median(blue[blue > 0])) - 10 - 40 * c) / 2))
    return instants


def _raw_state(robot: str, obs: dict) -> np.ndarray:
    """The node's state in the converter's joint order (the dataset's observation.state)."""
    if robot == "droid":
        return np.concatenate([obs["observation/joint_position"], obs["observation/gripper_position"]]).astype(
            np.float32
        )
    return np.asarray(obs["state"], np.float32)


def test_cases_cover_the_robot_cameras() -> None:
    for robot, (_, cameras) in CASES.items():
        assert sorted(cameras) == sorted(registry.get(robot).camera_names)
        assert dataclasses.is_dataclass(_configs.get_config(CASES[robot][0]).data)
