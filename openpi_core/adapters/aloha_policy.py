"""ALOHA (bimanual): openpi's conventions, including the `adapt_to_pi` joint flips and gripper conversions.

State and actions are 14-D: per arm 6 joints + gripper (left arm first). With `adapt_to_pi`, the data is mapped into
the space the π₀ base model was trained in (some joints flipped, grippers converted from ALOHA's linear positions
to normalised angles) and back on the way out.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from openpi_core.images import parse_image
from openpi_core.robots.aloha import CAMERAS  # re-exported: the example lives with the robot
from openpi_core.transforms import pad_to_input_width

# Model image slot <- ALOHA camera.
_IMAGE_SLOTS = {"base_0_rgb": "cam_high", "left_wrist_0_rgb": "cam_left_wrist", "right_wrist_0_rgb": "cam_right_wrist"}
_JOINT_FLIP = np.array([1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1], dtype=np.float32)
_GRIPPERS = (6, 13)


def _normalize(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (x - lo) / (hi - lo)


def _unnormalize(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return x * (hi - lo) + lo


def gripper_to_angular(value: np.ndarray) -> np.ndarray:
    """ALOHA's normalised linear gripper position -> π₀'s normalised gripper angle."""
    # Puppet gripper open/closed positions (m), then the inverse of Interbotix's angle->linear mapping.
    linear = _unnormalize(value, 0.01844, 0.05800)
    arm_length, horn_radius = 0.036, 0.022
    ratio = (horn_radius**2 + linear**2 - arm_length**2) / (2 * horn_radius * linear)
    radians = np.arcsin(np.clip(ratio, -1.0, 1.0))
    # π₀'s gripper data is normalised between encoder counts 2405 and 3110 of 4096 (zero at 2048).
    return _normalize(radians, 0.5476, 1.6296)


def gripper_from_angular(value: np.ndarray) -> np.ndarray:
    """π₀'s gripper output -> ALOHA's normalised gripper joint command."""
    return _normalize(value + 0.5476, -0.6213, 1.4910)


def gripper_from_angular_inv(value: np.ndarray) -> np.ndarray:
    """Inverse of `gripper_from_angular` (for training targets)."""
    return _unnormalize(value, -0.6213, 1.4910) - 0.5476


def _map_grippers(x: np.ndarray, fn: object) -> np.ndarray:
    x = np.asarray(x, np.float32).copy()
    for index in _GRIPPERS:
        x[..., index] = fn(x[..., index])
    return x


@dataclasses.dataclass(frozen=True)
class AlohaInputs:
    """`state` [14], `images` {cam_high, cam_left_wrist, cam_right_wrist, (cam_low)} (+ `actions`, `prompt`)."""

    adapt_to_pi: bool = True

    def __call__(self, data: dict) -> dict:
        state = np.asarray(data["state"], np.float32)
        if state.shape[-1] != 14:
            raise ValueError(f"ALOHA state must have 14 values (2 x (6 joints + gripper)), got {state.shape}")
        images = data["images"]
        unknown = set(images) - set(CAMERAS)
        if unknown:
            raise ValueError(f"unknown ALOHA cameras {sorted(unknown)}; expected a subset of {CAMERAS}")
        if "cam_high" not in images:
            raise ValueError('ALOHA input needs the "cam_high" camera')
        parsed = {name: parse_image(image, f"images/{name}") for name, image in images.items()}
        base = parsed["cam_high"]
        inputs = {
            "state": self._decode_state(state),
            "image": {slot: parsed.get(cam, np.zeros_like(base)) for slot, cam in _IMAGE_SLOTS.items()},
            "image_mask": {slot: np.bool_(cam in parsed) for slot, cam in _IMAGE_SLOTS.items()},
        }
        if "actions" in data:
            inputs["actions"] = encode_actions(np.asarray(data["actions"], np.float32), adapt_to_pi=self.adapt_to_pi)
        if "prompt" in data:
            inputs["prompt"] = data["prompt"]
        return inputs

    def _decode_state(self, state: np.ndarray) -> np.ndarray:
        if not self.adapt_to_pi:
            return state
        return _map_grippers(_JOINT_FLIP * state, gripper_to_angular)


def encode_actions(actions: np.ndarray, *, adapt_to_pi: bool) -> np.ndarray:
    """ALOHA joint-space actions in the model's convention (the inverse of `AlohaOutputs`' mapping): the joint flips
    are their own inverse and the gripper map has an exact inverse."""
    if not adapt_to_pi:
        return actions
    return _map_grippers(_JOINT_FLIP * actions, gripper_from_angular_inv)


@dataclasses.dataclass(frozen=True)
class AlohaOutputs:
    """The first 14 action dimensions, mapped back to ALOHA's joint space with `adapt_to_pi`."""

    adapt_to_pi: bool = True

    def __call__(self, data: dict) -> dict:
        actions = np.asarray(data["actions"][..., :14], np.float32)
        if self.adapt_to_pi:
            actions = _map_grippers(_JOINT_FLIP * actions, gripper_from_angular)
        return {"actions": actions}

    def invert_actions(self, actions: np.ndarray, data: dict) -> np.ndarray:
        return pad_to_input_width(encode_actions(actions, adapt_to_pi=self.adapt_to_pi), data)
