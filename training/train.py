"""Train or fine-tune a model: `python training/train.py <config> --exp-name NAME [--resume | --overwrite] ...`.

`python training/train.py --help` lists the configs; `python training/train.py <config> --help` its fields.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from openpi_core.training import config as _config
from openpi_core.training import trainer


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("openpi_core").setLevel(logging.INFO)
    config = _config.cli(argv)
    try:
        state = trainer.train(config)
    except (FileExistsError, FileNotFoundError, ValueError) as error:  # bad configs, data or run folders
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"trained {config.name}/{config.exp_name} to step {int(state.step)}; checkpoints in {config.checkpoint_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
