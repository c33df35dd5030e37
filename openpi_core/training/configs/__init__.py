"""Named training configs, one module per robot family."""

from __future__ import annotations

from openpi_core.training.config import TrainConfig


def all_configs() -> list[TrainConfig]:
    from openpi_core.training.configs import aloha, debug, droid, libero  # noqa: PLC0415

    return [*debug.CONFIGS, *aloha.CONFIGS, *droid.CONFIGS, *libero.CONFIGS]
