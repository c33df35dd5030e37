"""The validation report of a conversion: per bag and topic, what was kept, dropped, split and why."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from openpi_core.rosbag_to_lerobot.bag_index import Stream
from openpi_core.rosbag_to_lerobot.errors import NS
from openpi_core.rosbag_to_lerobot.frame_grid import Plan

__all__ = [
    "REPORT_NAME",
    "BagReport",
    "ConversionResult",
    "TopicReport",
    "format_report",
    "short_report",
    "topic_report",
]

REPORT_NAME = "conversion_report.json"


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
    stale_frames: int = 0  # grid frames left out: a stream older than its max_staleness
    bad_frames: int = 0  # grid frames left out: NaN/Inf values or header skew
    dropped_messages: int = 0  # on_bad: drop_frames: messages left out (NaN/Inf, out of order)
    parts: int = 1  # on_bad: split: parts the recording was cut into where time went backwards
    episodes: list[dict] = dataclasses.field(default_factory=list)  # {"frames", "task", "start_s"}
    splits: list[str] = dataclasses.field(default_factory=list)
    short_episodes_dropped: int = 0
    topics: dict[str, TopicReport] = dataclasses.field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    # For the cross-bag checks
    camera_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    state_names: list[str] = dataclasses.field(default_factory=list)
    action_names: list[str] = dataclasses.field(default_factory=list)
    part: str | None = None

    def add_plan(self, plan: Plan) -> None:
        self.grid_frames, self.stale_frames, self.bad_frames = plan.grid_frames, plan.stale_frames, plan.bad_frames
        self.dropped_messages, self.parts, self.splits = plan.dropped_messages, plan.parts, list(plan.splits)
        self.short_episodes_dropped = plan.short_dropped


def topic_report(stream: Stream, plan: Plan, *, state: Stream) -> TopicReport:
    stamps = stream.times
    intervals = np.diff(stamps) / NS
    median = float(np.median(intervals)) if intervals.size else 0.0
    gaps = int((intervals > 2.5 * median).sum()) if median > 0 else 0
    dropped = int(np.maximum(np.round(intervals[intervals > 1.5 * median] / median) - 1, 0).sum()) if median > 0 else 0
    if plan.episodes:
        times = np.concatenate([e.times for e in plan.episodes])
        pick = np.concatenate([e.picks[stream.topic] for e in plan.episodes])
        state_pick = np.concatenate([e.picks[state.topic] for e in plan.episodes])
        age = (times - stamps[pick]) / 1e6
        skew = (stamps[pick] - state.times[state_pick]) / 1e6
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


def short_report(report: BagReport) -> str:
    parts = [
        f"{topic}: {t.messages} msgs at {t.rate_hz:.1f} Hz, max gap {t.max_gap_s:.3f} s"
        for topic, t in report.topics.items()
    ]
    return "; ".join(parts)


def format_report(result: ConversionResult) -> str:
    lines = [f"{result.output}: {result.episodes} episode(s), {result.frames} frames in {result.seconds:.1f} s"]
    for report in result.reports:
        if report.error:
            lines.append(f"  SKIPPED {report.error}")
            continue
        dropped = f", {report.dropped_messages} bad message(s) left out" if report.dropped_messages else ""
        parts = f", cut into {report.parts} parts where time went back" if report.parts > 1 else ""
        lines.append(
            f"  {report.bag}: {report.duration_s:.1f} s, {report.frames} of {report.grid_frames} grid frames kept"
            f" ({report.stale_frames} stale, {report.bad_frames} bad, {report.short_episodes_dropped} short"
            f" episode(s) dropped{dropped}{parts}), {len(report.episodes)} episode(s), {report.seconds:.1f} s"
        )
        lines += [f"    {split}" for split in report.splits]
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
