"""DROID (Franka): openpi's conventions: exterior + wrist camera, state = 7 joints + gripper, 8-D actions."""

from __future__ import annotations

import dataclasses

import numpy as np

from openpi_core.images import parse_image
from openpi_core.models import model as _model
from openpi_core.transforms import pad_to_input_width, prompt_text


@dataclasses.dataclass(frozen=True)
class DroidInputs:
    """`observation/exterior_image_1_left`, `observation/wrist_image_left`, `observation/joint_position` [7],
    `observation/gripper_position` [1] (+ `actions`, `prompt`) -> model inputs."""

    model_type: _model.ModelType

    def __call__(self, data: dict) -> dict:
        gripper = np.asarray(data["observation/gripper_position"], np.float32)
        if gripper.ndim == 0:
            gripper = gripper[None]
        state = np.concatenate([np.asarray(data["observation/joint_position"], np.float32), gripper], axis=-1)
        base = parse_image(data["observation/exterior_image_1_left"], "observation/exterior_image_1_left")
        wrist = parse_image(data["observation/wrist_image_left"], "observation/wrist_image_left")
        if self.model_type == _model.ModelType.PI0_FAST:
            names = ("base_0_rgb", "base_1_rgb", "wrist_0_rgb")
            images, masks = (base, np.zeros_like(base), wrist), (np.True_, np.True_, np.True_)
        else:
            names = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
            images, masks = (base, wrist, np.zeros_like(base)), (np.True_, np.True_, np.False_)
        inputs = {
            "state": state,
            "image": dict(zip(names, images, strict=True)),
            "image_mask": dict(zip(names, masks, strict=True)),
        }
        if "actions" in data:
            inputs["actions"] = np.asarray(data["actions"])
        if "prompt" in data:  # openpi's DROID adapter decodes bytes prompts (RLDS/TF data) here
            inputs["prompt"] = prompt_text(data["prompt"])
        return inputs


@dataclasses.dataclass(frozen=True)
class DroidOutputs:
    """The first 8 action dimensions (7 joint velocities + gripper position)."""

    def __call__(self, data: dict) -> dict:
        return {"actions": np.asarray(data["actions"][..., :8])}

    def invert_actions(self, actions: np.ndarray, data: dict) -> np.ndarray:
        return pad_to_input_width(actions, data)
