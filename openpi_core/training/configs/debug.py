"""Tiny configs that train on CPU in seconds (smoke runs, tests, benchmarks)."""

from __future__ import annotations

from openpi_core.models import pi0_config, pi0_fast
from openpi_core.training import optimizer
from openpi_core.training.config import FakeDataConfig, TrainConfig
from openpi_core.training.configs.aloha import LeRobotAlohaDataConfig

TINY = {"paligemma_variant": "dummy", "vision_variant": "mu/14", "vocab_size": 1024, "dtype": "float32"}


def _debug(name: str, model: object, **overrides: object) -> TrainConfig:
    defaults = {"batch_size": 2, "num_workers": 0, "num_train_steps": 10, "log_interval": 1, "save_interval": 5}
    return TrainConfig(name=name, exp_name="debug", model=model, **({"data": FakeDataConfig()} | defaults | overrides))


CONFIGS = [
    _debug(
        "debug",
        pi0_config.Pi0Config(action_expert_variant="dummy", **TINY),
        lr_schedule=optimizer.CosineDecaySchedule(warmup_steps=2, peak_lr=1e-3, decay_steps=100, decay_lr=1e-4),
        keep_period=None,
    ),
    _debug("debug_pi05", pi0_config.Pi0Config(action_expert_variant="dummy", pi05=True, **TINY)),
    _debug("debug_pi0_fast", pi0_fast.Pi0FASTConfig(**TINY)),
    # A tiny π₀ on your own ALOHA-layout LeRobot dataset (e.g. fresh from openpi-convert-rosbag): checks the data
    # and the whole pipeline in a minute on a CPU before a real fine-tune. Point it at the dataset with
    # `--data.repo-id local/<name> --data.root <folder>`.
    _debug(
        "debug_aloha",
        pi0_config.Pi0Config(action_expert_variant="dummy", action_horizon=10, **TINY),
        data=LeRobotAlohaDataConfig(repo_id="local/aloha_demos", cameras=("top", "left_wrist", "right_wrist")),
        num_train_steps=20,
    ),
]
