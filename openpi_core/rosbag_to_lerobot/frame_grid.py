"""The frame grid: every stream resampled at the mapping's fps, checked, and cut into episodes.

Frame k at t0 + k/fps takes each stream's newest message at or before that time (sample-and-hold). Before anything
is written, the data is checked; what is bad is handled by the mapping's `on_bad`:

- NaN/Inf in a joint or command value. fail: refused, naming bag, topic, time and field. drop_frames: the message
  is left out (its frames hold the previous value while that is fresh). split: the frames that use it are removed.
- Time going backwards (header or receive time). fail: refused. drop_frames: the out-of-order messages are left
  out. split: the recording is cut at the jump into separately gridded parts.
- A stream older than its `max_staleness` at a frame (a stall). fail: refused, naming the stream and the
  `max_staleness` that would keep it. drop_frames, split: the frames are removed.
- A frame whose messages' header stamps spread over more than `max_skew` (e.g. `timestamps: receive` over
  streams whose acquisition times disagree). fail: refused. drop_frames, split: the frames are removed.

LeRobot frames are evenly spaced, so frames cannot be removed from the middle of an episode: wherever frames go,
the episode ends and a new one starts. Runs shorter than `min_episode_frames` are dropped (and counted).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from openpi_core.rosbag_to_lerobot.bag_index import BagIndex, Stream
from openpi_core.rosbag_to_lerobot.errors import NS, ConversionError
from openpi_core.rosbag_to_lerobot.mapping import StreamSpec, TopicMapping

__all__ = ["Episode", "Plan", "plan_bag"]

_NEVER = np.iinfo(np.int64).max


@dataclasses.dataclass
class Episode:
    times: np.ndarray  # int64 ns: the episode's grid times
    picks: dict[str, np.ndarray]  # topic -> message index (into the stream) per frame
    next_state_picks: dict[str, np.ndarray]  # state topics -> message index at the following grid time
    task: str


@dataclasses.dataclass
class Plan:
    """The episodes to write, and what happened on the way (for the report)."""

    episodes: list[Episode]
    grid_frames: int = 0
    stale_frames: int = 0  # removed: a stream older than its max_staleness
    bad_frames: int = 0  # removed: a non-finite value or too much skew
    dropped_messages: int = 0  # drop_frames: non-finite or out-of-order messages left out
    short_dropped: int = 0
    parts: int = 1  # split: separately gridded parts of the recording (cut where time went backwards)
    splits: list[str] = dataclasses.field(default_factory=list)  # why each episode ended before its window did


@dataclasses.dataclass
class _Valid:
    """One stream's usable messages in a part of the recording: their indices and times."""

    index: np.ndarray
    times: np.ndarray


def plan_bag(index: BagIndex, mapping: TopicMapping) -> Plan:
    plan = Plan(episodes=[])
    excluded = {spec.topic: np.zeros(len(index.streams[spec.topic].stamps), bool) for spec in mapping.streams}
    cuts: list[int] = []  # split: log times where the recording is cut
    nonfinite: dict[str, np.ndarray] = {}
    for spec in mapping.streams:
        stream = index.streams[spec.topic]
        for kind, times in _clocks(stream):
            backwards = _out_of_order(times)
            if not backwards.any():
                continue
            first = int(np.flatnonzero(backwards)[0])
            if mapping.on_bad == "fail":
                previous = int(np.max(times[:first]))
                raise ConversionError(
                    index.path,
                    f"{kind} time goes backwards: a message stamped {times[first] / NS:.6f} s follows one at "
                    f"{previous / NS:.6f} s; set on_bad: drop_frames to leave the out-of-order messages out, or "
                    "on_bad: split to cut the recording there",
                    topic=spec.topic,
                    stamp_ns=int(times[first]),
                )
            if mapping.on_bad == "drop_frames":
                excluded[spec.topic] |= backwards
            else:
                cuts += [int(stream.log_times[i]) for i in np.flatnonzero(backwards)]
        if stream.values:
            bad = ~np.all(np.isfinite(stream.value_array), axis=1)
            if bad.any():
                _check_nonfinite(index, mapping, spec, stream, bad)
                if mapping.on_bad == "drop_frames":
                    excluded[spec.topic] |= bad
                else:
                    nonfinite[spec.topic] = bad
    plan.dropped_messages = int(sum(e.sum() for e in excluded.values()))
    bounds = [-_NEVER, *sorted(set(cuts)), _NEVER]
    plan.parts = len(bounds) - 1
    for lo, hi in itertools.pairwise(bounds):
        valid = {}
        for spec in mapping.streams:
            stream = index.streams[spec.topic]
            keep = ~excluded[spec.topic] & (stream.log_times >= lo) & (stream.log_times < hi)
            valid[spec.topic] = _Valid(np.flatnonzero(keep), stream.times[keep])
        if all(v.index.size for v in valid.values()):
            _plan_part(index, mapping, valid, nonfinite, plan)
    return plan


