"""Recorded demonstrations (rosbag2 sqlite3/mcap folders, ROS 1 `.bag` files) → a LeRobot v3.0 dataset.

Each bag is read twice by `rosbags`: an index pass (every stream's timestamps; joint and command values; episode
markers), then a pass that decodes only the camera messages the frame grid uses. Every stream is resampled onto a
grid at the mapping's `fps`: frame k at t0 + k/fps takes each stream's newest message at or before that time
(sample-and-hold), and a frame where any stream's newest message is older than its `max_staleness` is dropped; a
run of dropped frames inside an episode splits it (LeRobot frames are evenly spaced, so a gap cannot be hidden).

Bags are converted in worker processes, each into its own LeRobot dataset (cameras encoded by LeRobot's video
encoder), which are then aggregated with `lerobot.datasets.aggregate`. Everything is written under a temporary
folder beside the output and moved into place at the end: a bad bag never leaves half a dataset. Without
`skip_bad`, the first bad bag stops the conversion and nothing is written; with it, bad bags are reported and left
out. `openpi-convert-rosbag --help` (or `python training/convert_rosbag.py`) is the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import queue
import shutil
import struct
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import numpy as np

from openpi_core.training.rosbag_mapping import (
    ARRAY_TYPES,
    IMAGE_TYPES,
    JOINT_TYPES,
    MARKER_TYPES,
    Mapping,
    MappingError,
    StreamSpec,
    load_mapping,
)

logger = logging.getLogger(__name__)

NS = 1_000_000_000
TASK_KEY = "openpi.task"  # bag metadata custom_data written by openpi_ros's recorder
REPORT_NAME = "conversion_report.json"
ENCODER_QUEUE = 32  # frames per camera waiting for the video encoder (480x640: about 30 MB)
HEADER_TYPES = IMAGE_TYPES + JOINT_TYPES  # types whose first field is std_msgs/Header


class ConversionError(Exception):
    """A bag cannot be converted; the message names the bag, and the topic and time where they apply."""

    def __init__(self, bag: str | Path, message: str, *, topic: str | None = None, stamp_ns: int | None = None):
        self.bag, self.topic, self.stamp_ns = str(bag), topic, stamp_ns
        where = [f"bag {self.bag}"]
        if topic is not None:
            where.append(f"topic {topic}")
        if stamp_ns is not None:
            where.append(f"t={stamp_ns / NS:.6f} s")
        super().__init__(f"{', '.join(where)}: {message}")

    @classmethod
    def reraise(cls, text: str) -> ConversionError:
        """An error whose text (from a worker process) already names the bag."""
        error = cls.__new__(cls)
        error.bag, error.topic, error.stamp_ns = "", None, None
        Exception.__init__(error, text)
        return error


# ---------------------------------------------------------------------------------------------------------------
# Index pass
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Stream:
    """One topic's messages in bag order: timestamps (ns) and, for joints/commands, their values."""

    topic: str
    msgtype: str
    stamps: list[int] = dataclasses.field(default_factory=list)
    log_stamps: list[int] = dataclasses.field(default_factory=list)
    values: list[np.ndarray] = dataclasses.field(default_factory=list)
    names: tuple[str, ...] | None = None  # JointState names the values follow
    shape: tuple[int, ...] | None = None  # cameras: (H, W, 3) of the first image
    header_zero: bool = False  # header stamps were all zero: log time used instead

    @functools.cached_property
    def times(self) -> np.ndarray:
        """`stamps` as int64 ns; read only once indexing is complete."""
        return np.asarray(self.stamps, dtype=np.int64)


def _header_stamp(raw: bytes | memoryview, is2: bool) -> int:
    """header.stamp of a message whose first field is std_msgs/Header, read from its serialized bytes.

    rosbag2 (CDR): 4-byte encapsulation (byte 1: 1 = little endian), then int32 sec, uint32 nanosec.
    ROS 1: uint32 seq, then uint32 sec, uint32 nsec. Both put sec at byte 4 and nsec at byte 8."""
    order = "<" if (not is2 or raw[1] == 1) else ">"
    sec, nsec = struct.unpack_from(f"{order}iI", raw, 4)
    return sec * NS + nsec


def _decode_image(msg: Any, msgtype: str) -> np.ndarray:
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


