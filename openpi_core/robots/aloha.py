"""Trossen ALOHA (two ViperX 300 S arms): four cameras, 14 joints, absolute joint positions, grippers in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from openpi_core.robots.spec import CameraSpec, ExecutorLimits, RobotSpec

# The cameras openpi's ALOHA adapter reads (cam_low and the wrists optional).
CAMERAS = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")
_ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
# The ViperX 300 S joint ranges (gym-aloha's vx300s MJCF), grippers normalised to [0, 1]. A measured arm joint 0.5 rad
# from its command (a re-home, a sim reset) faults; grippers are not tracked (they stall on objects).
_VX300S_LOWER = (-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158, 0.0)
_VX300S_UPPER = (3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158, 1.0)


def aloha_layout(images: Mapping[str, np.ndarray], state: np.ndarray, prompt: str) -> dict[str, Any]:
    """openpi's ALOHA adapter input: ``{"state": [14], "images": {<cam>: CHW uint8}, "prompt"}``."""
    chw = {cam: np.ascontiguousarray(np.transpose(img, (2, 0, 1))) for cam, img in images.items()}
    return {"state": state, "images": chw, "prompt": prompt}


def make_aloha_example(seed: int = 0) -> dict[str, Any]:
    """A random observation in the ALOHA layout (CHW uint8 cameras, 14-D state), as a robot sends it."""
    rng = np.random.default_rng(seed)
    images = {cam: rng.integers(0, 256, (3, 224, 224), dtype=np.uint8) for cam in CAMERAS}
    return {"state": rng.uniform(-1, 1, 14).astype(np.float32), "images": images, "prompt": "fold the towel"}


ROBOT = RobotSpec(
    name="aloha",
    description="Trossen ALOHA: two ViperX 300 S arms, cam_high + two wrist cameras (cam_low optional)",
    cameras=(
        CameraSpec("cam_high", "cam_high/image_raw", "base_0_rgb", "top"),
        CameraSpec("cam_left_wrist", "cam_left_wrist/image_raw", "left_wrist_0_rgb", "left_wrist"),
        CameraSpec("cam_right_wrist", "cam_right_wrist/image_raw", "right_wrist_0_rgb", "right_wrist"),
    ),
    joint_names=tuple(f"{side}_{joint}" for side in ("left", "right") for joint in _ARM),
    action_units="absolute joint positions (rad); grippers normalised: 0 closed, 1 open",
    limits=ExecutorLimits(
        lower=_VX300S_LOWER * 2,
        upper=_VX300S_UPPER * 2,
        max_velocity=((3.0,) * 6 + (10.0,)) * 2,
        max_tracking_error=((0.5,) * 6 + (0.0,)) * 2,
        on_stale="hold",
    ),
    control_rate=50.0,
    policy_rate=10.0,
    layout=aloha_layout,
    example=make_aloha_example,
    optional_fields=("images.cam_low", "images.cam_left_wrist", "images.cam_right_wrist"),
    gripper_columns=("left_gripper", "right_gripper"),
    debug_config="debug_aloha",
    sim="openpi_ros.sim.aloha:make_sim",
    sim_task="AlohaTransferCube-v0",
    sim_config="pi0_aloha_sim",
)
