"""One bag's planned episodes -> a LeRobot v3.0 dataset (LeRobot's own writer), and the read-back check."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openpi_core.rosbag_to_lerobot.bag_index import BagIndex, decode_image, index_bag, open_reader
from openpi_core.rosbag_to_lerobot.errors import NS, ConversionError
from openpi_core.rosbag_to_lerobot.frame_grid import Episode, Plan, plan_bag
from openpi_core.rosbag_to_lerobot.mapping import StreamSpec, TopicMapping
from openpi_core.rosbag_to_lerobot.report import BagReport, short_report, topic_report

__all__ = ["check_dataset", "convert_bag", "feature_names"]

ENCODER_QUEUE = 32  # frames per camera waiting for the video encoder (480x640: about 30 MB)


def convert_bag(
    path: Path, mapping: TopicMapping, part_root: Path, progress: Callable[[str, int], None] | None = None
) -> BagReport:
    """One bag -> a LeRobot dataset at `part_root`. Raises ConversionError."""
    begin = time.perf_counter()
    report = BagReport(bag=str(path))
    index = index_bag(path, mapping)
    plan = plan_bag(index, mapping)
    report.duration_s = index.duration_s
    report.add_plan(plan)
    state0 = index.streams[mapping.state[0].topic]
    for spec in mapping.streams:
        report.topics[spec.topic] = topic_report(index.streams[spec.topic], plan, state=state0)
    if not plan.episodes:
        raise ConversionError(
            path,
            f"no episode of at least {mapping.min_episode_frames} frames: {plan.stale_frames} of {plan.grid_frames}"
            f" frames are stale (max_staleness {mapping.max_staleness} s), {plan.bad_frames} bad; the report: "
            f"{short_report(report)}",
        )
    features, report.state_names, report.action_names = _features(mapping, index)
    report.camera_shapes = {name: index.streams[s.topic].shape for name, s in mapping.cameras.items()}
    total = sum(len(e.times) for e in plan.episodes)
    if progress:
        progress("total", total)

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
    first_time = min(int(e.times[0]) for e in plan.episodes)
    for episode, images in _episode_images(path, index, plan, camera_topics):
        state = _stack(mapping.state, index, episode.picks)
        if mapping.action_source == "next_state":
            action = _stack(mapping.state, index, episode.next_state_picks)
        else:
            action = _stack(mapping.action, index, episode.picks)
        for frame, frame_images in enumerate(images):
            _wait_for_encoder(dataset)
            dataset.add_frame(
                {**frame_images, "observation.state": state[frame], "action": action[frame], "task": episode.task}
            )
            if progress:
                progress("frame", 1)
        dataset.save_episode()
        dropped = getattr(getattr(dataset, "_streaming_encoder", None), "_dropped_frames", None)
        if dropped and any(dropped.values()):
            raise ConversionError(path, f"LeRobot's video encoder dropped frames: {dict(dropped)}")
        start_s = (int(episode.times[0]) - first_time) / NS
        report.episodes.append({"frames": len(episode.times), "task": episode.task, "start_s": start_s})
    dataset.finalize()
    report.frames = total
    report.part = str(part_root)
    report.seconds = time.perf_counter() - begin
    return report


def feature_names(specs: Sequence[StreamSpec], index: BagIndex) -> list[str]:
    """A name per value column: the mapping's `names`, else joint names (array topics: `<topic>[i]`); with several
    streams, prefixed with each topic's namespace (`/left/joint_states` -> `left/waist`)."""
    names: list[str] = []
    for spec in specs:
        stream = index.streams[spec.topic]
        if spec.names is not None:
            names += list(spec.names)
            continue
        if stream.names is not None:
            own = list(stream.names)
        else:
            idx = spec.indices if spec.indices is not None else range(len(stream.values[0]))
            own = [f"{spec.topic}[{i}]" for i in idx]
        if len(specs) > 1 and stream.names is not None:
            namespace = spec.topic.strip("/").rpartition("/")[0] or spec.topic.strip("/")
            own = [f"{namespace}/{name}" for name in own]
        names += own
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConversionError(
            index.path, f"feature names {duplicates} repeat: give the streams 'names:' in the mapping"
        )
    return names


def _features(mapping: TopicMapping, index: BagIndex) -> tuple[dict, list[str], list[str]]:
    features: dict[str, dict] = {}
    for name, spec in mapping.cameras.items():
        features[f"observation.images.{name}"] = {
            "dtype": "video" if mapping.video else "image",
            "shape": tuple(index.streams[spec.topic].shape),
            "names": ["height", "width", "channel"],
        }
    state_names = feature_names(mapping.state, index)
    action_names = state_names if mapping.action_source == "next_state" else feature_names(mapping.action, index)
    features["observation.state"] = {"dtype": "float32", "shape": (len(state_names),), "names": state_names}
    features["action"] = {"dtype": "float32", "shape": (len(action_names),), "names": action_names}
    return features, state_names, action_names


