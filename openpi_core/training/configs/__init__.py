"""Named training configs: one module per built-in robot family, plus those robot plugins add (`train_configs`)."""

from __future__ import annotations

from openpi_core.training.config import TrainConfig


def all_configs() -> list[TrainConfig]:
    from openpi_core.robots import registry  # noqa: PLC0415
    from openpi_core.robots.spec import load_attribute  # noqa: PLC0415
    from openpi_core.training.configs import aloha, debug, droid, libero  # noqa: PLC0415

    configs = [*debug.CONFIGS, *aloha.CONFIGS, *droid.CONFIGS, *libero.CONFIGS]
    for spec in registry.robots().values():
        if spec.train_configs:
            configs += list(load_attribute(spec.train_configs, f"robot {spec.name!r}: train_configs"))
    return configs
