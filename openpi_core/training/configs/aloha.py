"""ALOHA (bimanual, Trossen): openpi's ALOHA configs on LeRobot-format ALOHA datasets."""

from __future__ import annotations

import dataclasses
import pathlib

from openpi_core import transforms as _transforms
from openpi_core.adapters import aloha_policy
from openpi_core.models import model as _model
from openpi_core.models import pi0_config
from openpi_core.training import weight_loaders
from openpi_core.training.config import AssetsConfig, DataConfig, DataConfigFactory, TrainConfig

BASE = "gs://openpi-assets/checkpoints"


@dataclasses.dataclass(frozen=True)
class LeRobotAlohaDataConfig(DataConfigFactory):
    """LeRobot ALOHA layout: `observation.images.<cam>`, `observation.state` [14], `action` [14]."""

    repo_id: str = "lerobot/aloha_sim_transfer_cube_human"
    # openpi's ALOHA configs do not take the prompt from the dataset's task (`default_prompt` is the prompt); set
    # base_config=DataConfig(prompt_from_task=True) for datasets whose task is the instruction (converted bags).
    base_config: DataConfig | None = None
    use_delta_joint_actions: bool = True
    default_prompt: str | None = None
    adapt_to_pi: bool = True
    cameras: tuple[str, ...] = ("top",)

    def robot_name(self) -> str:
        return "aloha"

    def create(self, assets_dirs: pathlib.Path, model_config: _model.BaseModelConfig) -> DataConfig:
        camera_names = {
            "top": "cam_high",
            "low": "cam_low",
            "left_wrist": "cam_left_wrist",
            "right_wrist": "cam_right_wrist",
        }
        images = {camera_names.get(cam, cam): f"observation.images.{cam}" for cam in self.cameras}
        repack = {"images": images, "state": "observation.state", "actions": "action"}
        if self.base_config is not None and self.base_config.prompt_from_task:
            repack["prompt"] = "prompt"
        data = _transforms.Group(
            inputs=[aloha_policy.AlohaInputs(adapt_to_pi=self.adapt_to_pi)],
            outputs=[aloha_policy.AlohaOutputs(adapt_to_pi=self.adapt_to_pi)],
        )
        if self.use_delta_joint_actions:
            mask = _transforms.make_bool_mask(6, -1, 6, -1)
            data = data.push(inputs=[_transforms.DeltaActions(mask)], outputs=[_transforms.AbsoluteActions(mask)])
        model_transforms = dataclasses.replace(self.model_transforms, default_prompt=self.default_prompt)
        config = self.with_transforms(
            assets_dirs, model_config, repack=repack, data=data, model_transforms=model_transforms
        )
        return dataclasses.replace(config, action_sequence_keys=("action",))


# openpi's inference ALOHA configs tell the client where to park the arms (served with the policy's metadata).
_RESET_POSE = {"reset_pose": [0, -1.5, 1.5, 0, 0, 0]}
_THREE_CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
_TROSSEN = AssetsConfig(asset_id="trossen")

CONFIGS = [
    TrainConfig(
        name="pi0_aloha",
        model=pi0_config.Pi0Config(),
        data=LeRobotAlohaDataConfig(repo_id="aloha", assets=_TROSSEN),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
        policy_metadata=_RESET_POSE,
    ),
    TrainConfig(
        name="pi05_aloha",
        model=pi0_config.Pi0Config(pi05=True),
        data=LeRobotAlohaDataConfig(repo_id="aloha", assets=_TROSSEN),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi05_base/params"),
        policy_metadata=_RESET_POSE,
    ),
    TrainConfig(
        name="pi0_aloha_towel",
        model=pi0_config.Pi0Config(),
        data=LeRobotAlohaDataConfig(repo_id="aloha", assets=_TROSSEN, default_prompt="fold the towel"),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
        policy_metadata=_RESET_POSE,
    ),
    TrainConfig(
        name="pi0_aloha_tupperware",
        model=pi0_config.Pi0Config(),
        data=LeRobotAlohaDataConfig(
            repo_id="aloha",
            assets=_TROSSEN,
            default_prompt="open the tupperware and put the food on the plate",
        ),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
        policy_metadata=_RESET_POSE,
    ),
    TrainConfig(
        name="pi0_aloha_pen_uncap",
        model=pi0_config.Pi0Config(),
        data=LeRobotAlohaDataConfig(
            repo_id="physical-intelligence/aloha_pen_uncap_diverse",
            assets=AssetsConfig(assets_dir=f"{BASE}/pi0_base/assets", asset_id="trossen"),
            default_prompt="uncap the pen",
            cameras=_THREE_CAMERAS,
        ),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
        num_train_steps=20_000,
    ),
    TrainConfig(
        name="pi05_aloha_pen_uncap",
        model=pi0_config.Pi0Config(pi05=True),
        data=LeRobotAlohaDataConfig(
            repo_id="physical-intelligence/aloha_pen_uncap_diverse",
            assets=AssetsConfig(assets_dir=f"{BASE}/pi05_base/assets", asset_id="trossen"),
            default_prompt="uncap the pen",
            cameras=_THREE_CAMERAS,
        ),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi05_base/params"),
        num_train_steps=20_000,
        batch_size=64,
    ),
    TrainConfig(
        name="pi0_aloha_sim",
        model=pi0_config.Pi0Config(),
        data=LeRobotAlohaDataConfig(
            repo_id="lerobot/aloha_sim_transfer_cube_human",
            default_prompt="Transfer cube",
            use_delta_joint_actions=False,
        ),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
        num_train_steps=20_000,
    ),
]
