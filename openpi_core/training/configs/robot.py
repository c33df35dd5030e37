"""`RobotDataConfig`: any registered robot's LeRobot dataset (e.g. from `openpi-convert-rosbag`), no code per robot.

The dataset layout is the converter's: ``observation.images.<camera feature>``, ``observation.state`` (the spec's
joints in order), ``action`` (its action columns), the task as the prompt. The robot adapter is
`openpi_core.adapters.robot_policy`; position columns that are not grippers train as deltas from the state
(openpi's convention for joint-position arms), velocity and gripper columns stay absolute.
"""

from __future__ import annotations

import dataclasses
import pathlib

from openpi_core import transforms as _transforms
from openpi_core.adapters import robot_policy
from openpi_core.models import model as _model
from openpi_core.robots import registry
from openpi_core.robots.spec import RobotSpec
from openpi_core.training.config import DataConfig, DataConfigFactory

__all__ = ["RobotDataConfig", "delta_mask"]


def delta_mask(spec: RobotSpec) -> tuple[bool, ...]:
    """True for the action columns that train relative to the state: positions that are not grippers."""
    if spec.action_dim > spec.state_dim:
        return (False,) * spec.action_dim
    return tuple(a not in spec.gripper_columns and a not in spec.velocity_columns for a in spec.actions)


@dataclasses.dataclass(frozen=True)
class RobotDataConfig(DataConfigFactory):
    robot: str = ""
    """A registered robot's name (`openpi_core.robots.registry`)."""
    repo_id: str = "local/robot_demos"
    base_config: DataConfig | None = DataConfig(prompt_from_task=True)
    use_delta_actions: bool = True
    default_prompt: str | None = None

    def robot_name(self) -> str:
        return self.robot

    def create(self, assets_dirs: pathlib.Path, model_config: _model.BaseModelConfig) -> DataConfig:
        spec = registry.get(self.robot)
        repack = {
            "images": {c.name: f"observation.images.{c.feature}" for c in spec.cameras},
            "state": "observation.state",
            "actions": "action",
            "prompt": "prompt",
        }
        cameras = tuple((c.name, c.model_key) for c in spec.cameras)
        data = _transforms.Group(
            inputs=[robot_policy.RobotInputs(cameras, spec.state_dim, model_config.model_type)],
            outputs=[robot_policy.RobotOutputs(spec.action_dim)],
        )
        mask = delta_mask(spec)
        if self.use_delta_actions and any(mask):
            data = data.push(inputs=[_transforms.DeltaActions(mask)], outputs=[_transforms.AbsoluteActions(mask)])
        model_transforms = dataclasses.replace(self.model_transforms, default_prompt=self.default_prompt)
        config = self.with_transforms(
            assets_dirs, model_config, repack=repack, data=data, model_transforms=model_transforms
        )
        return dataclasses.replace(config, action_sequence_keys=("action",))
