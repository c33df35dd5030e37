"""Assemble a policy observation from the latest camera frames and joint readings (no ROS types here).

The node feeds inputs in as they arrive (images as arrays or as frames still to be converted, `openpi_ros.frames`);
`assemble(now)` returns an observation only when every input is present, fresh enough, mutually in sync and valid.
Otherwise it raises `ObservationRejected` with a reason that names the offending input, and the caller publishes
nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

import numpy as np

from openpi_ros.frames import PendingFrame

__all__ = ["AssemblerConfig", "ObservationAssembler", "ObservationRejected", "RejectReason", "RobotObservation"]


class RejectReason(enum.Enum):
    MISSING = "missing"
    STALE = "stale"
    SKEW = "skew"
    INVALID = "invalid"


class ObservationRejected(Exception):  # noqa: N818 - a normal outcome, not a fault
    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class AssemblerConfig:
    """What a complete observation consists of, and how old and how far apart its parts may be."""

    camera_names: tuple[str, ...]
    joint_names: tuple[str, ...]
    max_age: float = 0.5
    """Seconds: an input older than this (relative to `now`) makes the observation stale."""
    max_skew: float = 0.2
    """Seconds: the largest allowed spread between the stamps of the inputs."""

    def __post_init__(self) -> None:
        if not self.joint_names:
            raise ValueError("AssemblerConfig.joint_names: at least one joint is required")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"AssemblerConfig.joint_names: duplicates in {self.joint_names}")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"AssemblerConfig.camera_names: duplicates in {self.camera_names}")
        if not (self.max_age > 0 and self.max_skew >= 0):
            raise ValueError(
                f"AssemblerConfig: max_age must be > 0 and max_skew >= 0, got {self.max_age}, {self.max_skew}"
            )


@dataclasses.dataclass(frozen=True)
class RobotObservation:
    images: dict[str, np.ndarray | PendingFrame]
    """Per camera; frames still pending are converted by the consumer (`FrameConverter.convert`)."""
    state: np.ndarray
    stamp_ns: int
    """The joint reading's stamp (ns); the chunk predicted from this observation carries it unchanged."""

    def as_policy_input(self, prompt: str) -> dict[str, object]:
        return {"images": dict(self.images), "state": self.state, "prompt": prompt}


class ObservationAssembler:
    def __init__(self, config: AssemblerConfig) -> None:
        self.config = config
        self._images: dict[str, tuple[int, np.ndarray | PendingFrame]] = {}
        self._joints: dict[str, tuple[int, float]] = {}
        self._joint_index = {name: i for i, name in enumerate(config.joint_names)}
        self._invalid: dict[str, str] = {}

    def clear(self) -> None:
        """Forget every buffered input (after a clock jump their stamps mean nothing)."""
        self._images.clear()
        self._joints.clear()
        self._invalid.clear()

    def mark_invalid(self, source: str, reason: str) -> None:
        """Record that the newest message of `source` was unusable; no observation is assembled until it recovers."""
        self._invalid[source] = reason

    def add_image(self, camera: str, image: np.ndarray | PendingFrame, stamp_ns: int) -> None:
        if camera not in self.config.camera_names:
            raise KeyError(f"unknown camera {camera!r}; configured: {self.config.camera_names}")
        self._invalid.pop(camera, None)
        self._images[camera] = (int(stamp_ns), image)

    def frames_converted(self) -> bool:
        """Whether every camera's newest image is ready to use (no pending frame left to convert)."""
        return all(not isinstance(image, PendingFrame) or image.converted for _, image in self._images.values())

    def add_joints(
        self, names: Sequence[str], positions: Sequence[float], stamp_ns: int, *, source: str = "joint_states"
    ) -> None:
        """Record a JointState reading from topic `source`; joints not in the config are ignored (several arms may
        share a topic, and one arm's joints may come from several topics)."""
        if len(names) != len(positions):
            reason = f"{source}: 'name' has {len(names)} entries but 'position' has {len(positions)}"
            self.mark_invalid(source, reason)
            raise ObservationRejected(RejectReason.INVALID, reason)
        for name, pos in zip(names, positions, strict=True):
            if name in self._joint_index:
                self._joints[name] = (int(stamp_ns), float(pos))
        self._invalid.pop(source, None)

    def assemble(self, now_ns: int) -> RobotObservation:
        """Stamps are integer nanoseconds (ROS time), so the chunk can carry its observation's stamp exactly."""
        cfg = self.config
        if self._invalid:
            raise ObservationRejected(RejectReason.INVALID, next(iter(self._invalid.values())))
        stamps: dict[str, int] = {}
        for cam in cfg.camera_names:
            if cam not in self._images:
                raise ObservationRejected(RejectReason.MISSING, f"camera {cam!r}: no image received yet")
            stamp, image = self._images[cam]
            if isinstance(image, PendingFrame) and image.error is not None:  # it failed for an earlier inference
                raise ObservationRejected(RejectReason.INVALID, str(image.error))
            stamps[f"camera {cam!r}"] = stamp
        missing = [n for n in cfg.joint_names if n not in self._joints]
        if missing:
            raise ObservationRejected(RejectReason.MISSING, f"joint states: no reading for joints {missing}")
        state = np.array([self._joints[n][1] for n in cfg.joint_names], dtype=np.float32)
        for name in cfg.joint_names:
            stamps[f"joint {name!r}"] = self._joints[name][0]
        bad = [n for n, v in zip(cfg.joint_names, state, strict=True) if not math.isfinite(v)]
        if bad:
            raise ObservationRejected(RejectReason.INVALID, f"joint states: non-finite position for joints {bad}")
        oldest_name = min(stamps, key=stamps.__getitem__)
        age = (now_ns - stamps[oldest_name]) * 1e-9
        if age > cfg.max_age:
            raise ObservationRejected(
                RejectReason.STALE, f"{oldest_name}: last message is {age:.3f} s old (max_age {cfg.max_age} s)"
            )
        skew = (max(stamps.values()) - stamps[oldest_name]) * 1e-9
        if skew > cfg.max_skew:
            raise ObservationRejected(
                RejectReason.SKEW, f"{oldest_name}: {skew:.3f} s behind the newest input (max_skew {cfg.max_skew} s)"
            )
        stamp_ns = max(self._joints[n][0] for n in cfg.joint_names)
        images = {cam: self._images[cam][1] for cam in cfg.camera_names}
        return RobotObservation(images=images, state=state, stamp_ns=stamp_ns)
