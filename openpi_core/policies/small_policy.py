"""A small random-weight model behind a named config's real transforms: the whole pipeline without a download.

`make_small_policy("pi0_aloha_sim", folder)` builds the config's model family at the fixtures' tiny sizes (Gemma
width 64, SigLIP mu/14), saves its parameters as an openpi-layout checkpoint folder with identity norm stats, and
loads that through `create_trained_policy`: real tokenizer code (a small in-process SentencePiece model), real
robot adapter, normalisation, sampling. Its actions are random. For demos and smoke tests where no pretrained
weights are reachable; say so wherever its output is shown.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from openpi_core import normalize
from openpi_core.models import model as _model
from openpi_core.models.small_tokenizer import make_small_paligemma_tokenizer
from openpi_core.policies.policy import Policy
from openpi_core.policies.policy_config import create_trained_policy
from openpi_core.robots import registry
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs

__all__ = ["make_small_policy"]

_TINY = {"paligemma_variant": "dummy", "action_expert_variant": "dummy", "vision_variant": "mu/14"}


def make_small_policy(
    config_name: str,
    folder: str | Path,
    *,
    action_horizon: int = 50,
    num_steps: int = 2,
    seed: int = 0,
    model_overrides: dict | None = None,
    sample_kwargs: dict | None = None,
) -> Policy:
    """`model_overrides`: further model config fields (e.g. ``training_rtc_max_delay``); `sample_kwargs`: further
    `sample_actions` arguments (e.g. ``guidance``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = _configs.get_config(config_name)
    if not config.data.robot_name():
        raise ValueError(f"config {config_name!r} reads no robot's observations (its data config names no robot)")
    robot = registry.get(config.data.robot_name())
    sp = make_small_paligemma_tokenizer(folder / "tokenizer.model", num_loc=0, num_seg=0)
    model = dataclasses.replace(
        config.model,
        vocab_size=1024,
        dtype="float32",
        action_horizon=action_horizon,
        **_TINY,
        **(model_overrides or {}),
    )
    factory = _config.ModelTransformFactory(paligemma_tokenizer=str(sp))
    config = dataclasses.replace(config, model=model, data=dataclasses.replace(config.data, model_transforms=factory))
    checkpoint = folder / "checkpoint"
    params = nnx.to_pure_dict(nnx.state(model.create(jax.random.key(seed)), nnx.Param))
    _model.save_params(checkpoint / "params", params)
    stats = {
        key: normalize.NormStats(mean=np.zeros(d), std=np.ones(d), q01=-np.ones(d), q99=np.ones(d))
        for key, d in (("state", robot.state_dim), ("actions", robot.action_dim))
    }
    policy = create_trained_policy(
        config, checkpoint, norm_stats=stats, sample_kwargs={"num_steps": num_steps, **(sample_kwargs or {})}
    )
    return policy
