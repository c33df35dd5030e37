"""Compute a config's norm stats over its dataset.

`python training/compute_norm_stats.py <config> [--max-frames N] [--stats-batch-size B] [--field value ...]`:
the config overrides are train.py's (e.g. `--data.root /data/my_demos --assets-base-dir ./assets`), so the stats
land where the same train.py command reads them. Writes `<assets_base_dir>/<config>/<asset_id>/norm_stats.json`
(openpi's format), which training and `create_trained_policy` read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from openpi_core import normalize
from openpi_core import transforms as _transforms
from openpi_core.errors import OpenpiError
from openpi_core.models import tokenizer_sources
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs
from openpi_core.training import data_loader

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
    logging.getLogger(__name__).info("Wrote %s (%d frames)", path, frames)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("openpi_core").setLevel(logging.INFO)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--max-frames", type=int, help="use a random subset of this many frames")
    parser.add_argument("--stats-batch-size", type=int, default=32, help="frames per batch while reading")
    tokenizer_sources.add_arguments(parser)  # accepted as train.py does; norm stats never tokenize
    args, rest = parser.parse_known_args(argv)
    if not rest or rest[0].startswith("-"):
        parser.error("the first argument is a config name (see training/train.py --help)")
    config = _configs.cli(rest).with_tokenizers(paligemma=args.paligemma_tokenizer, fast=args.fast_tokenizer)
    try:
        compute(config, max_frames=args.max_frames, batch_size=args.stats_batch_size)
    except (FileNotFoundError, ValueError, OpenpiError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
