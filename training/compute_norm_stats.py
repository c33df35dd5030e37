"""Compute a config's norm stats over its dataset.

`python training/compute_norm_stats.py <config> [--max-frames N] [--stats-batch-size B] [--field value ...]`:
the config overrides are train.py's (e.g. `--data.root /data/my_demos --assets-base-dir ./assets`), so the stats
land where the same train.py command reads them. Writes `<assets_base_dir>/<config>/<asset_id>/norm_stats.json`
(openpi's format), which training and `create_trained_policy` read. The work is
`openpi_core.training.norm_stats.compute`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from openpi_core.errors import OpenpiError
from openpi_core.models import tokenizer_sources
from openpi_core.training import configs as _configs
from openpi_core.training.norm_stats import compute


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
