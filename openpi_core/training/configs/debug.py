"""Tiny configs that train on CPU in seconds (smoke runs, tests, benchmarks)."""

from __future__ import annotations

from openpi_core.models import pi0_config, pi0_fast
from openpi_core.training import optimizer
from openpi_core.training.config import FakeDataConfig, TrainConfig

TINY = {"paligemma_variant": "dummy", "vision_variant": "mu/14", "vocab_size": 1024, "dtype": "float32"}

CONFIGS = [
    TrainConfig(
        name="debug",
        exp_name="debug",
        model=pi0_config.Pi0Config(action_expert_variant="dummy", **TINY),
        data=FakeDataConfig(),
        lr_schedule=optimizer.CosineDecaySchedule(warmup_steps=2, peak_lr=1e-3, decay_steps=100, decay_lr=1e-4),
        batch_size=2,
        num_workers=0,
        num_train_steps=10,
        log_interval=1,
        save_interval=5,
        keep_period=None,
    ),
    TrainConfig(
        name="debug_pi05",
        exp_name="debug",
        model=pi0_config.Pi0Config(action_expert_variant="dummy", pi05=True, **TINY),
        data=FakeDataConfig(),
        batch_size=2,
        num_workers=0,
        num_train_steps=10,
        log_interval=1,
        save_interval=5,
    ),
    TrainConfig(
        name="debug_pi0_fast",
        exp_name="debug",
        model=pi0_fast.Pi0FASTConfig(**TINY),
        data=FakeDataConfig(),
        batch_size=2,
        num_workers=0,
        num_train_steps=10,
        log_interval=1,
        save_interval=5,
    ),
]
