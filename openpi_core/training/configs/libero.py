"""LIBERO (simulated Franka): openpi's LIBERO configs on the LeRobot-format dataset."""

from __future__ import annotations

import dataclasses
import pathlib

from openpi_core import transforms as _transforms
from openpi_core.adapters import libero_policy
from openpi_core.models import model as _model
from openpi_core.models import pi0_config, pi0_fast
from openpi_core.training import optimizer, weight_loaders
from openpi_core.training.config import DataConfig, DataConfigFactory, TrainConfig

BASE = "gs://openpi-assets/checkpoints"


@dataclasses.dataclass(frozen=True)
class LeRobotLiberoDataConfig(DataConfigFactory):
    """Dataset keys `image`, `wrist_image`, `state` [8], `actions` [7], with the task as the prompt."""

    repo_id: str = "physical-intelligence/libero"
    base_config: DataConfig | None = DataConfig(prompt_from_task=True)
    # LIBERO's actions are already deltas; openpi's older π₀ / π₀-FAST LIBERO checkpoints were trained with one more
    # delta transform on the 6 end-effector dims (openpi's `extra_delta_transform`), π₀.₅'s without.
    extra_delta_transform: bool = False

    def robot_name(self) -> str:
        return "libero"

    def create(self, assets_dirs: pathlib.Path, model_config: _model.BaseModelConfig) -> DataConfig:
        repack = {
            "observation/image": "image",
            "observation/wrist_image": "wrist_image",
            "observation/state": "state",
            "actions": "actions",
            "prompt": "prompt",
        }
        data = _transforms.Group(
            inputs=[libero_policy.LiberoInputs(model_config.model_type)], outputs=[libero_policy.LiberoOutputs()]
        )
        if self.extra_delta_transform:
            mask = _transforms.make_bool_mask(6, -1)
            data = data.push(inputs=[_transforms.DeltaActions(mask)], outputs=[_transforms.AbsoluteActions(mask)])
        return self.with_transforms(
            assets_dirs, model_config, repack=repack, data=data, model_transforms=self.model_transforms
        )


def _libero(*, extra_delta_transform: bool) -> LeRobotLiberoDataConfig:
    return LeRobotLiberoDataConfig(extra_delta_transform=extra_delta_transform)


_PI0_LORA = pi0_config.Pi0Config(paligemma_variant="gemma_2b_lora", action_expert_variant="gemma_300m_lora")
_FAST_LORA = pi0_fast.Pi0FASTConfig(
    action_dim=7, action_horizon=10, max_token_len=180, paligemma_variant="gemma_2b_lora"
)

CONFIGS = [
    TrainConfig(
        name="pi0_libero",
        model=pi0_config.Pi0Config(),
        data=_libero(extra_delta_transform=True),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
        num_train_steps=30_000,
    ),
    TrainConfig(
        name="pi0_libero_low_mem_finetune",
        model=_PI0_LORA,
        data=_libero(extra_delta_transform=True),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_base/params"),
        num_train_steps=30_000,
        ema_decay=None,
    ),
    TrainConfig(
        name="pi0_fast_libero",
        model=pi0_fast.Pi0FASTConfig(action_dim=7, action_horizon=10, max_token_len=180),
        data=_libero(extra_delta_transform=True),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_fast_base/params"),
        num_train_steps=30_000,
    ),
    TrainConfig(
        name="pi0_fast_libero_low_mem_finetune",
        model=_FAST_LORA,
        data=_libero(extra_delta_transform=True),
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi0_fast_base/params"),
        num_train_steps=30_000,
        ema_decay=None,
    ),
    TrainConfig(
        name="pi05_libero",
        model=pi0_config.Pi0Config(pi05=True, action_horizon=10, discrete_state_input=False),
        data=_libero(extra_delta_transform=False),
        batch_size=256,
        lr_schedule=optimizer.CosineDecaySchedule(
            warmup_steps=10_000, peak_lr=5e-5, decay_steps=1_000_000, decay_lr=5e-5
        ),
        optimizer=optimizer.AdamW(clip_gradient_norm=1.0),
        ema_decay=0.999,
        weight_loader=weight_loaders.CheckpointWeightLoader(f"{BASE}/pi05_base/params"),
        num_train_steps=30_000,
    ),
]