def _stack(specs: Sequence[StreamSpec], index: BagIndex, picks: dict[str, np.ndarray]) -> np.ndarray:
    """[frames, dim] float32: every spec's value at each frame."""
    columns = [index.streams[spec.topic].value_array[picks[spec.topic]] for spec in specs]
    return np.concatenate(columns, axis=1).astype(np.float32)


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


def _episode_images(
    path: Path, index: BagIndex, plan: Plan, camera_topics: dict[str, str]
) -> Iterator[tuple[Episode, Iterator[dict[str, np.ndarray]]]]:
    """Yields (episode, iterator of {feature: image}) per episode, decoding each needed camera message once, in one
    pass over the bag, holding only the images that frames not yet written still need."""
    order = {topic: np.concatenate([e.picks[topic] for e in plan.episodes]) for topic in camera_topics}
    last_use = {topic: {int(m): position for position, m in enumerate(order[topic])} for topic in camera_topics}
    reader = open_reader(path)
    cache: dict[str, dict[int, np.ndarray]] = {topic: {} for topic in camera_topics}
    try:
        connections = [c for c in reader.connections if c.topic in camera_topics]
        messages = iter(reader.messages(connections=connections))
        counters = dict.fromkeys(camera_topics, -1)

        def fill_until(position: int) -> None:
            need = {topic: int(order[topic][position]) for topic in camera_topics}
            while any(need[t] not in cache[t] for t in camera_topics):
                item = next(messages, None)
                if item is None:
                    raise ConversionError(path, "camera messages ended early (truncated bag?)")
                topic = item[0].topic
                counters[topic] += 1
                if counters[topic] in last_use[topic]:
                    cache[topic][counters[topic]] = _decode_checked(path, index, reader, item)

        position = 0
        for episode in plan.episodes:

            def images(episode: Episode = episode) -> Iterator[dict[str, np.ndarray]]:
                nonlocal position
                for _ in range(len(episode.times)):
                    fill_until(position)
                    yield {camera_topics[t]: cache[t][int(order[t][position])] for t in camera_topics}
                    for t in camera_topics:
                        pick = int(order[t][position])
                        if last_use[t][pick] == position:
                            del cache[t][pick]
                    position += 1

            yield episode, images()
    finally:
        reader.close()


def _decode_checked(path: Path, index: BagIndex, reader: Any, item: tuple[Any, int, bytes]) -> np.ndarray:
    """One camera message (a reader's (connection, log time, raw) item), decoded and checked for its size."""
    connection, log_ns, raw = item
    topic = connection.topic
    try:
        image = decode_image(reader.deserialize(raw, connection.msgtype), connection.msgtype)
    except Exception as error:
        raise ConversionError(path, f"cannot decode image: {error}", topic=topic, stamp_ns=log_ns) from error
    if image.shape != index.streams[topic].shape:
        raise ConversionError(
            path, f"image size changed from {index.streams[topic].shape} to {image.shape}", topic=topic, stamp_ns=log_ns
        )
    return image


def check_dataset(root: Path, repo_id: str) -> None:
    """Read the written dataset back through LeRobot before it is moved into place: every frame's state, action,
    timestamp and index (parquet), every episode's first and last frame with its images (video or PNG), and the
    stats, all finite. Raises ConversionError naming the frame and field."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: PLC0415

    try:
        dataset = LeRobotDataset(repo_id, root=root)
    except Exception as error:
        raise ConversionError(root, f"the written dataset does not load: {type(error).__name__}: {error}") from None
    table = dataset.hf_dataset.with_format("numpy")
    for field in ("observation.state", "action", "timestamp"):
        values = np.asarray(table[field], dtype=np.float64)
        bad = np.flatnonzero(~np.all(np.isfinite(values.reshape(len(values), -1)), axis=1))
        if bad.size:
            raise ConversionError(root, f"frame {int(bad[0])} holds a non-finite value", field=field)
    for key, stats in dataset.meta.stats.items():
        for name, value in stats.items():
            if np.issubdtype(np.asarray(value).dtype, np.number) and not np.all(np.isfinite(value)):
                raise ConversionError(root, f"stats {name} of {key} are not finite", field=key)
    boundaries = set()
    for episode in range(dataset.meta.total_episodes):
        meta = dataset.meta.episodes[episode]
        boundaries |= {int(meta["dataset_from_index"]), int(meta["dataset_to_index"]) - 1}
    for frame in sorted(boundaries):
        try:
            item = dataset[frame]
        except Exception as error:
            raise ConversionError(root, f"frame {frame} does not load: {type(error).__name__}: {error}") from None
        for key in dataset.meta.camera_keys:
            if key not in item:
                raise ConversionError(root, f"frame {frame} has no image", field=key)
