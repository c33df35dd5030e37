"""LIBERO (robosuite Panda): agent-view and wrist cameras, end-effector state, end-effector delta actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from openpi_core.robots.spec import CameraSpec, ExecutorLimits, RobotSpec


def libero_layout(images: Mapping[str, np.ndarray], state: np.ndarray, prompt: str) -> dict[str, Any]:
    """openpi's LIBERO adapter input (the `observation/...` keys of its LIBERO client)."""
    return {
        "observation/image": images["image"],
        "observation/wrist_image": images["wrist_image"],
        "observation/state": state,
        "prompt": prompt,
    }


def make_libero_example(seed: int = 0) -> dict[str, Any]:
    """A random observation in the LIBERO layout (agent-view and wrist HWC uint8 cameras, 8-D state)."""
    rng = np.random.default_rng(seed)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.uniform(-1, 1, 8).astype(np.float32),
        "prompt": "open the top drawer",
    }


ROBOT = RobotSpec(
    name="libero",
    description="LIBERO on robosuite: a Panda with agent-view and wrist cameras, acting in end-effector deltas",
    cameras=(
        CameraSpec("image", "agentview/image_raw", "base_0_rgb"),
        CameraSpec("wrist_image", "wrist/image_raw", "left_wrist_0_rgb"),
    ),
    # The state: end-effector position (3), axis-angle orientation (3), the two finger positions (the sim bridge
    # publishes them as a JointState).
    joint_names=("eef_x", "eef_y", "eef_z", "eef_ax", "eef_ay", "eef_az", "gripper_left", "gripper_right"),
    action_names=("d_x", "d_y", "d_z", "d_ax", "d_ay", "d_az", "gripper"),
    action_units="end-effector deltas in robosuite's OSC input range [-1, 1]; gripper -1 open, +1 close",
    limits=ExecutorLimits(
        lower=(-1.0,) * 7,  # robosuite's OSC controller input range
        upper=(1.0,) * 7,
        state_joint_names=("",) * 7,  # end-effector deltas: no measured joint per column
        on_stale="stop",  # deltas must not be repeated
    ),
    control_rate=20.0,
    policy_rate=10.0,
    layout=libero_layout,
    example=make_libero_example,
    gripper_columns=("gripper",),
    sim="openpi_ros.sim.libero:make_sim",
    sim_task="libero_spatial/0",
    sim_config="pi0_libero",
)
