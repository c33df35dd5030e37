"""Finding bags and indexing them: every stream's timestamps (and, for joints and commands, values) in one pass.

Cameras are not decoded here (only their first image, for its size): `lerobot_writer` decodes just the camera
messages the frame grid uses, in a second pass.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openpi_core.rosbag_to_lerobot.errors import NS, ConversionError
from openpi_core.rosbag_to_lerobot.mapping import (
    ARRAY_TYPES,
    IMAGE_TYPES,
    JOINT_TYPES,
    MARKER_TYPES,
    StreamSpec,
    TopicMapping,
)
from openpi_core.rosbag_to_lerobot.metadata_keys import TASK_KEY

__all__ = ["BagIndex", "Candidate", "Stream", "decode_image", "discover", "index_bag", "open_reader"]

HEADER_TYPES = IMAGE_TYPES + JOINT_TYPES  # types whose first field is std_msgs/Header
_STORAGE_SUFFIXES = (".mcap", ".db3")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Something found under the inputs that looks like a recording; `problem` says why it cannot be read."""

    path: Path
    problem: str | None = None


def discover(inputs: Sequence[str | Path]) -> list[Candidate]:
    """Every recording under `inputs`: rosbag2 folders (with or without metadata.yaml), ROS 1 `.bag` files, and
    folders of them at any depth. A rosbag2 folder whose metadata.yaml is missing (a killed recording) is listed
    with its problem, never silently left out."""
    found: list[Candidate] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise FileNotFoundError(f"{item}: no such file or folder")
        before = len(found)
        _walk(item, found)
        if len(found) == before:
            raise FileNotFoundError(f"{item}: no rosbag2 folder or .bag file in it")
    return found


def _walk(path: Path, found: list[Candidate]) -> None:
    if path.is_file():
        if path.suffix == ".bag":
            found.append(Candidate(path))
        return
    storage = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _STORAGE_SUFFIXES)
    if (path / "metadata.yaml").is_file():
        found.append(Candidate(path))
        return
    if storage:
        found.append(
            Candidate(
                path,
                f"has {', '.join(p.name for p in storage)} but no metadata.yaml: the recording was not closed cleanly "
                "(killed?); rebuild it with `ros2 bag reindex` (or record with openpi_ros's recorder, which closes "
                "episodes on SIGINT/SIGTERM)",
            )
        )
        return
    for child in sorted(path.iterdir()):
        _walk(child, found)


@dataclasses.dataclass
class Stream:
    """One topic's messages in bag order: timestamps (ns) and, for joints/commands, their values."""

    topic: str
    msgtype: str
    stamps: list[int] = dataclasses.field(default_factory=list)  # the mapping's timestamps (header or receive)
    log_stamps: list[int] = dataclasses.field(default_factory=list)  # receive time
    header_stamps: list[int] = dataclasses.field(default_factory=list)  # header.stamp, for types that have one
    values: list[np.ndarray] = dataclasses.field(default_factory=list)
    names: tuple[str, ...] | None = None  # JointState names the values follow
    shape: tuple[int, ...] | None = None  # cameras: (H, W, 3) of the first image
    header_zero: bool = False  # header stamps were all zero: log time used instead

    @functools.cached_property
    def times(self) -> np.ndarray:
        """`stamps` as int64 ns; read only once indexing is complete."""
        return np.asarray(self.stamps, dtype=np.int64)

    @functools.cached_property
    def log_times(self) -> np.ndarray:
        return np.asarray(self.log_stamps, dtype=np.int64)

    @functools.cached_property
    def header_times(self) -> np.ndarray | None:
        """header.stamp per message, or None where the type has none or the stamps are all zero."""
        if not self.header_stamps or not any(self.header_stamps):
            return None
        return np.asarray(self.header_stamps, dtype=np.int64)

    @functools.cached_property
    def value_array(self) -> np.ndarray:
        """[messages, dim] float64 (joints and commands)."""
        return np.stack(self.values)


