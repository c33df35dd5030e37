"""Demonstration bags written with `rosbags` at realistic rates, and the truth they were written from.

Every value tells where it came from: joint positions are ``t + 0.01 * j`` (t: seconds since the bag's start),
commands ``-t - 0.01 * j``, and camera message i of camera c is a flat colour ``(7 * i % 256, 60 * c, 128)``,
so a converted frame can be traced back to the exact message it took.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openpi_core.rosbag_to_lerobot.metadata_keys import TASK_KEY

NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # bag start (epoch ns)
ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")


@dataclasses.dataclass(frozen=True)
class Camera:
    name: str
    topic: str
    compressed: bool = False
    rate: float = 30.0


CAMERAS = (
    Camera("top", "/cam_high/image_raw"),
    Camera("left_wrist", "/cam_left_wrist/image_raw"),
    Camera("right_wrist", "/cam_right_wrist/image_raw/compressed", compressed=True),
)
ARMS = {"/left/joint_states": [f"left_{j}" for j in ARM], "/right/joint_states": [f"right_{j}" for j in ARM]}
COMMANDS = {"/left/commands": [f"left_{j}" for j in ARM], "/right/commands": [f"right_{j}" for j in ARM]}


def colour(camera_index: int, message_index: int) -> tuple[int, int, int]:
    return 7 * message_index % 256, 60 * camera_index, 128


def joint_values(t: float, count: int, sign: float = 1.0) -> np.ndarray:
    return sign * (t + 0.01 * np.arange(count))


def mapping(**overrides: object) -> dict:
    """The YAML mapping (as a dict) for bags from `write_demo_bag`."""
    data = {
        "repo_id": "local/demo_bags",
        "fps": 30,
        "robot_type": "aloha",
        "task": "fold the towel",
        "max_staleness": 0.1,
        "min_episode_frames": 5,
        "cameras": {c.name: c.topic for c in CAMERAS},
        "state": [{"topic": t, "joints": j} for t, j in ARMS.items()],
        "action": {"source": "topics", "topics": [{"topic": t, "joints": j} for t, j in COMMANDS.items()]},
        "video": False,
    }
    return data | overrides


def _header(store: object, stamp_ns: int, frame_id: str) -> object:
    types = store.types
    sec, nanosec = divmod(stamp_ns, NS)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    if "seq" in dict(store.fielddefs["std_msgs/msg/Header"][1]):  # ROS 1
        return types["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id=frame_id)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def write_demo_bag(
    path: Path,
    *,
    duration: float = 2.0,
    storage: str = "mcap",
    size: tuple[int, int] = (48, 64),
    cameras: Sequence[Camera] = CAMERAS,
    joint_rate: float = 50.0,
    task: str | None = None,
    shuffle_joint_order: bool = False,
    camera_gap: tuple[float, float] | None = None,
    skip_topics: Sequence[str] = (),
    rename_joint: str | None = None,
    backwards_at: float | None = None,
    nan_at: float | None = None,
    receive_delay: dict[str, float] | None = None,
    markers: Sequence[tuple[float, str]] = (),
    ros1: bool = False,
) -> Path:
    """A demo bag: `cameras` at their rates (raw rgb8 or JPEG), two 7-joint arms and their commands at
    `joint_rate`. Header stamps are the publish times; log times are 2 ms later (transport). Options break it in
    the ways a real recording breaks: a camera gap, a missing topic, a renamed joint, a stamp going backwards, a NaN
    joint reading (`nan_at`: the left elbow of the reading at that time), a topic delivered late (`receive_delay`:
    seconds added to its log times, its header stamps stay right)."""
    from rosbags.typesys import Stores, get_typestore  # noqa: PLC0415

    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_KILTED)
    types = store.types
    height, width = size
    messages: list[tuple[int, str, object, str]] = []  # (log ns, topic, msg, type)
    for c_index, camera in enumerate(cameras):
        if camera.topic in skip_topics:
            continue
        count = int(duration * camera.rate)
        for i in range(count):
            t = i / camera.rate
            if camera_gap and c_index == 0 and camera_gap[0] <= t < camera_gap[1]:
                continue
            stamp = T0 + round(t * NS)
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[:] = colour(c_index, i)
            header = _header(store, stamp, f"{camera.name}_optical_frame")
            if camera.compressed:
                import cv2  # noqa: PLC0415

                ok, jpeg = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                assert ok
                msg = types["sensor_msgs/msg/CompressedImage"](
                    header=header, format="rgb8; jpeg compressed bgr8", data=jpeg.ravel()
                )
                msgtype = "sensor_msgs/msg/CompressedImage"
            else:
                msg = types["sensor_msgs/msg/Image"](
                    header=header, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                    data=pixels.ravel(),
                )  # fmt: skip
                msgtype = "sensor_msgs/msg/Image"
            messages.append((stamp + 2_000_000, camera.topic, msg, msgtype))
    count = int(duration * joint_rate)
    for topics, sign in ((ARMS, 1.0), (COMMANDS, -1.0)):
        for topic, topic_names in topics.items():
            if topic in skip_topics:
                continue
            names = list(topic_names)
            if rename_joint and topic == "/left/joint_states":
                names[0] = rename_joint
            for i in range(count):
                t = i / joint_rate
                stamp = received = T0 + round(t * NS)
                if (
                    backwards_at is not None
                    and topic == "/left/joint_states"
                    and abs(t - backwards_at) < 0.5 / joint_rate
                ):
                    stamp -= NS // 2  # a publisher's clock jumped back; receive times stay in order
                received += round((receive_delay or {}).get(topic, 0.0) * NS)
                values = joint_values(t, len(names), sign)
                if nan_at is not None and topic == "/left/joint_states" and abs(t - nan_at) < 0.5 / joint_rate:
                    values[2] = np.nan
                order = np.arange(len(names))
                if shuffle_joint_order and i % 2:
                    order = order[::-1]
                msg = types["sensor_msgs/msg/JointState"](
                    header=_header(store, stamp, ""),
                    name=[names[k] for k in order],
                    position=values[order],
                    velocity=np.zeros(0),
                    effort=np.zeros(0),
                )
                messages.append((received + 2_000_000, topic, msg, "sensor_msgs/msg/JointState"))
    for t, text in markers:
        messages.append(
            (T0 + round(t * NS), "/episode_marker", types["std_msgs/msg/String"](data=text), "std_msgs/msg/String")
        )
    messages.sort(key=lambda m: m[0])
    return _write(path, messages, store, storage=storage, task=task, ros1=ros1)


def _write(path: Path, messages: list, store: object, *, storage: str, task: str | None, ros1: bool) -> Path:
    if ros1:
        from rosbags.rosbag1 import Writer as Writer1  # noqa: PLC0415

        with Writer1(path) as writer:
            connections: dict[str, object] = {}
            for log_ns, topic, msg, msgtype in messages:
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(connections[topic], log_ns, store.serialize_ros1(msg, msgtype))
        return path
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415

    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        if task is not None:
            writer.set_custom_data(TASK_KEY, task)
        connections = {}
        for log_ns, topic, msg, msgtype in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], log_ns, store.serialize_cdr(msg, msgtype))
    return path
