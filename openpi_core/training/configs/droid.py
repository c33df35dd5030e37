"""DROID (Franka): openpi's DROID configs on a LeRobot-format DROID dataset."""

from __future__ import annotations

import dataclasses
import pathlib

from openpi_core import transforms as _transforms
from openpi_core.models import model as _model
from openpi_core.models import pi0_config, pi0_fast
from openpi_core.policies import droid_policy
from openpi_core.training import weight_loaders
from openpi_core.training.config import AssetsConfig, DataConfig, DataConfigFactory, TrainConfig

BASE = "gs://openpi-assets/checkpoints"


@dataclasses.dataclass(frozen=True)
class LeRobotDROIDDataConfig(DataConfigFactory):
    """Dataset keys `exterior_image_1_left`, `wrist_image_left`, `joint_position` [7], `gripper_position` [1],
    `actions` [8] (joint velocities + gripper position), the task as the prompt."""

    repo_id: str = "droid"
    assets: AssetsConfig = AssetsConfig(asset_id="droid")
    base_config: DataConfig | None = DataConfig(prompt_from_task=True)

    def create(self, assets_dirs: pathlib.Path, model_config: _model.BaseModelConfig) -> DataConfig:
        repack = {
            "observation/exterior_image_1_left": "exterior_image_1_left",
            "observation/wrist_image_left": "wrist_image_left",
            "observation/joint_position": "joint_position",
            "observation/gripper_position": "gripper_position",
            "actions": "actions",
            "prompt": "prompt",
        }
        data = _transforms.Group(
            inputs=[droid_policy.DroidInputs(model_config.model_type)], outputs=[droid_policy.DroidOutputs()]
        )
        return self.with_transforms(
            assets_dirs, model_config, repack=repack, data=data, model_transforms=self.model_transforms
        )


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
