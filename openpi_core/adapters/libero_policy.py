"""LIBERO: openpi's input/output conventions (one agent-view and one wrist camera, 8-D state, 7-D actions)."""

from __future__ import annotations

import dataclasses

import numpy as np

from openpi_core.images import parse_image
from openpi_core.models import model as _model
from openpi_core.transforms import pad_to_input_width


@dataclasses.dataclass(frozen=True)
class LiberoInputs:
    """`observation/image`, `observation/wrist_image`, `observation/state` (+ `actions`, `prompt`) -> model inputs."""

    model_type: _model.ModelType

    def __call__(self, data: dict) -> dict:
        base = parse_image(data["observation/image"], "observation/image")
        wrist = parse_image(data["observation/wrist_image"], "observation/wrist_image")
        fast = self.model_type == _model.ModelType.PI0_FAST
        inputs = {
            "state": np.asarray(data["observation/state"], np.float32),
            "image": {"base_0_rgb": base, "left_wrist_0_rgb": wrist, "right_wrist_0_rgb": np.zeros_like(base)},
            # π₀-FAST sees every image slot as valid (openpi's convention; the zero image is then just black).
            "image_mask": {"base_0_rgb": np.True_, "left_wrist_0_rgb": np.True_, "right_wrist_0_rgb": np.bool_(fast)},
        }
        for key in ("actions", "prompt"):
            if key in data:
                inputs[key] = data[key]
        return inputs


@dataclasses.dataclass(frozen=True)
class LiberoOutputs:
    """The first 7 action dimensions (6 end-effector deltas + gripper)."""

    def __call__(self, data: dict) -> dict:
        return {"actions": np.asarray(data["actions"][..., :7])}

    def invert_actions(self, actions: np.ndarray, data: dict) -> np.ndarray:
        return pad_to_input_width(actions, data)
