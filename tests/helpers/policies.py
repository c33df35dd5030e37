"""A tiny LIBERO-layout π₀ checkpoint folder (params + norm stats), as `create_trained_policy` reads it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from helpers.tokenizers import make_paligemma_like_model
from openpi_core import normalize
from openpi_core.models import model as _model
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs
from openpi_core.training.configs import libero

__all__ = ["HORIZON", "libero_observation", "make_tiny_libero_checkpoint", "write_random_checkpoint"]

HORIZON = 5


def make_tiny_libero_checkpoint(tmp: Path, *, horizon: int = HORIZON) -> tuple[_config.TrainConfig, Path]:
    """The debug model behind the LIBERO data config. Near-zero action std: whatever the random model predicts,
    unnormalised actions are the mean 2.0 (plus the state on the six joint dims, by AbsoluteActions)."""
    sp = make_paligemma_like_model(tmp / "sp.model", num_loc=0, num_seg=0)
    debug = _configs.get_config("debug")
    config = dataclasses.replace(
        debug,
        name="libero_tiny",
        model=dataclasses.replace(debug.model, action_horizon=horizon),
        data=libero.LeRobotLiberoDataConfig(
            extra_delta_transform=True,  # as pi0_libero
            model_transforms=_config.ModelTransformFactory(paligemma_tokenizer=str(sp)),
        ),
        assets_base_dir=str(tmp / "assets"),
    )
    stats = {
        "state": normalize.NormStats(mean=np.zeros(8), std=np.ones(8)),
        "actions": normalize.NormStats(mean=np.full(7, 2.0), std=np.full(7, 1e-6)),
    }
    checkpoint = write_random_checkpoint(config, tmp / "checkpoint", "physical-intelligence/libero", stats)
    return config, checkpoint


def write_random_checkpoint(
    config: _config.TrainConfig, checkpoint: Path, asset_id: str, stats: dict[str, normalize.NormStats]
) -> Path:
    """An openpi-layout checkpoint folder: `config.model`'s random initial weights in `params/` and `stats` as
    `assets/<asset_id>/norm_stats.json`."""
    params = nnx.to_pure_dict(nnx.state(config.model.create(jax.random.key(0)), nnx.Param))
    _model.save_params(checkpoint / "params", params)
    normalize.save(checkpoint / "assets" / asset_id, stats)
    return checkpoint


def libero_observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation/image": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),
        "observation/state": rng.uniform(-1, 1, 8).astype(np.float32),
        "prompt": "open the drawer",
    }
