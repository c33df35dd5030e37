"""Robot profiles: which cameras and joints a robot has on ROS, and how they become a policy observation.

The policy input follows openpi's robot adapters exactly (`openpi_core.policies.*_policy`), so the same dict goes to
an in-process `Policy` or over the wire to a policy server:

- ``aloha``: ``{"state": [14], "images": {"cam_high": CHW uint8, ...}}`` (cam_low and the wrists optional);
- ``droid``: ``{"observation/exterior_image_1_left": HWC, "observation/wrist_image_left": HWC,
  "observation/joint_position": [7], "observation/gripper_position": [1]}``;
- ``libero``: ``{"observation/image": HWC, "observation/wrist_image": HWC, "observation/state": [8]}``;
- ``custom``: ``{"images": {<camera>: HWC}, "state": [n]}`` with cameras and joints from the node parameters.

No ROS types here; the policy node uses these with the parameters it was given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

__all__ = ["ROBOTS", "RobotProfile", "get_robot"]

_ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")


@dataclasses.dataclass(frozen=True)
class RobotProfile:
    name: str
    cameras: tuple[str, ...]
    """Policy camera names, in the order the node lists them."""
    joint_names: tuple[str, ...]
    """JointState names assembled, in this order, into the state vector."""
    camera_topics: tuple[str, ...]
    """Default topic per camera (relative: the node's namespace applies)."""
    joint_state_topics: tuple[str, ...] = ("joint_states",)
    action_names: tuple[str, ...] = ()
    """Names of the chunk's columns (defaults to `joint_names`)."""
    control_rate: float = 50.0
    """Hz: the rate the actions are meant to be executed at."""
    layout: str = "custom"

    def __post_init__(self) -> None:
        if len(self.camera_topics) != len(self.cameras):
            raise ValueError(
                f"robot {self.name!r}: {len(self.camera_topics)} camera_topics for {len(self.cameras)} cameras"
            )

    @property
    def actions(self) -> tuple[str, ...]:
        return self.action_names or self.joint_names

    def policy_input(self, images: Mapping[str, np.ndarray], state: np.ndarray, prompt: str) -> dict:
        """Images are HWC uint8 RGB by camera name; `state` is in `joint_names` order."""
        if self.layout == "aloha":
            chw = {cam: np.ascontiguousarray(np.transpose(img, (2, 0, 1))) for cam, img in images.items()}
            return {"state": state, "images": chw, "prompt": prompt}
        if self.layout == "droid":
            return {
                "observation/exterior_image_1_left": images["exterior_image_1_left"],
                "observation/wrist_image_left": images["wrist_image_left"],
                "observation/joint_position": state[:7],
                "observation/gripper_position": state[7:8],
                "prompt": prompt,
            }
        if self.layout == "libero":
            return {
                "observation/image": images["image"],
                "observation/wrist_image": images["wrist_image"],
                "observation/state": state,
                "prompt": prompt,
            }
        return {"state": state, "images": dict(images), "prompt": prompt}


ROBOTS: dict[str, RobotProfile] = {
    # Trossen ALOHA: four cameras (cam_low optional for the policy), both puppet arms, grippers normalised to [0, 1].
    "aloha": RobotProfile(
        name="aloha",
        cameras=("cam_high", "cam_left_wrist", "cam_right_wrist"),
        camera_topics=("cam_high/image_raw", "cam_left_wrist/image_raw", "cam_right_wrist/image_raw"),
        joint_names=tuple(f"{side}_{j}" for side in ("left", "right") for j in _ARM),
        control_rate=50.0,
        layout="aloha",
    ),
    # DROID (Franka Panda + Robotiq): an exterior ZED's left image and the wrist camera; 7 joints and the gripper.
    # openpi's DROID policies output joint *velocities* (7) and a gripper position.
    "droid": RobotProfile(
        name="droid",
        cameras=("exterior_image_1_left", "wrist_image_left"),
        camera_topics=("exterior_1/left/image_raw", "wrist/left/image_raw"),
        joint_names=(*(f"panda_joint{i}" for i in range(1, 8)), "gripper"),
        action_names=(*(f"panda_joint{i}/velocity" for i in range(1, 8)), "gripper"),
        control_rate=15.0,
        layout="droid",
    ),
    # LIBERO (robosuite Panda): agent-view and wrist cameras; the state is the end-effector position (3),
    # axis-angle orientation (3) and the two gripper finger positions, published as a JointState by the sim bridge.
    # Actions are end-effector deltas (6) and the gripper command.
    "libero": RobotProfile(
        name="libero",
        cameras=("image", "wrist_image"),
        camera_topics=("agentview/image_raw", "wrist/image_raw"),
        joint_names=("eef_x", "eef_y", "eef_z", "eef_ax", "eef_ay", "eef_az", "gripper_left", "gripper_right"),
        action_names=("d_x", "d_y", "d_z", "d_ax", "d_ay", "d_az", "gripper"),
        control_rate=20.0,
        layout="libero",
    ),
}


def get_robot(name: str, *, cameras: tuple[str, ...] = (), joint_names: tuple[str, ...] = ()) -> RobotProfile:
    """A named profile, or ``custom`` built from the given cameras and joints (topics ``<camera>/image_raw``)."""
    if name == "custom":
        if not joint_names:
            raise ValueError("robot 'custom' needs the 'joint_names' parameter")
        return RobotProfile(
            name="custom",
            cameras=tuple(cameras),
            camera_topics=tuple(f"{cam}/image_raw" for cam in cameras),
            joint_names=tuple(joint_names),
        )
    if name not in ROBOTS:
        raise ValueError(f"parameter 'robot': unknown robot {name!r}; expected one of {[*ROBOTS, 'custom']}")
    return ROBOTS[name]
