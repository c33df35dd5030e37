"""`RobotSpec`: everything openpi-ros knows about one robot, in one place (no ROS, no JAX at import time).

A spec says which cameras and joints the robot has on ROS and how they become the observation its policy adapter
expects; what its action columns mean (positions or ``<joint>/velocity``, units, gripper convention) and the chunk
executor's limits for them; which named training configs and serving spec belong to it; a default mapping for
`openpi-convert-rosbag`; optionally a simulator for the sim bridge. Built-in specs live in this package
(`aloha`, `droid`, `libero`); other packages register theirs through the `openpi.robots` entry point group
(`openpi_core.robots.registry`), so a new arm needs no change to this repository.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

__all__ = [
    "IMAGE_SLOTS",
    "VELOCITY_SUFFIX",
    "CameraSpec",
    "ExecutorLimits",
    "RobotSpec",
    "Simulator",
    "generic_layout",
    "load_attribute",
]

VELOCITY_SUFFIX = "/velocity"
# The model's image slots a camera can feed (`CameraSpec.model_key`).
IMAGE_SLOTS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    name: str
    """The camera's name in the policy observation (e.g. ``cam_high``)."""
    topic: str
    """Default sensor_msgs/Image topic, relative (the node's namespace applies); compressed: ``<topic>/compressed``."""
    model_key: str
    """The model image slot its adapter feeds it into (``base_0_rgb``, ``left_wrist_0_rgb``, ``right_wrist_0_rgb``)."""
    dataset_name: str = ""
    """The converter's feature name (``observation.images.<dataset_name>``); default: `name`."""

    @property
    def feature(self) -> str:
        return self.dataset_name or self.name


@dataclasses.dataclass(frozen=True)
class ExecutorLimits:
    """The chunk executor's defaults for this robot (one value per action column; empty: no such limit)."""

    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    max_velocity: tuple[float, ...] = ()
    max_acceleration: tuple[float, ...] = ()
    max_tracking_error: tuple[float, ...] = ()
    velocity_scale: float = 1.0
    velocity_input_bound: float = 0.0
    binary_columns: tuple[str, ...] = ()
    state_joint_names: tuple[str, ...] | None = None
    on_stale: str = "hold"

    def parameters(self) -> dict[str, Any]:
        """As `chunk_executor` parameters (only the set ones)."""
        params: dict[str, Any] = {"on_stale": self.on_stale}
        for key in ("lower", "upper"):
            if getattr(self, key):
                params[f"{key}_limits"] = [float(v) for v in getattr(self, key)]
        for key in ("max_velocity", "max_acceleration", "max_tracking_error"):
            if getattr(self, key):
                params[key] = [float(v) for v in getattr(self, key)]
        if self.velocity_scale != 1.0:
            params["velocity_scale"] = float(self.velocity_scale)
        if self.velocity_input_bound:
            params["velocity_input_bound"] = float(self.velocity_input_bound)
        if self.binary_columns:
            params["binary_columns"] = list(self.binary_columns)
        if self.state_joint_names is not None:
            params["state_joint_names"] = list(self.state_joint_names)
        return params