@dataclasses.dataclass
class BagIndex:
    path: Path
    task: str | None  # from the bag's metadata
    streams: dict[str, Stream]
    markers: list[tuple[int, bool, str | None]]  # (time, start?, task)
    duration_s: float


def _open_reader(path: Path):
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


def index_bag(path: Path, mapping: Mapping) -> BagIndex:
    reader = _open_reader(path)
    try:
        return _index(reader, path, mapping)
    finally:
        reader.close()


def _index(reader: Any, path: Path, mapping: Mapping) -> BagIndex:
    by_topic: dict[str, list] = {}
    for connection in reader.connections:
        by_topic.setdefault(connection.topic, []).append(connection)
    roles: dict[str, tuple[str, StreamSpec | None]] = {}
    for spec in mapping.cameras.values():
        roles[spec.topic] = ("camera", spec)
    for spec in mapping.state:
        roles[spec.topic] = ("state", spec)
    for spec in mapping.action:
        roles[spec.topic] = ("action", spec)
    if mapping.marker_topic:
        roles[mapping.marker_topic] = ("marker", None)
    allowed = {
        "camera": IMAGE_TYPES,
        "state": JOINT_TYPES,
        "action": JOINT_TYPES + ARRAY_TYPES,
        "marker": MARKER_TYPES,
    }
    streams: dict[str, Stream] = {}
    for topic, (role, _) in roles.items():
        if topic not in by_topic:
            raise ConversionError(path, f"not in the bag (its topics: {sorted(by_topic)})", topic=topic)
        msgtype = by_topic[topic][0].msgtype
        if msgtype not in allowed[role]:
            raise ConversionError(
                path, f"unsupported message type {msgtype} for a {role} topic; expected {allowed[role]}", topic=topic
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
                msg = reader.deserialize(raw, connection.msgtype)
                markers.append(_marker(msg, log_ns))
                continue
            stamp = _header_stamp(raw, reader.is2) if (use_header and stream.msgtype in HEADER_TYPES) else log_ns
            stream.stamps.append(stamp)
            stream.log_stamps.append(log_ns)
            if role == "camera":
                if stream.shape is None:
                    stream.shape = _decode_image(reader.deserialize(raw, connection.msgtype), stream.msgtype).shape
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
        times = stream.times
        backwards = np.flatnonzero(np.diff(times) < 0)
        if backwards.size:
            i = int(backwards[0])
            raise ConversionError(
                path,
                f"time goes backwards: a message stamped {times[i + 1] / NS:.6f} s follows one at {times[i] / NS:.6f} s"
                " (non-monotonic timestamps; try timestamps: receive if the header stamps are unreliable)",
                topic=topic,
                stamp_ns=int(times[i + 1]),
            )
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


# ---------------------------------------------------------------------------------------------------------------
# Frame grid and episodes
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TopicReport:
    messages: int
    rate_hz: float
    max_gap_s: float
    gaps: int  # intervals over 2.5x the median interval
    dropped_estimate: int  # messages missing by the median rate
    staleness_p50_ms: float  # at the kept frames: frame time minus the message's time
    staleness_max_ms: float
    skew_vs_state_ms: float  # median (message time - state message time) at the kept frames
    header_stamps_zero: bool = False


@dataclasses.dataclass
class BagReport:
    bag: str
    duration_s: float = 0.0
    grid_frames: int = 0
    frames: int = 0
    stale_frames: int = 0  # grid frames dropped for staleness
    episodes: list[dict] = dataclasses.field(default_factory=list)  # {"frames", "task", "start_s"}
    short_episodes_dropped: int = 0
    topics: dict[str, TopicReport] = dataclasses.field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    # For the cross-bag checks
    camera_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    state_names: list[str] = dataclasses.field(default_factory=list)
    action_names: list[str] = dataclasses.field(default_factory=list)
    part: str | None = None


@dataclasses.dataclass
class Plan:
    """The frames to write: grid times, per stream the message index of every frame, and the episodes."""

    times: np.ndarray  # int64 ns, all grid frames
    picks: dict[str, np.ndarray]  # topic -> message index per grid frame
    episodes: list[tuple[np.ndarray, str]]  # (grid frame indices, task)
    stale: int
    short_dropped: int


def _stale_mask(index: BagIndex, mapping: Mapping, times: np.ndarray, picks: dict[str, np.ndarray]) -> np.ndarray:
    fresh = np.ones(len(times), dtype=bool)
    for spec in mapping.streams:
        stamps = index.streams[spec.topic].times
        pick = picks[spec.topic]
        ok = pick >= 0
        age = np.where(ok, times - stamps[np.maximum(pick, 0)], np.iinfo(np.int64).max)
        fresh &= ok & (age <= int(mapping.staleness(spec) * NS))
    return fresh


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return [np.arange(a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)]


def plan_bag(index: BagIndex, mapping: Mapping) -> Plan:
    streams = [index.streams[spec.topic] for spec in mapping.streams]
    start = max(int(s.times[0]) for s in streams)
    end = min(int(s.times[-1]) for s in streams)  # no frame past any stream's last message
    period = NS / mapping.fps
    count = int((end - start) // period) + 1 if end >= start else 0
    times = start + np.round(np.arange(count) * period).astype(np.int64)
    picks = {s.topic: np.searchsorted(s.times, times, side="right") - 1 for s in streams}
    fresh = _stale_mask(index, mapping, times, picks)
    windows = _marker_windows(index) if mapping.split == "markers" else [(int(times[0]) if count else 0, None, None)]
    episodes: list[tuple[np.ndarray, str]] = []
    short = 0
    window_mask = np.zeros(len(times), dtype=bool)  # grid frames inside some episode window
    for window_start, window_end, marker_task in windows:
        in_window = (times >= window_start) & (True if window_end is None else times < window_end)
        window_mask |= in_window
        inside = fresh & in_window
        task = marker_task or index.task or mapping.task
        if not task:
            raise ConversionError(
                index.path, "no task text: the bag carries none (openpi.task), so set 'task:' in the mapping"
            )
        for run in _runs(inside):
            frames = run[:-1] if mapping.action_source == "next_state" else run  # the last has no next state
            if len(frames) < mapping.min_episode_frames:
                short += 1
                continue
            episodes.append((frames, task))
    stale = int((window_mask & ~fresh).sum())
    return Plan(times, picks, episodes, stale, short)


def _marker_windows(index: BagIndex) -> list[tuple[int, int | None, str | None]]:
    windows: list[tuple[int, int | None, str | None]] = []
    current: tuple[int, str | None] | None = None
    for stamp, start, task in sorted(index.markers, key=lambda m: m[0]):
        if start:
            if current is not None:  # start without stop: the previous episode ends here
                windows.append((current[0], stamp, current[1]))
            current = (stamp, task)
        elif current is not None:
            windows.append((current[0], stamp, current[1]))
            current = None
    if current is not None:
        windows.append((current[0], None, current[1]))
    if not windows:
        raise ConversionError(index.path, "no 'start' episode marker on the marker topic")
    return windows


def _topic_report(
    stream: Stream, plan: Plan, pick: np.ndarray, *, state: Stream, state_pick: np.ndarray, kept: np.ndarray
) -> TopicReport:
    stamps = stream.times
    intervals = np.diff(stamps) / NS
    median = float(np.median(intervals)) if intervals.size else 0.0
    gaps = int((intervals > 2.5 * median).sum()) if median > 0 else 0
    dropped = int(np.maximum(np.round(intervals[intervals > 1.5 * median] / median) - 1, 0).sum()) if median > 0 else 0
    if kept.size:
        age = (plan.times[kept] - stamps[pick[kept]]) / 1e6
        skew = (stamps[pick[kept]] - state.times[state_pick[kept]]) / 1e6
        p50, worst, skew50 = float(np.median(age)), float(age.max()), float(np.median(skew))
    else:
        p50 = worst = skew50 = float("nan")
    return TopicReport(
        messages=len(stamps),
        rate_hz=1.0 / median if median > 0 else 0.0,
        max_gap_s=float(intervals.max()) if intervals.size else 0.0,
        gaps=gaps,
        dropped_estimate=dropped,
        staleness_p50_ms=p50,
        staleness_max_ms=worst,
        skew_vs_state_ms=skew50,
        header_stamps_zero=stream.header_zero,
    )


# ---------------------------------------------------------------------------------------------------------------
# Writing one bag
# ---------------------------------------------------------------------------------------------------------------


def _features(mapping: Mapping, index: BagIndex) -> tuple[dict, list[str], list[str]]:
    features: dict[str, dict] = {}
    for name, spec in mapping.cameras.items():
        features[f"observation.images.{name}"] = {
            "dtype": "video" if mapping.video else "image",
            "shape": tuple(index.streams[spec.topic].shape),
            "names": ["height", "width", "channel"],
        }
    state_names = _names(mapping.state, index)
    action_names = state_names if mapping.action_source == "next_state" else _names(mapping.action, index)
    features["observation.state"] = {"dtype": "float32", "shape": (len(state_names),), "names": state_names}
    features["action"] = {"dtype": "float32", "shape": (len(action_names),), "names": action_names}
    return features, state_names, action_names


def _names(specs: Sequence[StreamSpec], index: BagIndex) -> list[str]:
    names: list[str] = []
    for spec in specs:
        stream = index.streams[spec.topic]
        if stream.names is not None:
            names += list(stream.names)
        else:  # arrays: <topic>[i]
            idx = spec.indices if spec.indices is not None else range(len(stream.values[0]))
            names += [f"{spec.topic}[{i}]" for i in idx]
    return names


def _stack(specs: Sequence[StreamSpec], index: BagIndex, picks: dict[str, np.ndarray]) -> np.ndarray:
    """[grid frames, dim] float32: every spec's value at each frame (-1 picks are filled with zeros)."""
    columns = []
    for spec in specs:
        values = np.stack(index.streams[spec.topic].values)
        columns.append(values[np.maximum(picks[spec.topic], 0)])
    return np.concatenate(columns, axis=1).astype(np.float32)


def convert_bag(
    path: Path,
    mapping: Mapping,
    part_root: Path,
    progress: Callable[[str, int], None] | None = None,
) -> BagReport:
    """One bag → a LeRobot dataset at `part_root`. Raises ConversionError."""
    begin = time.perf_counter()
    report = BagReport(bag=str(path))
    index = index_bag(path, mapping)
    plan = plan_bag(index, mapping)
    report.duration_s = index.duration_s
    report.grid_frames, report.stale_frames, report.short_episodes_dropped = (
        len(plan.times),
        plan.stale,
        plan.short_dropped,
    )
    kept = np.concatenate([frames for frames, _ in plan.episodes]) if plan.episodes else np.zeros(0, dtype=np.int64)
    state0 = index.streams[mapping.state[0].topic]
    for spec in mapping.streams:
        report.topics[spec.topic] = _topic_report(
            index.streams[spec.topic],
            plan,
            plan.picks[spec.topic],
            state=state0,
            state_pick=plan.picks[state0.topic],
            kept=kept,
        )
    if not plan.episodes:
        raise ConversionError(
            path,
            f"no episode of at least {mapping.min_episode_frames} frames: {plan.stale} of {len(plan.times)} frames"
            f" are stale (max_staleness {mapping.max_staleness} s); the report: {_short_report(report)}",
        )
    features, report.state_names, report.action_names = _features(mapping, index)
    report.camera_shapes = {name: index.streams[s.topic].shape for name, s in mapping.cameras.items()}
    state = _stack(mapping.state, index, plan.picks)
    if mapping.action_source == "next_state":
        action = np.concatenate([state[1:], state[-1:]])
    else:
        action = _stack(mapping.action, index, plan.picks)
    if progress:
        progress("total", int(kept.size))

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: PLC0415

    dataset = LeRobotDataset.create(
        mapping.repo_id,
        fps=mapping.fps,
        features=features,
        root=part_root,
        robot_type=mapping.robot_type,
        use_videos=mapping.video,
        vcodec=mapping.vcodec,
        image_writer_threads=4,  # image mode: PNG files written by threads
        # Video mode: frames go straight to one encoder thread per camera (no PNG round trip, about 2x faster).
        streaming_encoding=mapping.video,
        encoder_queue_maxsize=ENCODER_QUEUE,
    )
    camera_topics = {spec.topic: f"observation.images.{name}" for name, spec in mapping.cameras.items()}
    for frames_of_episode, task, images in _episode_images(path, mapping, index, plan, camera_topics):
        for frame, frame_images in zip(frames_of_episode, images, strict=True):
            _wait_for_encoder(dataset)
            dataset.add_frame(
                {**frame_images, "observation.state": state[frame], "action": action[frame], "task": task}
            )
            if progress:
                progress("frame", 1)
        dataset.save_episode()
        dropped = getattr(getattr(dataset, "_streaming_encoder", None), "_dropped_frames", None)
        if dropped and any(dropped.values()):
            raise ConversionError(path, f"LeRobot's video encoder dropped frames: {dict(dropped)}")
        report.episodes.append(
            {
                "frames": len(frames_of_episode),
                "task": task,
                "start_s": (plan.times[frames_of_episode[0]] - plan.times[0]) / NS,
            }
        )
    dataset.finalize()
    report.frames = int(kept.size)
    report.part = str(part_root)
    report.seconds = time.perf_counter() - begin
    return report


def _wait_for_encoder(dataset: Any) -> None:
    """Backpressure for LeRobot's streaming encoder, which drops a frame (with a warning) when a camera's queue
    stays full for 0.1 s: a live recording must not block, a conversion must not lose frames. Waits while any
    queue is nearly full. (LeRobot 0.4.4 has no public hook for this; without the attribute it does nothing,
    and the dropped-frame check after each episode still refuses a short video.)"""
    queues = getattr(getattr(dataset, "_streaming_encoder", None), "_frame_queues", None)
    if not queues:
        return
    while any(q.qsize() >= ENCODER_QUEUE - 2 for q in list(queues.values())):
        time.sleep(0.002)


def _episode_images(path: Path, mapping: Mapping, index: BagIndex, plan: Plan, camera_topics: dict[str, str]):
    """Yields (frames, task, iterator of {feature: image}) per episode, decoding each needed camera message once,
    in one pass over the bag, holding only the images that frames not yet written still need."""
    wanted = np.concatenate([frames for frames, _ in plan.episodes])
    last_use: dict[str, dict[int, int]] = {}
    for topic in camera_topics:
        uses: dict[int, int] = {}
        for position, frame in enumerate(wanted):
            uses[int(plan.picks[topic][frame])] = position
        last_use[topic] = uses
    reader = _open_reader(path)
    cache: dict[str, dict[int, np.ndarray]] = {topic: {} for topic in camera_topics}
    try:
        connections = [c for c in reader.connections if c.topic in camera_topics]
        messages = iter(reader.messages(connections=connections))
        counters = dict.fromkeys(camera_topics, -1)

        def fill_until(position: int) -> None:
            frame = wanted[position]
            need = {topic: int(plan.picks[topic][frame]) for topic in camera_topics}
            while any(need[t] not in cache[t] for t in camera_topics):
                item = next(messages, None)
                if item is None:
                    raise ConversionError(path, "camera messages ended early (truncated bag?)")
                connection, log_ns, raw = item
                topic = connection.topic
                counters[topic] += 1
                if counters[topic] in last_use[topic]:
                    try:
                        image = _decode_image(reader.deserialize(raw, connection.msgtype), connection.msgtype)
                    except Exception as error:
                        raise ConversionError(
                            path, f"cannot decode image: {error}", topic=topic, stamp_ns=log_ns
                        ) from error
                    if image.shape != index.streams[topic].shape:
                        raise ConversionError(
                            path,
                            f"image size changed from {index.streams[topic].shape} to {image.shape}",
                            topic=topic,
                            stamp_ns=log_ns,
                        )
                    cache[topic][counters[topic]] = image

        position = 0
        for frames, task in plan.episodes:

            def images(frames=frames):
                nonlocal position
                for frame in frames:
                    fill_until(position)
                    yield {camera_topics[t]: cache[t][int(plan.picks[t][frame])] for t in camera_topics}
                    for t in camera_topics:
                        pick = int(plan.picks[t][frame])
                        if last_use[t][pick] == position:
                            del cache[t][pick]
                    position += 1

            yield frames, task, images()
    finally:
        reader.close()


def _short_report(report: BagReport) -> str:
    parts = [
        f"{topic}: {t.messages} msgs at {t.rate_hz:.1f} Hz, max gap {t.max_gap_s:.3f} s"
        for topic, t in report.topics.items()
    ]
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Many bags → one dataset
# ---------------------------------------------------------------------------------------------------------------


def find_bags(inputs: Sequence[str | Path]) -> list[Path]:
    """Bag paths from the command line: rosbag2 folders, ROS 1 .bag files, or folders of either (one level)."""
    bags: list[Path] = []
    for item in map(Path, inputs):
        if (item.suffix == ".bag" and item.is_file()) or (
            item.is_dir()
            and ((item / "metadata.yaml").is_file() or any(item.glob("*.mcap")) or any(item.glob("*.db3")))
        ):
            bags.append(item)
        elif item.is_dir():
            found = sorted(
                p for p in item.iterdir() if (p.is_dir() and (p / "metadata.yaml").is_file()) or p.suffix == ".bag"
            )
            if not found:
                raise FileNotFoundError(f"{item}: no rosbag2 folders or .bag files in it")
            bags += found
        else:
            raise FileNotFoundError(f"{item}: not a rosbag2 folder, a .bag file or a folder of bags")
    return bags


def _quiet_libraries() -> None:
    """LeRobot logs progress on the root logger and `datasets` draws a bar per episode: keep the output ours."""
    logging.getLogger().setLevel(logging.WARNING)
    try:
        import datasets  # noqa: PLC0415

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _worker(path: str, mapping: Mapping, part_root: str, progress_queue: Any) -> BagReport:
    if progress_queue is not None:  # a worker process of its own
        _quiet_libraries()

    def progress(kind: str, value: int) -> None:
        if progress_queue is not None:
            progress_queue.put((kind, value))

    try:
        return convert_bag(Path(path), mapping, Path(part_root), progress)
    except ConversionError as error:
        message = str(error)
    except Exception as error:
        logger.exception("converting %s", path)
        message = str(ConversionError(path, f"{type(error).__name__}: {error}"))
    shutil.rmtree(part_root, ignore_errors=True)
    return BagReport(bag=path, error=message)


def _consistency_error(reference: BagReport, report: BagReport) -> str | None:
    if report.camera_shapes != reference.camera_shapes:
        return f"camera image sizes {report.camera_shapes} differ from bag {reference.bag}'s {reference.camera_shapes}"
    if report.state_names != reference.state_names:
        return f"joint names {report.state_names} differ from bag {reference.bag}'s {reference.state_names}"
    if report.action_names != reference.action_names:
        return f"action names {report.action_names} differ from bag {reference.bag}'s {reference.action_names}"
    return None


@dataclasses.dataclass
class ConversionResult:
    output: Path
    reports: list[BagReport]
    episodes: int
    frames: int
    seconds: float

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1, default=float))

    def to_json(self) -> dict:
        return {
            "output": str(self.output),
            "episodes": self.episodes,
            "frames": self.frames,
            "seconds": self.seconds,
            "bags": [dataclasses.asdict(r) for r in self.reports],
        }


