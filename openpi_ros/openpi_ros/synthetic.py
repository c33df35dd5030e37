"""A synthetic robot: deterministic camera frames and joint trajectories, for demos and tests (no ROS types)."""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["SyntheticRobot", "SyntheticRobotConfig"]


@dataclasses.dataclass(frozen=True)
class SyntheticRobotConfig:
    camera_names: tuple[str, ...] = ("cam_high", "cam_left_wrist", "cam_right_wrist")
    image_height: int = 224
    image_width: int = 224
    joint_names: tuple[str, ...] = tuple(
        f"{side}_{j}"
        for side in ("left", "right")
        for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
    )
    amplitude: float = 0.3
    """rad: amplitude of each joint's sine wave."""
    period: float = 4.0
    """s: period of the joint motion and of the camera pattern's drift."""

    def __post_init__(self) -> None:
        if self.image_height <= 0 or self.image_width <= 0:
            raise ValueError(f"image size must be positive, got {self.image_height}x{self.image_width}")
        if not self.joint_names:
            raise ValueError("joint_names must not be empty")
        if self.period <= 0:
            raise ValueError(f"period must be > 0, got {self.period}")


class SyntheticRobot:
    """Joint j follows amplitude * sin(2π t / period + j * 0.5) (grippers, normalised to [0, 1], around 0.5);
    camera k shows a colour gradient that drifts."""

    def __init__(self, config: SyntheticRobotConfig) -> None:
        self.config = config
        h, w = config.image_height, config.image_width
        yy, xx = np.mgrid[0:h, 0:w]
        self._base = [
            np.stack(
                [(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 64 * (k % 4))], -1
            ).astype(np.uint8)
            for k in range(len(config.camera_names))
        ]
        self._phases = np.arange(len(config.joint_names), dtype=np.float64) * 0.5
        self._offsets = np.array([0.5 if "gripper" in name else 0.0 for name in config.joint_names])

    def joint_positions(self, t: float) -> np.ndarray:
        cfg = self.config
        return self._offsets + cfg.amplitude * np.sin(2 * np.pi * t / cfg.period + self._phases)

    def camera_frame(self, index: int, t: float) -> np.ndarray:
        shift = int((t / self.config.period) * self.config.image_width) % self.config.image_width
        return np.roll(self._base[index], shift, axis=1)
