"""Device mesh and FSDP placement: parameters and optimizer state sharded over an `fsdp` axis, data over both."""

from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

BATCH_AXIS = "batch"
FSDP_AXIS = "fsdp"
DATA_AXES = (BATCH_AXIS, FSDP_AXIS)


def make_mesh(fsdp_devices: int) -> Mesh:
    devices = jax.devices()
    if fsdp_devices < 1 or len(devices) % fsdp_devices:
        raise ValueError(f"fsdp_devices ({fsdp_devices}) must divide the number of devices ({len(devices)})")
    grid = np.asarray(devices).reshape(len(devices) // fsdp_devices, fsdp_devices)
    return Mesh(grid, DATA_AXES)


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Batches are split over every device (leading axis)."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def fsdp_sharding(tree: Any, mesh: Mesh, *, min_size_mb: float = 4.0, log: bool = False) -> Any:
    """Shard each array of at least `min_size_mb` along its largest axis divisible by the fsdp size."""
    fsdp = mesh.shape[FSDP_AXIS]

    def place(path: Any, x: Any) -> NamedSharding:
        shape = getattr(x, "shape", ())
        nbytes = int(np.prod(shape)) * np.dtype(getattr(x, "dtype", np.float32)).itemsize if shape else 0
        if fsdp == 1 or len(shape) < 1 or nbytes < min_size_mb * 2**20:
            return replicated(mesh)
        for axis in np.argsort(shape)[::-1]:
            if shape[axis] % fsdp == 0:
                spec = [None] * len(shape)
                spec[axis] = FSDP_AXIS
                if log:
                    logger.info("fsdp: %s %s sharded on axis %d", jax.tree_util.keystr(path), shape, axis)
                return NamedSharding(mesh, PartitionSpec(*spec))
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(place, tree)
