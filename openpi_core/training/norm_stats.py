"""Norm stats over a config's dataset: what `training/compute_norm_stats.py` runs.

`compute(config)` reads the config's LeRobot dataset through its repack and robot transforms (never the model's:
stats are taken in robot units, as openpi does), accumulates running mean/std and quantiles of ``state`` and
``actions`` and writes `<assets_dir>/<asset_id>/norm_stats.json` in openpi's format.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from openpi_core import normalize
from openpi_core import transforms as _transforms
from openpi_core.training import config as _config
from openpi_core.training import data_loader

__all__ = ["KEYS", "compute"]

logger = logging.getLogger(__name__)

KEYS = ("state", "actions")


def compute(
    config: _config.TrainConfig, *, max_frames: int | None = None, batch_size: int = 32
) -> dict[str, normalize.NormStats]:
    data_config = config.data.create(config.assets_dirs, config.model)
    if data_config.repo_id == "fake":
        raise ValueError(f"config {config.name!r} trains on fake data: there is nothing to compute norm stats over")
    dataset = data_loader.create_lerobot_dataset(data_config, config.model.action_horizon)
    transforms = [*data_config.repack_transforms.inputs, *data_config.data_transforms.inputs]
    if data_config.prompt_from_task:
        transforms.insert(0, _transforms.PromptFromLeRobotTask())
    dataset = data_loader.TransformedDataset(dataset, transforms)
    frames = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    stats = {key: normalize.RunningStats() for key in KEYS}
    order = np.random.default_rng(0).permutation(len(dataset))[:frames]
    for start in tqdm(range(0, frames, batch_size), desc=f"norm stats {config.name}", unit="batch"):
        batch = data_loader.collate([dataset[int(i)] for i in order[start : start + batch_size]])
        for key in KEYS:
            if key not in batch:
                raise ValueError(f"the transformed samples have no {key!r} (keys: {sorted(batch)})")
            stats[key].update(np.asarray(batch[key]))
    result = {key: value.get_statistics() for key, value in stats.items()}
    path = normalize.save(config.assets_dirs / data_config.asset_id, result)
    logger.info("Wrote %s (%d frames)", path, frames)
    return result
