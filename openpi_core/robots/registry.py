"""Every robot openpi-ros knows: the built-in specs and those other packages register.

A package adds robots through the ``openpi.robots`` entry point group, each entry naming a `RobotSpec`::

    [project.entry-points."openpi.robots"]
    ur5e_lift = "openpi_ur5e_lift.robot:ROBOT"

Specs are loaded on first use. A plugin that fails to load (import error, not a `RobotSpec`, a name taken) is
skipped with a warning, and asking for it by name raises an error that carries the reason.
"""

from __future__ import annotations

import functools
import logging
from importlib import metadata

from openpi_core.errors import OpenpiError
from openpi_core.robots import aloha, droid, libero
from openpi_core.robots.spec import RobotSpec

__all__ = ["ENTRY_POINT_GROUP", "UnknownRobotError", "get", "names", "plugin_errors", "robots"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "openpi.robots"
BUILTIN = (aloha.ROBOT, droid.ROBOT, libero.ROBOT)


class UnknownRobotError(OpenpiError, ValueError):
    """No robot of that name is registered (the message lists the known ones and any plugin that failed)."""


@functools.cache
def _load() -> tuple[dict[str, RobotSpec], dict[str, str]]:
    specs = {spec.name: spec for spec in BUILTIN}
    errors: dict[str, str] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {entry.name!r} = {entry.value!r}"
        try:
            spec = entry.load()
        except Exception as exc:  # a broken plugin must not take the built-in robots down with it
            errors[entry.name] = f"{where}: {type(exc).__name__}: {exc}"
            continue
        if not isinstance(spec, RobotSpec):
            errors[entry.name] = f"{where}: is a {type(spec).__name__}, not a RobotSpec"
        elif spec.name != entry.name:
            errors[entry.name] = f"{where}: names the robot {spec.name!r}; the entry point's name must match"
        elif spec.name in specs:
            errors[entry.name] = f"{where}: robot {spec.name!r} is already registered"
        else:
            specs[spec.name] = spec
    for error in errors.values():
        logger.warning("robot plugin skipped: %s", error)
    return specs, errors


def robots() -> dict[str, RobotSpec]:
    """Name -> spec of every registered robot (built-in first)."""
    return dict(_load()[0])


def names() -> list[str]:
    return list(_load()[0])


def plugin_errors() -> dict[str, str]:
    """Entry point name -> why that plugin was skipped."""
    return dict(_load()[1])


def get(name: str) -> RobotSpec:
    specs, errors = _load()
    if name in specs:
        return specs[name]
    if name in errors:
        raise UnknownRobotError(f"robot {name!r} failed to load: {errors[name]}")
    known = ", ".join(specs)
    raise UnknownRobotError(f"unknown robot {name!r}; registered: {known} (to add one: docs/robots.md)")
