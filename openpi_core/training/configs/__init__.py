"""The named training configs and their registry: one module per built-in robot family, plus those robot plugins
add (`RobotSpec.train_configs`). `get_config(name)` finds one (suggesting close names on a typo); `cli()` parses
`<name> --batch-size 8 ...` overrides with tyro.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from openpi_core.robots import registry as _robots
from openpi_core.robots.spec import load_attribute
from openpi_core.training.config import TrainConfig
from openpi_core.training.configs import aloha, debug, droid, libero

__all__ = ["all_configs", "cli", "config_names", "get_config"]


def all_configs() -> list[TrainConfig]:
    configs = [*debug.CONFIGS, *aloha.CONFIGS, *droid.CONFIGS, *libero.CONFIGS]
    for spec in _robots.robots().values():
        if spec.train_configs:
            configs += list(load_attribute(spec.train_configs, f"robot {spec.name!r}: train_configs"))
    return configs


def _registry() -> dict[str, TrainConfig]:
    configs = all_configs()
    names = [c.name for c in configs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"config names defined twice: {sorted(duplicates)}")
    return {c.name: c for c in configs}


def config_names() -> list[str]:
    return sorted(_registry())


def get_config(name: str) -> TrainConfig:
    registry = _registry()
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown config {name!r}.{hint} Known: {', '.join(sorted(registry))}")
    return registry[name]


def cli(argv: Sequence[str] | None = None) -> TrainConfig:
    """`<config name> [--field value ...]`: a named config with tyro overrides (`--batch-size 8`, `--resume`)."""
    import tyro  # noqa: PLC0415 (only the command line needs it)

    registry = _registry()
    subcommands = {
        name: (f"{config.model.model_type.value} on {type(config.data).__name__}({config.data.repo_id})", config)
        for name, config in sorted(registry.items())
    }
    return tyro.extras.overridable_config_cli(subcommands, args=argv)
