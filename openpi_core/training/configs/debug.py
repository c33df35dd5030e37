"""Tiny configs that train on CPU in seconds (smoke runs, tests, benchmarks)."""

from __future__ import annotations

from openpi_core.models import pi0_config, pi0_fast, tokenizer_sources
from openpi_core.training import optimizer
from openpi_core.training.config import DataConfig, FakeDataConfig, ModelTransformFactory, TrainConfig
from openpi_core.training.configs.aloha import LeRobotAlohaDataConfig
from openpi_core.training.configs.droid import LeRobotDROIDDataConfig

TINY = {"paligemma_variant": "dummy", "vision_variant": "mu/14", "vocab_size": 1024, "dtype": "float32"}
# Offline by default: small tokenizers made in-process (1024 prompt ids, as TINY's vocabulary).
SMALL_TOKENIZERS = ModelTransformFactory(
    paligemma_tokenizer=tokenizer_sources.SMALL_PALIGEMMA, fast_tokenizer=tokenizer_sources.SMALL_FAST
)


def _debug(name: str, model: object, **overrides: object) -> TrainConfig:
    defaults = {"batch_size": 2, "num_workers": 0, "num_train_steps": 10, "log_interval": 1, "save_interval": 5}
    data = FakeDataConfig(model_transforms=SMALL_TOKENIZERS)
    return TrainConfig(name=name, exp_name="debug", model=model, **({"data": data} | defaults | overrides))


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
        data=LeRobotAlohaDataConfig(
            repo_id="local/aloha_demos",
            cameras=("top", "left_wrist", "right_wrist"),
            base_config=DataConfig(prompt_from_task=True),  # converted bags carry the instruction as the task
            model_transforms=SMALL_TOKENIZERS,
        ),
        num_train_steps=20,
    ),
    # A tiny π₀.₅ on a DROID-layout LeRobot dataset (joint velocities + gripper), as debug_aloha for ALOHA.
    _debug(
        "debug_droid",
        pi0_config.Pi0Config(action_expert_variant="dummy", pi05=True, action_horizon=10, **TINY),
        data=LeRobotDROIDDataConfig(repo_id="local/droid_demos", layout="rosbag", model_transforms=SMALL_TOKENIZERS),
        num_train_steps=20,
    ),
]