def _clocks(stream: Stream) -> list[tuple[str, np.ndarray]]:
    """The timestamps to check for order: receive time always, header stamps where the type has them."""
    clocks = [("receive", stream.log_times)]
    if stream.header_times is not None:
        clocks.append(("header", stream.header_times))
    return clocks


def _out_of_order(times: np.ndarray) -> np.ndarray:
    """Messages stamped before an earlier message (the running maximum)."""
    if times.size < 2:
        return np.zeros(times.size, bool)
    running = np.maximum.accumulate(times)
    return np.concatenate([[False], times[1:] < running[:-1]])


def _check_nonfinite(index: BagIndex, mapping: TopicMapping, spec: StreamSpec, stream: Stream, bad: np.ndarray) -> None:
    if mapping.on_bad != "fail":
        return
    i = int(np.flatnonzero(bad)[0])
    column = int(np.flatnonzero(~np.isfinite(stream.value_array[i]))[0])
    label = stream.names[column] if stream.names else None
    field = f"{spec.field if stream.names else 'data'}[{column}]" + (f" ({label})" if label else "")
    raise ConversionError(
        index.path,
        f"{int(bad.sum())} message(s) with NaN/Inf values (first: {stream.value_array[i][column]}); set on_bad: "
        "drop_frames to leave them out, or on_bad: split to end episodes there",
        topic=spec.topic,
        stamp_ns=int(stream.times[i]),
        field=field,
    )


