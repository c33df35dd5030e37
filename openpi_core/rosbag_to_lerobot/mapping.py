"""The YAML mapping from a robot's ROS topics to a LeRobot dataset's features (see `openpi_core.rosbag_to_lerobot`).

```yaml
repo_id: local/aloha_demos          # the dataset's name (LeRobot repo id)
fps: 30                             # frame rate of the dataset; every stream is resampled onto this grid
robot_type: aloha
task: fold the towel                # used where a bag (or its episode marker) carries no task text
timestamps: header                  # header (the messages' header.stamp) | receive (the bag's log time)
max_staleness: 0.1                  # s: a frame whose newest message of a stream is older is stale
max_skew: 0.1                       # s: the largest spread of a frame's messages' header stamps (default max_staleness)
on_bad: fail                        # stale frames, NaN/Inf values, time going back, skew: fail | drop_frames | split
min_episode_frames: 10              # shorter episodes (after dropping or splitting) are dropped
cameras:                            # observation.images.<name>; sensor_msgs/Image or CompressedImage
  top: /cam_high/image_raw
  left_wrist: {topic: /cam_left_wrist/image_raw/compressed, max_staleness: 0.15}
state:                              # observation.state: sensor_msgs/JointState, concatenated in this order
  - {topic: /left/joint_states, joints: [waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate, gripper]}
  - {topic: /right/joint_states, field: position}     # joints omitted: the names of the first message
  # Feature names (info.json): `names: [...]` per stream, else the joint names, prefixed with the topic's namespace
  # ("left/waist") when there are several streams.
action:                             # action: next_state, or topics (JointState by joint name, or
  source: topics                    # std_msgs Float64MultiArray / Float32MultiArray with optional indices)
  topics:
    - {topic: /left/commands, joints: [...]}
    - {topic: /right/gripper_cmd, indices: [0]}
episodes:
  split: bag                        # bag: one episode per bag | markers: std_msgs/String "start[:task]"/"stop"
  marker_topic: /episode_marker     #   or std_msgs/Bool true/false on this topic (receive time)
video: true                         # cameras as videos (LeRobot's encoder); false: lossless PNG images
vcodec: h264                        # LeRobot's codecs: h264 (default: 3x faster than libsvtav1 here), libsvtav1, hevc
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from openpi_core.rosbag_to_lerobot.errors import MappingError

__all__ = ["ON_BAD", "StreamSpec", "TopicMapping", "load_mapping", "parse_mapping"]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_TYPES = ("sensor_msgs/msg/JointState",)
ARRAY_TYPES = ("std_msgs/msg/Float64MultiArray", "std_msgs/msg/Float32MultiArray")
MARKER_TYPES = ("std_msgs/msg/String", "std_msgs/msg/Bool")
JOINT_FIELDS = ("position", "velocity", "effort")
ON_BAD = ("fail", "drop_frames", "split")


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """One topic feeding a feature."""

    topic: str
    joints: tuple[str, ...] | None = None  # JointState: names in order (None: the first message's names)
    field: str = "position"  # JointState field
    indices: tuple[int, ...] | None = None  # Float*MultiArray: the elements to take (None: all)
    max_staleness: float | None = None  # s; None: the mapping's max_staleness
    names: tuple[str, ...] | None = None  # feature names of this stream's values (None: derived)


@dataclasses.dataclass(frozen=True)
class TopicMapping:
    """Which topics become which LeRobot features, and how they are resampled and checked."""

    repo_id: str
    fps: int
    cameras: dict[str, StreamSpec]
    state: tuple[StreamSpec, ...]
    action_source: str = "next_state"  # next_state | topics
    action: tuple[StreamSpec, ...] = ()
    robot_type: str | None = None
    task: str | None = None
    timestamps: str = "header"  # header | receive
    max_staleness: float = 0.1
    max_skew: float | None = None  # s; None: max_staleness
    on_bad: str = "fail"  # fail | drop_frames | split
    min_episode_frames: int = 10
    split: str = "bag"  # bag | markers
    marker_topic: str | None = None
    video: bool = True
    vcodec: str = "h264"

    def staleness(self, spec: StreamSpec) -> float:
        return self.max_staleness if spec.max_staleness is None else spec.max_staleness

    @property
    def skew(self) -> float:
        return self.max_staleness if self.max_skew is None else self.max_skew

    @property
    def streams(self) -> list[StreamSpec]:
        """Every stream resampled onto the frame grid: cameras, state, then action topics (markers are not)."""
        return [*self.cameras.values(), *self.state, *self.action]


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _check_keys(where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _stream(where: str, data: Any, *, kind: str) -> StreamSpec:
    if isinstance(data, str):
        data = {"topic": data}
    allowed = {"topic", "max_staleness"} | ({"joints", "field", "indices", "names"} if kind != "camera" else set())
    if isinstance(data, dict):
        _check_keys(where, data, allowed)
    if not isinstance(data, dict) or not isinstance(data.get("topic"), str) or not data["topic"]:
        raise MappingError(f"{where}: expected a topic name or a mapping with 'topic', got {data!r}")
    field = str(data.get("field", "position"))
    if field not in JOINT_FIELDS:
        raise MappingError(f"{where}.field: {field!r}; expected one of {JOINT_FIELDS}")
    joints = data.get("joints")
    if joints is not None and (
        not isinstance(joints, list) or not joints or not all(isinstance(j, str) for j in joints)
    ):
        raise MappingError(f"{where}.joints: expected a non-empty list of joint names, got {joints!r}")
    if joints is not None and len(set(joints)) != len(joints):
        raise MappingError(f"{where}.joints: repeated names in {joints}")
    indices = data.get("indices")
    if indices is not None and (
        not isinstance(indices, list) or not all(isinstance(i, int) and i >= 0 for i in indices)
    ):
        raise MappingError(f"{where}.indices: expected a list of non-negative integers, got {indices!r}")
    staleness = data.get("max_staleness")
    if staleness is not None and not (isinstance(staleness, int | float) and staleness > 0):
        raise MappingError(f"{where}.max_staleness: expected seconds > 0, got {staleness!r}")
    names = data.get("names")
    if names is not None and (
        not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names)
    ):
        raise MappingError(f"{where}.names: expected a non-empty list of feature names, got {names!r}")
    if names is not None and joints is not None and len(names) != len(joints):
        raise MappingError(f"{where}.names: {len(names)} names for {len(joints)} joints")
    return StreamSpec(
        topic=_absolute(data["topic"]),
        joints=tuple(joints) if joints is not None else None,
        field=field,
        indices=tuple(indices) if indices is not None else None,
        max_staleness=float(staleness) if staleness is not None else None,
        names=tuple(names) if names is not None else None,
    )


def _streams(where: str, data: Any) -> tuple[StreamSpec, ...]:
    if not isinstance(data, list) or not data:
        raise MappingError(f"{where}: expected a non-empty list of topics")
    return tuple(_stream(f"{where}[{i}]", item, kind="joints") for i, item in enumerate(data))


def parse_mapping(data: Any, source: str = "mapping") -> TopicMapping:
    """A validated `TopicMapping` from parsed YAML; errors name `source` and the key."""
    if not isinstance(data, dict):
        raise MappingError(f"{source}: expected a mapping at the top level")
    top = {
        "repo_id", "fps", "robot_type", "task", "timestamps", "max_staleness", "max_skew", "on_bad",
        "min_episode_frames", "cameras", "state", "action", "episodes", "video", "vcodec",
    }  # fmt: skip
    _check_keys(source, data, top)
    for key in ("fps", "cameras", "state", "action"):
        if key not in data:
            raise MappingError(f"{source}: missing key {key!r}")
    fps = data["fps"]
    if not isinstance(fps, int) or fps <= 0:
        raise MappingError(f"{source}.fps: expected a positive integer, got {fps!r}")
    cameras = data["cameras"]
    if not isinstance(cameras, dict) or not cameras:
        raise MappingError(f"{source}.cameras: expected a mapping of camera name -> topic")
    camera_specs = {
        str(name): _stream(f"{source}.cameras.{name}", spec, kind="camera") for name, spec in cameras.items()
    }
    state = _streams(f"{source}.state", data["state"])
    action = data["action"]
    if action == "next_state":
        action = {"source": "next_state"}
    if not isinstance(action, dict):
        raise MappingError(f"{source}.action: expected 'next_state' or a mapping with 'source'")
    _check_keys(f"{source}.action", action, {"source", "topics"})
    action_source = action.get("source", "topics" if "topics" in action else "next_state")
    if action_source not in ("next_state", "topics"):
        raise MappingError(f"{source}.action.source: {action_source!r}; expected 'next_state' or 'topics'")
    action_streams = _streams(f"{source}.action.topics", action.get("topics")) if action_source == "topics" else ()
    episodes = data.get("episodes", {"split": "bag"})
    if not isinstance(episodes, dict):
        raise MappingError(f"{source}.episodes: expected a mapping with 'split'")
    _check_keys(f"{source}.episodes", episodes, {"split", "marker_topic"})
    split = episodes.get("split", "bag")
    if split not in ("bag", "markers"):
        raise MappingError(f"{source}.episodes.split: {split!r}; expected 'bag' or 'markers'")
    marker = episodes.get("marker_topic")
    if marker is not None and (not isinstance(marker, str) or not marker):
        raise MappingError(f"{source}.episodes.marker_topic: expected a topic name, got {marker!r}")
    if marker:
        marker = _absolute(marker)
    if split == "markers" and not marker:
        raise MappingError(f"{source}.episodes.marker_topic: required when split is 'markers'")
    timestamps = data.get("timestamps", "header")
    if timestamps not in ("header", "receive"):
        raise MappingError(f"{source}.timestamps: {timestamps!r}; expected 'header' or 'receive'")
    staleness = data.get("max_staleness", 0.1)
    if not isinstance(staleness, int | float) or staleness <= 0:
        raise MappingError(f"{source}.max_staleness: expected seconds > 0, got {staleness!r}")
    skew = data.get("max_skew")
    if skew is not None and (not isinstance(skew, int | float) or skew <= 0):
        raise MappingError(f"{source}.max_skew: expected seconds > 0, got {skew!r}")
    on_bad = data.get("on_bad", "fail")
    if on_bad not in ON_BAD:
        raise MappingError(f"{source}.on_bad: {on_bad!r}; expected one of {list(ON_BAD)}")
    min_frames = data.get("min_episode_frames", 10)
    if not isinstance(min_frames, int) or min_frames < 2:
        raise MappingError(f"{source}.min_episode_frames: expected an integer >= 2, got {min_frames!r}")
    repo_id = data.get("repo_id", "local/rosbag_demos")
    if not isinstance(repo_id, str) or not repo_id:
        raise MappingError(f"{source}.repo_id: expected a name such as 'local/my_demos'")
    seen: dict[str, str] = {}
    roles = [(f"cameras.{n}", c) for n, c in camera_specs.items()] + [("state", st) for st in state]
    roles += [("action.topics", a) for a in action_streams]
    for role, spec in roles:
        if spec.topic in seen:
            raise MappingError(f"{source}: topic {spec.topic} is used twice ({seen[spec.topic]} and {role})")
        seen[spec.topic] = role
    if marker and marker in seen:
        raise MappingError(f"{source}.episodes.marker_topic: {marker} is already used as {seen[marker]}")
    return TopicMapping(
        repo_id=repo_id,
        fps=fps,
        cameras=camera_specs,
        state=state,
        action_source=action_source,
        action=action_streams,
        robot_type=data.get("robot_type"),
        task=data.get("task"),
        timestamps=timestamps,
        max_staleness=float(staleness),
        max_skew=float(skew) if skew is not None else None,
        on_bad=on_bad,
        min_episode_frames=min_frames,
        split=split,
        marker_topic=marker or None,
        video=bool(data.get("video", True)),
        vcodec=str(data.get("vcodec", "h264")),
    )


def load_mapping(path: str | Path) -> TopicMapping:
    import yaml  # noqa: PLC0415

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MappingError(f"{path}: no such mapping file") from None
    except yaml.YAMLError as error:
        raise MappingError(f"{path}: not valid YAML: {error}") from None
    return parse_mapping(data, str(path))