@dataclasses.dataclass
class BagIndex:
    path: Path
    task: str | None  # from the bag's metadata
    streams: dict[str, Stream]
    markers: list[tuple[int, bool, str | None]]  # (time, start?, task)
    duration_s: float


def _header_stamp(raw: bytes | memoryview, is2: bool) -> int:
    """header.stamp of a message whose first field is std_msgs/Header, read from its serialized bytes.

    rosbag2 (CDR): 4-byte encapsulation (byte 1: 1 = little endian), then int32 sec, uint32 nanosec.
    ROS 1: uint32 seq, then uint32 sec, uint32 nsec. Both put sec at byte 4 and nsec at byte 8."""
    order = "<" if (not is2 or raw[1] == 1) else ">"
    sec, nsec = struct.unpack_from(f"{order}iI", raw, 4)
    return sec * NS + nsec


def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """sensor_msgs/Image (any rosbags-image encoding, bgr8 included) or CompressedImage -> uint8 RGB [H, W, 3]."""
    from rosbags.image import compressed_image_to_cvimage, image_to_cvimage  # noqa: PLC0415

    if msgtype.endswith("CompressedImage"):
        image = compressed_image_to_cvimage(msg, "rgb8")
    else:
        image = image_to_cvimage(msg, "rgb8")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8:
        raise ValueError(f"image dtype {image.dtype}: only 8-bit images are supported")
    return np.ascontiguousarray(image)


def _joint_values(msg: Any, spec: StreamSpec, stream: Stream, cache: dict) -> np.ndarray:
    names = tuple(msg.name)
    values = np.asarray(getattr(msg, spec.field), dtype=np.float64)
    if len(values) != len(names):
        raise ValueError(f"{spec.field} has {len(values)} values for {len(names)} joint names")
    wanted = spec.joints or stream.names
    if wanted is None:  # no joints in the mapping: the first message's names define the order
        wanted = names
    elif spec.joints is None and set(names) != set(wanted):
        raise ValueError(f"joint names {list(names)} differ from this topic's earlier messages {list(wanted)}")
    stream.names = tuple(wanted)
    index = cache.get(names)
    if index is None:
        missing = [j for j in wanted if j not in names]
        if missing:
            raise ValueError(f"joint(s) {missing} missing; the message has {list(names)}")
        index = cache[names] = np.array([names.index(j) for j in wanted])
    return values[index]


def _array_values(msg: Any, spec: StreamSpec) -> np.ndarray:
    data = np.asarray(msg.data, dtype=np.float64)
    if spec.indices is None:
        return data
    if max(spec.indices) >= len(data):
        raise ValueError(f"indices {list(spec.indices)} out of range for {len(data)} values")
    return data[list(spec.indices)]


def open_reader(path: Path) -> Any:
    """An opened rosbags AnyReader for a rosbag2 folder or a ROS 1 bag."""
    from rosbags.highlevel import AnyReader  # noqa: PLC0415
    from rosbags.typesys import Stores, get_typestore  # noqa: PLC0415

    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise ConversionError(
            path, "no metadata.yaml: the recording was not closed cleanly (killed?) or this is not a rosbag2 folder"
        )
    typestore = get_typestore(Stores.ROS1_NOETIC if path.suffix == ".bag" else Stores.ROS2_KILTED)
    try:
        reader = AnyReader([path], default_typestore=typestore)
        reader.open()
    except Exception as error:
        raise ConversionError(path, f"cannot open: {error}") from error
    return reader


def index_bag(path: Path, mapping: TopicMapping) -> BagIndex:
    reader = open_reader(path)
    try:
        return _index(reader, path, mapping)
    finally:
        reader.close()


def _roles(mapping: TopicMapping) -> dict[str, tuple[str, StreamSpec | None]]:
    roles: dict[str, tuple[str, StreamSpec | None]] = {}
    for spec in mapping.cameras.values():
        roles[spec.topic] = ("camera", spec)
    for spec in mapping.state:
        roles[spec.topic] = ("state", spec)
    for spec in mapping.action:
        roles[spec.topic] = ("action", spec)
    if mapping.marker_topic:
        roles[mapping.marker_topic] = ("marker", None)
    return roles


