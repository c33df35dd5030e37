"""Train or fine-tune a model: `python training/train.py <config> --exp-name NAME [--resume | --overwrite] ...`.

`--paligemma-tokenizer PATH` / `--fast-tokenizer PATH` use local tokenizer copies (offline); the checkpoints
carry copies of the tokenizers they were trained with.

`python training/train.py --help` lists the configs; `python training/train.py <config> --help` its fields.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from openpi_core.errors import OpenpiError
from openpi_core.models import tokenizer_sources
from openpi_core.training import configs as _configs
from openpi_core.training import trainer


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("openpi_core").setLevel(logging.INFO)
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    tokenizer_sources.add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    config = _configs.cli(rest).with_tokenizers(paligemma=args.paligemma_tokenizer, fast=args.fast_tokenizer)
    try:
        state = trainer.train(config)
    except (FileExistsError, FileNotFoundError, ValueError, OpenpiError) as error:  # configs, data, run folders
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"trained {config.name}/{config.exp_name} to step {int(state.step)}; checkpoints in {config.checkpoint_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