def _plan_part(
    index: BagIndex, mapping: TopicMapping, valid: dict[str, _Valid], nonfinite: dict[str, np.ndarray], plan: Plan
) -> None:
    specs = mapping.streams
    start = max(int(v.times[0]) for v in valid.values())
    # The last frame may be after a stream's last message, as long as that message is still fresh.
    end = min(int(valid[s.topic].times[-1]) + int(mapping.staleness(s) * NS) for s in specs)
    period = NS / mapping.fps
    count = int((end - start) // period) + 1 if end >= start else 0
    if count == 0:
        return
    times = start + np.round(np.arange(count + 1) * period).astype(np.int64)  # one more: the next state of the last
    picks, ages = {}, {}
    for spec in specs:
        v = valid[spec.topic]
        position = np.searchsorted(v.times, times, side="right") - 1
        picks[spec.topic] = np.where(position >= 0, v.index[np.maximum(position, 0)], -1)
        ages[spec.topic] = np.where(position >= 0, times - v.times[np.maximum(position, 0)], _NEVER)
    fresh = {s.topic: ages[s.topic] <= int(mapping.staleness(s) * NS) for s in specs}
    all_fresh = np.logical_and.reduce(list(fresh.values()))
    good = np.ones(count + 1, bool)
    for topic, bad in nonfinite.items():
        pick = picks[topic]
        good &= ~((pick >= 0) & bad[np.maximum(pick, 0)])
    skewed = _skewed(index, mapping, picks, count + 1)
    times, grid = times[:count], slice(0, count)
    plan.grid_frames += count
    windows = _marker_windows(index) if mapping.split == "markers" else [(int(times[0]), None, None)]
    for window_start, window_end, marker_task in windows:
        in_window = (times >= window_start) & (True if window_end is None else times < window_end)
        task = marker_task or index.task or mapping.task
        if not task:
            raise ConversionError(
                index.path, "no task text: the bag carries none (openpi.task), so set 'task:' in the mapping"
            )
        stale = in_window & ~all_fresh[grid]
        bad = in_window & all_fresh[grid] & (~good[grid] | skewed[grid])
        if mapping.on_bad == "fail" and stale.any():
            raise ConversionError(index.path, _stall(mapping, specs, times, ages, stale) + "; or set on_bad: split")
        if mapping.on_bad == "fail" and skewed[grid][in_window].any():
            i = int(np.flatnonzero(in_window & skewed[grid])[0])
            raise ConversionError(
                index.path,
                f"the frame's messages' header stamps spread over more than max_skew {mapping.skew} s (timestamps: "
                f"{mapping.timestamps}); set on_bad: drop_frames to leave such frames out",
                stamp_ns=int(times[i]),
            )
        plan.stale_frames += int(stale.sum())
        plan.bad_frames += int(bad.sum())
        inside = in_window & all_fresh[grid] & good[grid] & ~skewed[grid]
        runs = _runs(inside)
        for k, run in enumerate(runs):
            frames = run
            if mapping.action_source == "next_state":
                following = run[-1] + 1
                state_ok = all(fresh[s.topic][following] for s in mapping.state) and good[following]
                if not state_ok:
                    frames = run[:-1]  # the last frame has no fresh next state
            if k + 1 < len(runs):
                grid_arrays = _GridArrays(times, ages, good, skewed)
                plan.splits.append(_why_split(mapping, grid_arrays, np.arange(run[-1] + 1, runs[k + 1][0])))
            if len(frames) < mapping.min_episode_frames:
                plan.short_dropped += 1
                continue
            episode_picks = {topic: pick[frames] for topic, pick in picks.items()}
            next_picks = {s.topic: picks[s.topic][frames + 1] for s in mapping.state}
            plan.episodes.append(Episode(times[frames], episode_picks, next_picks, task))


def _skewed(index: BagIndex, mapping: TopicMapping, picks: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Frames whose picked messages' header stamps spread over more than max_skew (where headers exist)."""
    stamps = []
    for spec in mapping.streams:
        header = index.streams[spec.topic].header_times
        if header is not None:
            pick = picks[spec.topic]
            stamps.append(np.where(pick >= 0, header[np.maximum(pick, 0)], 0))
    if len(stamps) < 2:
        return np.zeros(count, bool)
    stacked = np.stack(stamps)
    return (stacked.max(axis=0) - stacked.min(axis=0)) > int(mapping.skew * NS)


def _stall(
    mapping: TopicMapping, specs: list[StreamSpec], times: np.ndarray, ages: dict[str, np.ndarray], stale: np.ndarray
) -> str:
    first = int(np.flatnonzero(stale)[0])
    run_end = first
    while run_end + 1 < len(stale) and stale[run_end + 1]:
        run_end += 1
    worst = max(specs, key=lambda s: ages[s.topic][first] - mapping.staleness(s) * NS)
    oldest = float(ages[worst.topic][first : run_end + 1].max()) / NS
    return (
        f"topic {worst.topic} went stale at t={times[first] / NS:.6f} s "
        f"for {(run_end - first + 1) / mapping.fps:.3f} s "
        f"(its newest message up to {oldest:.3f} s old; max_staleness {mapping.staleness(worst)} s; "
        f"max_staleness {oldest:.3f} would keep these frames)"
    )


@dataclasses.dataclass(frozen=True)
class _GridArrays:
    times: np.ndarray
    ages: dict[str, np.ndarray]  # topic -> age of the picked message per frame (ns)
    good: np.ndarray  # no non-finite value picked
    skewed: np.ndarray


def _why_split(mapping: TopicMapping, grid: _GridArrays, gap: np.ndarray) -> str:
    """Why the frames `gap` (between two episodes) were left out."""
    stale = [s for s in mapping.streams if np.any(grid.ages[s.topic][gap] > int(mapping.staleness(s) * NS))]
    if stale:
        topic = stale[0].topic
        oldest = float(grid.ages[topic][gap].max()) / NS
        reason = (
            f"{topic} stale for {len(gap) / mapping.fps:.3f} s (newest message up to {oldest:.3f} s old; "
            f"max_staleness {oldest:.3f} would have kept it)"
        )
    elif np.any(~grid.good[gap]):
        reason = "NaN/Inf values"
    elif np.any(grid.skewed[gap]):
        reason = f"header stamps spread over more than max_skew {mapping.skew} s"
    else:
        reason = "frames left out"
    return f"split at t={grid.times[gap[0]] / NS:.3f} s: {reason}"


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return [np.arange(a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)]


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
