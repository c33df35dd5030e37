"""`create_trained_policy`: a `Policy` from a training config and an openpi-layout checkpoint folder.

The folder holds `params/` (orbax, openpi's layout) and `assets/<asset_id>/norm_stats.json`, as an official
checkpoint (`gs://openpi-assets/checkpoints/pi05_droid`) or one written by `training/train.py` (`<run>/<step>`),
which also carries the tokenizers it was trained with (`assets/tokenizers/`, used unless others are given).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from openpi_core import download, normalize
from openpi_core import transforms as _transforms
from openpi_core.models import model as _model
from openpi_core.models import tokenizer_sources
from openpi_core.policies.policy import Policy
from openpi_core.training import config as _config

logger = logging.getLogger(__name__)


def create_trained_policy(
    train_config: _config.TrainConfig,
    checkpoint_dir: str | os.PathLike[str],
    *,
    repack_transforms: _transforms.Group | None = None,
    sample_kwargs: dict[str, Any] | None = None,
    default_prompt: str | None = None,
    norm_stats: Mapping[str, normalize.NormStats] | None = None,
    dtype: Any = None,
    paligemma_tokenizer: str | None = None,
    fast_tokenizer: str | None = None,
) -> Policy:
    """Load the weights and norm stats of `checkpoint_dir` (local, `file://` or `gs://`) behind the config's
    transforms. `dtype` defaults to the model config's (bf16 for full-size models). Tokenizer sources: the given
    ones, else those the checkpoint records, else the config's (openpi's downloads)."""
    folder = download.maybe_download(checkpoint_dir)
    params_dir = folder / "params"
    if not params_dir.is_dir():
        raise FileNotFoundError(f"checkpoint {folder} has no params/ folder")
    recorded = tokenizer_sources.recorded_in(folder)
    train_config = train_config.with_tokenizers(
        paligemma=paligemma_tokenizer or recorded.get("paligemma"), fast=fast_tokenizer or recorded.get("fast")
    )
    model_config = train_config.model
    params = _model.restore_params(params_dir, dtype=jnp.dtype(dtype or getattr(model_config, "dtype", "float32")))
    model = model_config.load(params)
    # The norm stats come from the checkpoint, never from the config's (possibly remote) assets folder.
    factory = train_config.data
    local_assets = dataclasses.replace(factory.assets, assets_dir=str(folder / "assets"))
    data_config = dataclasses.replace(factory, assets=local_assets).create(folder / "assets", model_config)
    if norm_stats is None:
        if data_config.asset_id is None:
            raise ValueError(f"config {train_config.name!r} names no asset_id: pass norm_stats")
        stats_dir = folder / "assets" / data_config.asset_id
        if not (stats_dir / normalize.NORM_STATS_FILE).is_file():
            raise FileNotFoundError(
                f"no norm stats at {stats_dir / normalize.NORM_STATS_FILE}: pass norm_stats= or copy them there"
            )
        norm_stats = normalize.load(stats_dir)
    repack = repack_transforms or _transforms.Group()
    use_quantiles = data_config.use_quantile_norm
    return Policy(
        model,
        transforms=[
            *repack.inputs,
            _transforms.InjectDefaultPrompt(default_prompt),
            *data_config.data_transforms.inputs,
            _transforms.Normalize(norm_stats, use_quantiles=use_quantiles),
            *data_config.model_transforms.inputs,
        ],
        output_transforms=[
            *data_config.model_transforms.outputs,
            _transforms.Unnormalize(norm_stats, use_quantiles=use_quantiles),
            *data_config.data_transforms.outputs,
            *repack.outputs,
        ],
        sample_kwargs=sample_kwargs,
        metadata={
            **(train_config.policy_metadata or {}),
            "config_name": train_config.name,
            "action_horizon": model_config.action_horizon,
            "model_type": model_config.model_type.value,
            "checkpoint": str(folder),
        },
    )
