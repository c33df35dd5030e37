"""Training configs for the UR5e (the robot spec's `train_configs`): they appear among openpi-ros's named configs.

- ``debug_ur5e_lift``: a tiny π₀ that trains on a CPU in seconds, on demonstrations converted with ``mapping.yaml``
  (checks the data and the whole loop before a real fine-tune);
- ``pi05_ur5e_lift``: a π₀.₅ LoRA fine-tune from openpi's base weights (a GPU with 24 GB or more).
"""

from __future__ import annotations

from openpi_core.models import pi0_config
from openpi_core.training import weight_loaders
from openpi_core.training.config import TrainConfig
from openpi_core.training.configs.debug import SMALL_TOKENIZERS, TINY
from openpi_core.training.configs.robot import RobotDataConfig

CONFIGS = [
    TrainConfig(
        name="debug_ur5e_lift",
        exp_name="debug",
        model=pi0_config.Pi0Config(action_expert_variant="dummy", action_horizon=10, **TINY),
        data=RobotDataConfig(robot="ur5e_lift", repo_id="local/ur5e_lift_demos", model_transforms=SMALL_TOKENIZERS),
        batch_size=2,
        num_workers=0,
        num_train_steps=20,
        log_interval=1,
        save_interval=10,
    ),
    TrainConfig(
        name="pi05_ur5e_lift",
        model=pi0_config.Pi0Config(
            pi05=True, action_horizon=10, paligemma_variant="gemma_2b_lora", action_expert_variant="gemma_300m_lora"
        ),
        data=RobotDataConfig(robot="ur5e_lift", repo_id="local/ur5e_lift_demos"),
        weight_loader=weight_loaders.CheckpointWeightLoader("gs://openpi-assets/checkpoints/pi05_base/params"),
        ema_decay=None,  # LoRA: the model config's freeze filter keeps the base weights frozen
        num_train_steps=20_000,
    ),
]
