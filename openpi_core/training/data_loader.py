"""Training data: LeRobot v3 datasets (through the `lerobot` package) or fake samples, transformed on the fly.

Batch k of a run is a pure function of (seed, k): the sample order is a seeded permutation per epoch, so a resumed
run sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from openpi_core import transforms as _transforms
from openpi_core.models import model as _model
from openpi_core.training import sharding as _sharding
from openpi_core.training.config import DataConfig, TrainConfig

logger = logging.getLogger(__name__)


class FakeDataset:
    """Random model-ready samples shaped by the model's `inputs_spec` (uint8 images, valid prompt tokens)."""

    def __init__(self, model_config: _model.BaseModelConfig, num_samples: int = 1024, seed: int = 0) -> None:
        self._obs_spec, self._action_spec = model_config.inputs_spec(batch_size=1)
        self._vocab = getattr(model_config, "vocab_size", 1024)
        self._num_samples = num_samples
        self._seed = seed

    def __len__(self) -> int:
        return self._num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self._seed, int(index)])

        def make(spec: jax.ShapeDtypeStruct) -> np.ndarray:
            shape = spec.shape[1:]
            if spec.dtype == np.float32:
                return rng.uniform(-1, 1, shape).astype(np.float32)
            if spec.dtype == np.int32:
                return rng.integers(0, self._vocab, shape).astype(np.int32)
            return np.ones(shape, dtype=spec.dtype)

        obs = jax.tree.map(make, self._obs_spec)
        data = obs.to_dict()
        data["image"] = {k: ((v + 1) * 127.5).astype(np.uint8) for k, v in data["image"].items()}
        if data.get("token_ar_mask") is not None:
            data["token_ar_mask"] = np.zeros_like(data["token_ar_mask"])
        data = {k: v for k, v in data.items() if v is not None}
        return {**data, "actions": make(self._action_spec)}


class TransformedDataset:
    def __init__(self, dataset: Any, transforms: Sequence[_transforms.DataTransformFn]) -> None:
        self._dataset = dataset
        self._transform = _transforms.compose(transforms)

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self._dataset[index]
        item = {k: _to_numpy(v) for k, v in item.items()}
        return self._transform(item)


def _to_numpy(value: Any) -> Any:
    if isinstance(value, str | bytes):
        return value
    if hasattr(value, "numpy"):  # torch tensors from lerobot
        return value.numpy()
    return np.asarray(value) if isinstance(value, list | tuple | int | float | bool) else value


def create_lerobot_dataset(data_config: DataConfig, action_horizon: int) -> Any:
    """A `lerobot.datasets.LeRobotDataset` (v3.0) with `action_horizon`-long chunks for the action keys."""
    if data_config.repo_id is None:
        raise ValueError("data config has no repo_id")
    if data_config.root is not None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local dataset never touches the hub
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata  # noqa: PLC0415

    meta = LeRobotDatasetMetadata(data_config.repo_id, root=data_config.root)
    missing = [key for key in data_config.action_sequence_keys if key not in meta.features]
    if missing:
        raise ValueError(
            f"dataset {data_config.repo_id} has no feature {missing[0]!r} (action_sequence_keys); "
            f"features: {sorted(meta.features)}"
        )
    delta = {key: [t / meta.fps for t in range(action_horizon)] for key in data_config.action_sequence_keys}
    return LeRobotDataset(data_config.repo_id, root=data_config.root, delta_timestamps=delta)


def create_dataset(config: TrainConfig, data_config: DataConfig, *, skip_norm_stats: bool = False) -> Any:
    """The dataset with every input transform applied: repack, robot adapter, normalization, model transforms."""
    model_config = config.model
    if data_config.repo_id == "fake":
        return FakeDataset(model_config, seed=config.seed)
    dataset = create_lerobot_dataset(data_config, model_config.action_horizon)
    transforms: list[_transforms.DataTransformFn] = []
    if data_config.prompt_from_task:
        transforms.append(_transforms.PromptFromLeRobotTask())
    transforms += [*data_config.repack_transforms.inputs, *data_config.data_transforms.inputs]
    if not skip_norm_stats:
        if data_config.norm_stats is None:
            raise ValueError(
                f"no norm stats for asset {data_config.asset_id!r} under {config.assets_dirs}: run "
                f"`python training/compute_norm_stats.py {config.name}` first"
            )
        transforms.append(_transforms.Normalize(data_config.norm_stats, use_quantiles=data_config.use_quantile_norm))
    transforms += data_config.model_transforms.inputs
    return TransformedDataset(dataset, transforms)


def batch_indices(
    num_samples: int, batch_size: int, seed: int, start_batch: int, *, shuffle: bool
) -> Iterator[list[int]]:
    """Batches of sample indices from batch `start_batch` on; epochs are seeded permutations (last partial dropped)."""
    if num_samples < batch_size:
        raise ValueError(f"dataset has {num_samples} samples, fewer than one batch of {batch_size}")
    per_epoch = num_samples // batch_size
    batch = start_batch
    while True:
        epoch, offset = divmod(batch, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(num_samples) if shuffle else np.arange(num_samples)
        for b in range(offset, per_epoch):
            yield order[b * batch_size : (b + 1) * batch_size].tolist()
        batch = (epoch + 1) * per_epoch


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    flat = [_transforms.flatten_dict(item) for item in items]
    keys = flat[0].keys()
    for i, item in enumerate(flat[1:], start=1):
        if item.keys() != keys:
            raise ValueError(f"sample {i} has keys {sorted(item)}, sample 0 has {sorted(keys)}")
    return _transforms.unflatten_dict({k: np.stack([np.asarray(item[k]) for item in flat]) for k in keys})


class DataLoader:
    """Yields `(Observation, actions)` batches placed on the mesh, starting at batch `start_step`."""

    def __init__(
        self,
        dataset: Any,
        *,
        batch_size: int,
        mesh: jax.sharding.Mesh,
        seed: int,
        shuffle: bool = True,
        num_workers: int = 0,
        start_step: int = 0,
    ) -> None:
        if batch_size % mesh.size:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of devices ({mesh.size})")
        self._dataset = dataset
        self._batch_size = batch_size
        self._sharding = _sharding.data_sharding(mesh)
        self._seed = seed
        self._shuffle = shuffle
        self._num_workers = num_workers
        self._start_step = start_step

    def _host_batches(self) -> Iterator[dict[str, Any]]:
        indices = batch_indices(
            len(self._dataset), self._batch_size, self._seed, self._start_step, shuffle=self._shuffle
        )
        if self._num_workers == 0:
            for batch in indices:
                yield collate([self._dataset[i] for i in batch])
            return
        import torch.utils.data  # noqa: PLC0415

        loader = torch.utils.data.DataLoader(
            self._dataset,
            batch_sampler=indices,
            num_workers=self._num_workers,
            collate_fn=collate,
            multiprocessing_context="spawn",  # JAX in the parent process is not fork-safe
            persistent_workers=True,
        )
        yield from loader

    def __iter__(self) -> Iterator[tuple[_model.Observation, jax.Array]]:
        for batch in self._host_batches():
            placed = jax.tree.map(lambda x: jax.make_array_from_process_local_data(self._sharding, x), batch)
            yield _model.Observation.from_dict(placed), placed["actions"]