_ALLOWED = {"camera": IMAGE_TYPES, "state": JOINT_TYPES, "action": JOINT_TYPES + ARRAY_TYPES, "marker": MARKER_TYPES}


def _index(reader: Any, path: Path, mapping: TopicMapping) -> BagIndex:
    by_topic: dict[str, list] = {}
    for connection in reader.connections:
        by_topic.setdefault(connection.topic, []).append(connection)
    roles = _roles(mapping)
    streams: dict[str, Stream] = {}
    for topic, (role, _) in roles.items():
        if topic not in by_topic:
            raise ConversionError(path, f"not in the bag (its topics: {sorted(by_topic)})", topic=topic)
        msgtype = by_topic[topic][0].msgtype
        if msgtype not in _ALLOWED[role]:
            raise ConversionError(
                path, f"unsupported message type {msgtype} for a {role} topic; expected {_ALLOWED[role]}", topic=topic
            )
        streams[topic] = Stream(topic, msgtype)

    task = (_custom_data(path).get(TASK_KEY) or None) if reader.is2 else None
    markers: list[tuple[int, bool, str | None]] = []
    caches: dict[str, dict] = {topic: {} for topic in roles}
    use_header = mapping.timestamps == "header"
    connections = [c for topic in roles for c in by_topic[topic]]
    stamp_ns = None
    topic = None
    try:
        for connection, log_ns, raw in reader.messages(connections=connections):
            topic = connection.topic
            role, spec = roles[topic]
            stream = streams[topic]
            stamp_ns = log_ns
            if role == "marker":
                markers.append(_marker(reader.deserialize(raw, connection.msgtype), log_ns))
                continue
            header = _header_stamp(raw, reader.is2) if stream.msgtype in HEADER_TYPES else None
            if header is not None:
                stream.header_stamps.append(header)
            stream.stamps.append(header if (use_header and header is not None) else log_ns)
            stream.log_stamps.append(log_ns)
            if role == "camera":
                if stream.shape is None:
                    stream.shape = decode_image(reader.deserialize(raw, connection.msgtype), stream.msgtype).shape
                continue
            msg = reader.deserialize(raw, connection.msgtype)
            if stream.msgtype in JOINT_TYPES:
                stream.values.append(_joint_values(msg, spec, stream, caches[topic]))
            else:
                stream.values.append(_array_values(msg, spec))
            if len(stream.values[-1]) != len(stream.values[0]):
                raise ValueError(f"{len(stream.values[-1])} values where earlier messages had {len(stream.values[0])}")
    except ConversionError:
        raise
    except Exception as error:
        raise ConversionError(path, f"{type(error).__name__}: {error}", topic=topic, stamp_ns=stamp_ns) from error

    for topic, stream in streams.items():
        if roles[topic][0] == "marker":
            continue
        if not stream.stamps:
            raise ConversionError(path, "no messages", topic=topic)
        if use_header and stream.msgtype in HEADER_TYPES and not any(stream.stamps):
            stream.stamps, stream.header_zero = stream.log_stamps, True
    return BagIndex(path, task, streams, markers, reader.duration / NS)


def _custom_data(path: Path) -> dict:
    """rosbag2 metadata.yaml's `custom_data` (format version 6+), where the recorder stores the task."""
    import yaml  # noqa: PLC0415

    info = yaml.safe_load((path / "metadata.yaml").read_text()) or {}
    return (info.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}


def _marker(msg: Any, log_ns: int) -> tuple[int, bool, str | None]:
    data = msg.data
    if isinstance(data, bool):
        return log_ns, data, None
    text = str(data).strip()
    command, _, task = text.partition(":")
    if command.strip().lower() == "start":
        return log_ns, True, task.strip() or None
    if command.strip().lower() == "stop":
        return log_ns, False, None
    raise ValueError(f"episode marker {text!r}: expected 'start', 'start: <task>' or 'stop'")