def convert(
    bags: Sequence[Path],
    mapping: Mapping,
    output: Path,
    *,
    workers: int = 1,
    skip_bad: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> ConversionResult:
    """Convert `bags` into one LeRobot dataset at `output` (written elsewhere, moved into place at the end)."""
    begin = time.perf_counter()
    output = Path(output).resolve()
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    if not bags:
        raise ValueError("no bags to convert")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        reports = _convert_all(
            bags, mapping, staging / "parts", workers, show_progress=show_progress, stop_on_error=not skip_bad
        )
        good: list[BagReport] = []
        for report in reports:
            if report.error is None and good and (problem := _consistency_error(good[0], report)):
                report.error = str(ConversionError(report.bag, problem))
            if report.error is not None:
                if not skip_bad:
                    raise ConversionError.reraise(
                        f"{report.error} (nothing was written; --skip-bad leaves bad bags out)"
                    )
                logger.error("skipped: %s", report.error)
                continue
            good.append(report)
        if not good:
            raise ConversionError(bags[0], "no bag could be converted (all bad); nothing was written")
        dataset = staging / "dataset"
        if len(good) == 1:
            Path(good[0].part).rename(dataset)
        else:
            from lerobot.datasets.aggregate import aggregate_datasets  # noqa: PLC0415

            logger.info("aggregating %d bags", len(good))
            aggregate_datasets(
                [mapping.repo_id] * len(good), mapping.repo_id, roots=[Path(r.part) for r in good], aggr_root=dataset
            )
        result = ConversionResult(
            output=output,
            reports=reports,
            episodes=sum(len(r.episodes) for r in good),
            frames=sum(r.frames for r in good),
            seconds=time.perf_counter() - begin,
        )
        result.write_json(dataset / REPORT_NAME)
        if output.exists():  # --overwrite: the old dataset goes only once the new one is complete
            shutil.rmtree(output)
        dataset.rename(output)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _convert_all(
    bags: Sequence[Path], mapping: Mapping, parts: Path, workers: int, *, show_progress: bool, stop_on_error: bool
) -> list[BagReport]:
    """Every bag's report, in order (a bag not converted because an earlier one failed has none)."""
    from tqdm import tqdm  # noqa: PLC0415

    parts.mkdir()
    if workers == 0:  # in this process, one bag after another (debugging; no process start-up)
        reports = []
        for i, bag in enumerate(bags):
            reports.append(_worker(str(bag), mapping, str(parts / f"{i:05d}"), None))
            if reports[-1].error and stop_on_error:
                break
        return reports
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        futures.ProcessPoolExecutor(max_workers=max(1, min(workers, len(bags))), mp_context=context) as pool,
    ):
        progress_queue = manager.Queue()
        jobs = {
            pool.submit(_worker, str(bag), mapping, str(parts / f"{i:05d}"), progress_queue): i
            for i, bag in enumerate(bags)
        }
        reports: list[BagReport | None] = [None] * len(bags)
        bar = tqdm(total=0, unit="frame", desc=f"converting {len(bags)} bag(s)", disable=not show_progress)
        pending = set(jobs)
        while pending:
            done, pending = futures.wait(pending, timeout=0.2)
            _drain(progress_queue, bar)
            for job in done:
                report = job.result()
                reports[jobs[job]] = report
                if report.error and stop_on_error:
                    for other in pending:
                        other.cancel()  # those not started yet; running ones finish (their parts are discarded)
                    pending = {other for other in pending if not other.cancelled()}
        _drain(progress_queue, bar)
        bar.close()
    return [r for r in reports if r is not None]


