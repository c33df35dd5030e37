"""The robot a node runs: a registered `RobotSpec` (`openpi_core.robots.registry`) with the node's overrides.

``custom`` is a robot made from the parameters alone (``joint_names``, ``camera_names``): the generic layout
``{"images": {<camera>: HWC}, "state": [n]}``, cameras fed to the model's image slots in order, no limits. A robot
that is used more than once deserves a spec of its own (docs/robots.md).
"""

from __future__ import annotations

import dataclasses

from openpi_core.robots import registry
from openpi_core.robots.spec import IMAGE_SLOTS, CameraSpec, ExecutorLimits, RobotSpec

__all__ = ["CUSTOM", "resolve"]

CUSTOM = "custom"


def resolve(
    name: str,
    *,
    cameras: tuple[str, ...] = (),
    camera_topics: tuple[str, ...] = (),
    joint_names: tuple[str, ...] = (),
    joint_state_topics: tuple[str, ...] = (),
) -> RobotSpec:
    """`name`'s spec with the given cameras (default topic ``<camera>/image_raw`` for one the spec lacks), topics,
    joints and joint topics in place of its own; errors name the parameter."""
    if name == CUSTOM:
        if not joint_names:
            raise ValueError("robot 'custom' needs the 'joint_names' parameter")
        base = RobotSpec(name=CUSTOM, description="from the node's parameters", cameras=(), joint_names=joint_names,
                         limits=ExecutorLimits())  # fmt: skip
    else:
        try:
            base = registry.get(name)
        except registry.UnknownRobotError as exc:
            raise ValueError(f"parameter 'robot': {exc}") from None
    specs = base.cameras
    if cameras:
        known = {c.name: c for c in base.cameras}
        slots = iter(IMAGE_SLOTS)
        specs = tuple(known.get(c) or CameraSpec(c, f"{c}/image_raw", next(slots, "")) for c in cameras)
    if camera_topics:
        if len(camera_topics) != len(specs):
            raise ValueError(f"parameter 'camera_topics': {len(camera_topics)} topics for {len(specs)} cameras")
        specs = tuple(dataclasses.replace(c, topic=t) for c, t in zip(specs, camera_topics, strict=True))
    if joint_names and name != CUSTOM and len(joint_names) != base.state_dim:
        raise ValueError(
            f"parameter 'joint_names': {len(joint_names)} names for robot {name!r}'s {base.state_dim}-joint state"
        )
    return dataclasses.replace(
        base,
        cameras=specs,
        joint_names=joint_names or base.joint_names,
        joint_state_topics=joint_state_topics or base.joint_state_topics,
    )
