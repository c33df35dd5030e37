"""The adapter of any registered robot (`openpi_core.robots`): its cameras into the model's image slots, its state.

Input (`RobotSpec.policy_input` with the default layout): ``{"images": {<camera>: image}, "state": [n],
"prompt"?, "actions"?}``. Each camera goes to the model slot its `CameraSpec.model_key` names (``base_0_rgb``,
``left_wrist_0_rgb``, ``right_wrist_0_rgb``); a slot no camera feeds, or whose camera is missing from this
observation, is a zero image with mask False (π₀-FAST: True, openpi's convention for its padding images). Output: the
first `action_dim` columns of the model's (padded) actions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from openpi_core.errors import InvalidObservationError
from openpi_core.images import parse_image
from openpi_core.models import model as _model
from openpi_core.robots.spec import IMAGE_SLOTS
from openpi_core.transforms import pad_to_input_width, prompt_text

__all__ = ["RobotInputs", "RobotOutputs"]


@dataclasses.dataclass(frozen=True)
class RobotInputs:
    cameras: tuple[tuple[str, str], ...]
    """(camera name, model image slot) per camera."""
    state_dim: int
    model_type: _model.ModelType

    def __post_init__(self) -> None:
        slots = [slot for _, slot in self.cameras]
        bad = [slot for slot in slots if slot not in IMAGE_SLOTS]
        if bad or len(set(slots)) != len(slots):
            raise ValueError(f"camera model keys must be distinct and among {IMAGE_SLOTS}, got {slots}")

    def __call__(self, data: dict) -> dict:
        given = data.get("images", {})
        state = np.asarray(data["state"], np.float32)
        if state.shape[-1:] != (self.state_dim,):
            raise InvalidObservationError("state", f"expected {self.state_dim} values, got shape {state.shape}")
        parsed = {slot: parse_image(given[cam], f"images.{cam}") for cam, slot in self.cameras if cam in given}
        if not parsed:
            raise InvalidObservationError("images", f"none of the cameras {[c for c, _ in self.cameras]} is present")
        blank = np.zeros_like(next(iter(parsed.values())))
        padding = np.bool_(self.model_type == _model.ModelType.PI0_FAST)
        inputs = {
            "state": state,
            "image": {slot: parsed.get(slot, blank) for slot in IMAGE_SLOTS},
            "image_mask": {slot: np.True_ if slot in parsed else padding for slot in IMAGE_SLOTS},
        }
        if "actions" in data:
            inputs["actions"] = np.asarray(data["actions"])
        if "prompt" in data:
            inputs["prompt"] = prompt_text(data["prompt"])
        return inputs


@dataclasses.dataclass(frozen=True)
class RobotOutputs:
    action_dim: int

    def __call__(self, data: dict) -> dict:
        return {"actions": np.asarray(data["actions"][..., : self.action_dim])}

    def invert_actions(self, actions: np.ndarray, data: dict) -> np.ndarray:
        return pad_to_input_width(actions, data)