def _drain(progress_queue: Any, bar: Any) -> None:
    while True:
        try:
            kind, value = progress_queue.get_nowait()
        except queue.Empty:
            return
        if kind == "total":
            bar.total += value
            bar.refresh()
        else:
            bar.update(value)


def format_report(result: ConversionResult) -> str:
    lines = [
        f"{result.output}: {result.episodes} episode(s), {result.frames} frames in {result.seconds:.1f} s",
    ]
    for report in result.reports:
        if report.error:
            lines.append(f"  SKIPPED {report.error}")
            continue
        lines.append(
            f"  {report.bag}: {report.duration_s:.1f} s, {report.frames} of {report.grid_frames} grid frames kept"
            f" ({report.stale_frames} stale, {report.short_episodes_dropped} short episode(s) dropped),"
            f" {len(report.episodes)} episode(s), {report.seconds:.1f} s"
        )
        lines.append(
            f"    {'topic':<40} {'msgs':>6} {'Hz':>7} {'max gap s':>9} {'gaps':>5} {'drops':>6}"
            f" {'stale p50/max ms':>17} {'skew ms':>8}"
        )
        for topic, t in report.topics.items():
            note = "  (header stamps zero: receive time)" if t.header_stamps_zero else ""
            lines.append(
                f"    {topic:<40} {t.messages:>6} {t.rate_hz:>7.1f} {t.max_gap_s:>9.3f} {t.gaps:>5}"
                f" {t.dropped_estimate:>6} {t.staleness_p50_ms:>8.1f}/{t.staleness_max_ms:<8.1f}"
                f" {t.skew_vs_state_ms:>8.1f}{note}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="openpi-convert-rosbag",
        description="Convert recorded rosbag2 (sqlite3, mcap) or ROS 1 bags into one LeRobot v3.0 dataset.",
    )
    parser.add_argument("bags", nargs="+", help="rosbag2 folders, .bag files, or folders of them (e.g. a recorder's)")
    parser.add_argument("--mapping", required=True, help="YAML mapping of topics to features (see the README)")
    parser.add_argument("--output", required=True, help="dataset folder to create (LeRobot root)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="bags converted in parallel worker processes (0: one after another in this process)",
    )
    parser.add_argument("--skip-bad", action="store_true", help="leave bad bags out (reported) instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output once the new one is done")
    parser.add_argument("--report", help="also write the validation report (JSON) here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        mapping = load_mapping(args.mapping)
        bags = find_bags(args.bags)
        result = convert(
            bags,
            mapping,
            Path(args.output),
            workers=args.workers,
            skip_bad=args.skip_bad,
            overwrite=args.overwrite,
            show_progress=not args.quiet,
        )
    except (ConversionError, MappingError, FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.report:
        result.write_json(Path(args.report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
