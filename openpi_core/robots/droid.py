"""DROID (Franka Panda + Robotiq 2F-85): an exterior and a wrist camera, 7 joints + gripper, joint velocities out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from openpi_core.robots.spec import CameraSpec, ExecutorLimits, RobotSpec

# openpi's DROID policies output normalised joint velocities (1.0 = DROID's 0.2 rad per 15 Hz step, i.e. 3 rad/s;
# the vector is bounded to max |v| <= 1 as DROID's IK solver does) and a gripper position binarised at 0.5 (openpi's
# examples/droid/main.py). Limits are the Panda's: joint ranges, velocity and acceleration (rad, rad/s, rad/s²); the
# gripper is unbounded in rate (its own controller limits it).
_PANDA_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
_PANDA_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
_PANDA_MAX_VELOCITY = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
_PANDA_MAX_ACCELERATION = (15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0)
VELOCITY_SCALE = 0.2 * 15.0


def droid_layout(images: Mapping[str, np.ndarray], state: np.ndarray, prompt: str) -> dict[str, Any]:
    """openpi's DROID adapter input (the `observation/...` keys of its DROID client)."""
    return {
        "observation/exterior_image_1_left": images["exterior_image_1_left"],
        "observation/wrist_image_left": images["wrist_image_left"],
        "observation/joint_position": state[:7],
        "observation/gripper_position": state[7:8],
        "prompt": prompt,
    }


def make_droid_example(seed: int = 0) -> dict[str, Any]:
    """A random observation in the DROID layout (two HWC uint8 cameras, 7 joints + gripper)."""
    rng = np.random.default_rng(seed)
    return {
        "observation/exterior_image_1_left": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image_left": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/joint_position": rng.uniform(-1, 1, 7).astype(np.float32),
        "observation/gripper_position": rng.uniform(0, 1, 1).astype(np.float32),
        "prompt": "put the marker in the cup",
    }


ROBOT = RobotSpec(
    name="droid",
    description="DROID: Franka Panda + Robotiq gripper, an exterior ZED (left image) and a wrist camera",
    cameras=(
        CameraSpec("exterior_image_1_left", "exterior_1/left/image_raw", "base_0_rgb"),
        CameraSpec("wrist_image_left", "wrist/left/image_raw", "left_wrist_0_rgb"),
    ),
    joint_names=(*(f"panda_joint{i}" for i in range(1, 8)), "gripper"),
    action_names=(*(f"panda_joint{i}/velocity" for i in range(1, 8)), "gripper"),
    action_units="normalised joint velocities (1.0 = 3 rad/s, vector bounded to max |v| <= 1); gripper 0 open..1 "
    "closed, binarised at 0.5",
    limits=ExecutorLimits(
        lower=(*_PANDA_LOWER, 0.0),
        upper=(*_PANDA_UPPER, 1.0),
        max_velocity=(*_PANDA_MAX_VELOCITY, 100.0),
        max_acceleration=(*_PANDA_MAX_ACCELERATION, 1000.0),
        velocity_scale=VELOCITY_SCALE,
        velocity_input_bound=1.0,
        binary_columns=("gripper",),
        on_stale="stop",
    ),
    control_rate=15.0,
    policy_rate=5.0,
    layout=droid_layout,
    example=make_droid_example,
    gripper_columns=("gripper",),
    debug_config="debug_droid",
)
