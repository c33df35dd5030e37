"""DROID (Franka): openpi's DROID configs on a LeRobot-format DROID dataset."""

from __future__ import annotations

import dataclasses
import pathlib

from openpi_core import transforms as _transforms
from openpi_core.adapters import droid_policy
from openpi_core.models import model as _model
from openpi_core.models import pi0_config, pi0_fast
from openpi_core.training import weight_loaders
from openpi_core.training.config import AssetsConfig, DataConfig, DataConfigFactory, TrainConfig

BASE = "gs://openpi-assets/checkpoints"


# Dataset keys -> DROID adapter keys. "openpi": openpi's DROID LeRobot format (its conversion script);
# "rosbag": what `openpi-convert-rosbag` writes (cameras as observation.images.<name>, the 8-D state concatenated).
_REPACK = {
    "openpi": {
        "observation/exterior_image_1_left": "exterior_image_1_left",
        "observation/wrist_image_left": "wrist_image_left",
        "observation/joint_position": "joint_position",
        "observation/gripper_position": "gripper_position",
        "actions": "actions",
        "prompt": "prompt",
    },
    "rosbag": {
        "observation/exterior_image_1_left": "observation.images.exterior_image_1_left",
        "observation/wrist_image_left": "observation.images.wrist_image_left",
        "observation/state": "observation.state",
        "actions": "action",
        "prompt": "prompt",
    },
}


@dataclasses.dataclass(frozen=True)
class LeRobotDROIDDataConfig(DataConfigFactory):
    """DROID (7 joints + gripper, joint-velocity actions + gripper position), the task as the prompt, from a
    dataset in `layout` "openpi" (keys `exterior_image_1_left`, `wrist_image_left`, `joint_position` [7],
    `gripper_position` [1], `actions` [8]) or "rosbag" (`openpi-convert-rosbag`'s output)."""

    repo_id: str = "droid"
    assets: AssetsConfig = AssetsConfig(asset_id="droid")
    base_config: DataConfig | None = DataConfig(prompt_from_task=True)
    layout: str = "openpi"

    def robot_name(self) -> str:
        return "droid"

    def create(self, assets_dirs: pathlib.Path, model_config: _model.BaseModelConfig) -> DataConfig:
        if self.layout not in _REPACK:
            raise ValueError(f"LeRobotDROIDDataConfig.layout: {self.layout!r} is not one of {sorted(_REPACK)}")
        config = self.with_transforms(
            assets_dirs,
            model_config,
            repack=_REPACK[self.layout],
            data=_transforms.Group(
                inputs=[droid_policy.DroidInputs(model_config.model_type)], outputs=[droid_policy.DroidOutputs()]
            ),
            model_transforms=self.model_transforms,
        )
        if self.layout == "openpi":
            return config
        split = _transforms.SplitVector(
            "observation/state", {"observation/joint_position": 7, "observation/gripper_position": 1}
        )
        repack = config.repack_transforms
        return dataclasses.replace(config, repack_transforms=repack.push(inputs=[split]))


CONFIGS = [
    TrainConfig(
        name="pi0_droid",
        model=pi0_config.Pi0Config(action_horizon=10),
        data=LeRobotDROIDDataConfig(),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
    ),
    TrainConfig(
        name="pi0_fast_droid",
        model=pi0_fast.Pi0FASTConfig(action_dim=8, action_horizon=10),
        data=LeRobotDROIDDataConfig(),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_fast_base/params"),
    ),
    TrainConfig(
        name="pi05_droid",
        model=pi0_config.Pi0Config(pi05=True, action_horizon=15),
        data=LeRobotDROIDDataConfig(),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi05_base/params"),
    ),
    # Fine-tune π₀.₅-DROID on your own (small) DROID dataset in LeRobot format, reusing DROID's norm stats.
    TrainConfig(
        name="pi05_droid_finetune",
        model=pi0_config.Pi0Config(pi05=True, action_dim=32, action_horizon=16),
        data=LeRobotDROIDDataConfig(
            repo_id="your_hf_username/my_droid_dataset",
            assets=AssetsConfig(assets_dir=f"{BASE}/pi05_droid/assets", asset_id="droid"),
        ),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi05_droid/params"),
        num_train_steps=20_000,
        batch_size=32,
    ),
]
