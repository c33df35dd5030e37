"""Training checkpoints in openpi's layout: `<dir>/<step>/{params, train_state, assets/<asset_id>/norm_stats.json}`.

Each step is written by orbax into a temporary folder and renamed when complete, so a run killed mid-save leaves the
previous checkpoint intact. `params/` is what `restore_params` and `create_trained_policy` read.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import orbax.checkpoint as ocp
from etils import epath

from openpi_core import normalize
from openpi_core.models import tokenizer_sources

logger = logging.getLogger(__name__)


class _CallbackHandler(ocp.CheckpointHandler):
    """Runs a callback that writes files into the item folder (the norm-stats assets)."""

    def save(self, directory: epath.Path, args: CallbackSave) -> None:
        args.callback(pathlib.Path(directory))

    def restore(self, directory: epath.Path, args: Any = None) -> None:
        raise NotImplementedError("assets are read directly from the checkpoint folder")

    def metadata(self, directory: epath.Path) -> None:
        return None


@ocp.args.register_with_handler(_CallbackHandler, for_save=True)
@dataclasses.dataclass
class CallbackSave(ocp.args.CheckpointArgs):
    callback: Callable[[pathlib.Path], None]


@ocp.args.register_with_handler(_CallbackHandler, for_restore=True)
@dataclasses.dataclass
class CallbackRestore(ocp.args.CheckpointArgs):
    """Unused (assets are plain files); orbax requires a restore type per handler."""


def make_manager(checkpoint_dir: pathlib.Path, *, keep_period: int | None) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        checkpoint_dir,
        item_names=("assets", "train_state", "params"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, keep_period=keep_period, create=True, enable_async_checkpointing=False
        ),
    )


def prepare_dir(checkpoint_dir: pathlib.Path, *, resume: bool, overwrite: bool) -> bool:
    """Create or clear the run folder; returns whether there is a checkpoint to resume from."""
    has_steps = checkpoint_dir.is_dir() and any(p.name.isdigit() for p in checkpoint_dir.iterdir())
    if resume:
        if not has_steps:
            raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir}")
        return True
    if has_steps:
        if not overwrite:
            raise FileExistsError(f"{checkpoint_dir} already has checkpoints: pass --resume or --overwrite")
        logger.info("Overwriting %s", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return False


def save(
    manager: ocp.CheckpointManager,
    step: int,
    *,
    params: Any,
    train_state: Any,
    norm_stats: Mapping[str, normalize.NormStats] | None,
    asset_id: str | None,
    tokenizers: Mapping[str, str] | None = None,
) -> None:
    """`tokenizers`: the sources the run tokenized with (`{"paligemma": ..., "fast": ...}`); copies go into the
    assets, so serving the checkpoint needs no download (`tokenizer_sources.recorded_in`)."""

    def write_assets(directory: pathlib.Path) -> None:
        if norm_stats is not None and asset_id is not None:
            normalize.save(directory / asset_id, norm_stats)
        if tokenizers:
            tokenizer_sources.save_into(directory, paligemma=tokenizers.get("paligemma"), fast=tokenizers.get("fast"))

    manager.save(
        step,
        args=ocp.args.Composite(
            assets=CallbackSave(write_assets),
            train_state=ocp.args.PyTreeSave(train_state),
            params=ocp.args.PyTreeSave({"params": params}),
        ),
    )
    manager.wait_until_finished()
