"""Initial weights for training: fresh init, or an openpi checkpoint's `params` (official ones included)."""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Protocol

import flax.traverse_util
import numpy as np

from openpi_core import download
from openpi_core.models import model as _model

logger = logging.getLogger(__name__)


class WeightLoader(Protocol):
    def load(self, params: _model.Params) -> _model.Params:
        """Given the model's abstract params (shapes/dtypes), return the leaves to load (a subset is fine)."""


@dataclasses.dataclass(frozen=True)
class NoOpWeightLoader:
    def load(self, params: _model.Params) -> _model.Params:
        return {}


@dataclasses.dataclass(frozen=True)
class CheckpointWeightLoader:
    """Load an openpi `params` folder (local, `gs://...`, ...). Leaves the model does not have are dropped;
    the model's leaves the checkpoint lacks must match `missing_regex` (LoRA adapters, by default) and keep their
    fresh initialisation. Dtypes follow the model."""

    params_path: str
    missing_regex: str = ".*lora.*"

    def load(self, params: _model.Params) -> _model.Params:
        loaded = _model.restore_params(download.maybe_download(self.params_path), restore_type=np.ndarray)
        return merge_params(loaded, params, missing_regex=self.missing_regex, source=self.params_path)


def merge_params(loaded: _model.Params, expected: _model.Params, *, missing_regex: str, source: str) -> _model.Params:
    flat_loaded = flax.traverse_util.flatten_dict(loaded, sep="/")
    flat_expected = flax.traverse_util.flatten_dict(expected, sep="/")
    pattern = re.compile(missing_regex)
    missing = [k for k in flat_expected if k not in flat_loaded and not pattern.fullmatch(k)]
    if missing:
        raise ValueError(f"checkpoint {source} lacks parameters the model needs: {missing[:8]}")
    out: dict[str, Any] = {}
    for key, value in flat_loaded.items():
        if key not in flat_expected:
            continue
        want = flat_expected[key]
        if tuple(value.shape) != tuple(want.shape):
            raise ValueError(f"checkpoint {source}: {key} has shape {value.shape}, the model needs {want.shape}")
        out[key] = np.asarray(value).astype(want.dtype)
    dropped = len(flat_loaded) - len(out)
    logger.info("Loaded %d parameter arrays from %s (%d unused)", len(out), source, dropped)
    return flax.traverse_util.unflatten_dict(out, sep="/")