def load_attribute(reference: str, what: str) -> Any:
    """``module:attribute`` -> the attribute (errors name `what`, e.g. ``robot 'ur5e': sim``)."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"{what}: cannot import {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImportError(f"{what}: {module_name!r} has no {attribute!r}") from None


class Simulator(Protocol):
    """What the sim bridge drives: a robot in simulation that looks like the real one on ROS."""

    dt: float
    prompt: str
    task_name: str
    steps: int
    reward: float
    max_reward: float

    @property
    def state(self) -> np.ndarray: ...
    @property
    def success(self) -> bool: ...
    def hold_action(self) -> np.ndarray: ...
    def reset(self, seed: int | None = None) -> np.ndarray: ...
    def step(self, action: np.ndarray, render: bool = True) -> np.ndarray: ...
    def render(self, camera: str) -> np.ndarray: ...


Layout = Callable[[Mapping[str, np.ndarray], np.ndarray, str], dict[str, Any]]


def generic_layout(images: Mapping[str, np.ndarray], state: np.ndarray, prompt: str) -> dict[str, Any]:
    """``{"images": {<camera>: HWC uint8}, "state": [n], "prompt": ...}`` (`policies.generic_policy`'s layout)."""
    return {"images": dict(images), "state": state, "prompt": prompt}


@dataclasses.dataclass(frozen=True)
class RobotSpec:
    name: str
    description: str
    cameras: tuple[CameraSpec, ...]
    joint_names: tuple[str, ...]
    """JointState names assembled, in this order, into the state vector."""
    limits: ExecutorLimits
    joint_state_topics: tuple[str, ...] = ("joint_states",)
    action_names: tuple[str, ...] = ()
    """The chunk's columns (default: `joint_names`); ``<joint>/velocity`` for velocity columns."""
    action_units: str = ""
    """What the action values mean: units, position or velocity, the gripper's convention."""
    control_rate: float = 50.0
    """Hz: the rate the actions are executed at (the chunk rows' spacing)."""
    policy_rate: float = 10.0
    """Hz: the default inference rate."""
    layout: Layout = generic_layout
    """ROS inputs (HWC uint8 images by camera name, the state, the prompt) -> the observation the adapter reads."""
    example: Callable[[int], dict[str, Any]] | None = None
    """seed -> a random observation in `layout` (as a robot sends it); default: made from the cameras and joints."""
    optional_fields: tuple[str, ...] = ()
    """Observation fields the adapter accepts missing (``images.cam_low``): the serving spec lets them out."""
    gripper_columns: tuple[str, ...] = ()
    """Action columns that are grippers (absolute even where the arm's joints train as deltas)."""
    train_configs: str = ""
    """``module:attribute``: a list of `TrainConfig`s this robot adds to the named configs (plugins)."""
    debug_config: str = ""
    """A tiny config on this robot's layout (demos, tests, the record-to-serve loop)."""
    sim: str = ""
    """``module:callable`` building the simulator (`Simulator`) from the sim bridge's parameters; '': no sim."""
    sim_task: str = ""
    """The simulator's default task."""
    sim_config: str = ""
    """The config `sim_eval` serves (a small random-weight model of it unless a checkpoint is given)."""

    def __post_init__(self) -> None:
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"robot {self.name!r}: joint_names must be distinct and not empty")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"robot {self.name!r}: camera names repeat in {names}")
        unknown = set(self.gripper_columns) - set(self.actions)
        if unknown:
            raise ValueError(f"robot {self.name!r}: gripper_columns {sorted(unknown)} are not among {self.actions}")
        for field in ("train_configs", "sim"):
            value = getattr(self, field)
            if value and value.count(":") != 1:
                raise ValueError(f"robot {self.name!r}: {field} must be 'module:attribute', got {value!r}")
        for field in ("lower", "upper", "max_velocity", "max_acceleration", "max_tracking_error"):
            values = getattr(self.limits, field)
            if values and len(values) != len(self.actions):
                raise ValueError(
                    f"robot {self.name!r}: limits.{field} has {len(values)} values for {len(self.actions)} actions"
                )
        if not (self.control_rate > 0 and self.policy_rate > 0):
            raise ValueError(f"robot {self.name!r}: control_rate and policy_rate must be > 0")

    @property
    def actions(self) -> tuple[str, ...]:
        return self.action_names or self.joint_names

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def camera_topics(self) -> tuple[str, ...]:
        return tuple(c.topic for c in self.cameras)

    @property
    def state_dim(self) -> int:
        return len(self.joint_names)

    @property
    def action_dim(self) -> int:
        return len(self.actions)

    @property
    def velocity_columns(self) -> tuple[str, ...]:
        return tuple(a for a in self.actions if a.endswith(VELOCITY_SUFFIX))

    def policy_input(self, images: Mapping[str, np.ndarray], state: np.ndarray, prompt: str) -> dict[str, Any]:
        return self.layout(images, state, prompt)

    def make_example(self, seed: int = 0) -> dict[str, Any]:
        if self.example is not None:
            return self.example(seed)
        rng = np.random.default_rng(seed)
        images = {c.name: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for c in self.cameras}
        state = rng.uniform(-1, 1, len(self.joint_names)).astype(np.float32)
        return self.layout(images, state, "do something")

    def rosbag_mapping(self, namespace: str = "", *, repo_id: str | None = None) -> dict[str, Any]:
        """The default `openpi-convert-rosbag` mapping for this robot's topics (under `namespace`): its cameras as
        their dataset names, its joint topics into observation.state in `joint_names` order, next-state actions
        (position robots; give command topics for velocity ones)."""
        prefix = f"/{namespace.strip('/')}/" if namespace.strip("/") else "/"
        state = [{"topic": prefix + topic} for topic in self.joint_state_topics]
        if len(state) == 1:
            state[0]["joints"] = list(self.joint_names)
        return {
            "repo_id": repo_id or f"local/{self.name}_demos",
            "fps": round(self.control_rate) if self.control_rate <= 30 else 30,
            "robot_type": self.name,
            "cameras": {c.feature: prefix + c.topic for c in self.cameras},
            "state": state,
            "action": "next_state",
        }
