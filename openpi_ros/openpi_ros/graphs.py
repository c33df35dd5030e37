"""Node graphs per robot setup, in plain Python.

Launch files (`launch/*.launch.py`) turn these specs into `launch_ros` Node actions on a full ROS 2 install; here,
where no `ros2 launch` exists, `NodeSpec.command()` starts the very same nodes as processes over real DDS.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from openpi_core.robots import registry
from openpi_core.robots.spec import RobotSpec
from openpi_ros.policy_runner import POLICY_SOURCES
from openpi_ros.synthetic import SyntheticRobotConfig

__all__ = ["LIMIT_KEYS", "NodeSpec", "RobotGraphConfig", "demo_graph", "executor_limits", "robot_graph"]


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    executable: str
    """Console script of the `openpi_ros` package (what `ros2 run openpi_ros <executable>` starts)."""
    module: str
    """Python module with the node's `main()`, used to start it here with `python -m`."""
    name: str
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    namespace: str = ""
    package: str = "openpi_ros"

    def ros_args(self) -> list[str]:
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={json.dumps(value)}"]  # JSON scalars and lists are valid YAML for rcl
        return args

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", self.module, *self.ros_args()]


def demo_graph(
    *,
    namespace: str = "demo",
    rate: float = 10.0,
    horizon: int = 50,
    camera_rate: float = 30.0,
    joint_rate: float = 50.0,
    image_size: int = 224,
    prompt: str = "hold still",
) -> list[NodeSpec]:
    """Synthetic robot (3 cameras, 14 joints, ALOHA names) and a policy node answering with action chunks."""
    robot = SyntheticRobotConfig(image_height=image_size, image_width=image_size)
    cameras, joints = list(robot.camera_names), list(robot.joint_names)
    return [
        NodeSpec(
            executable="synthetic_robot",
            module="openpi_ros.synthetic_robot_node",
            name="synthetic_robot",
            namespace=namespace,
            parameters={
                "camera_names": cameras,
                "joint_names": joints,
                "image_height": image_size,
                "image_width": image_size,
                "camera_rate": camera_rate,
                "joint_rate": joint_rate,
            },
        ),
        NodeSpec(
            executable="policy_node",
            module="openpi_ros.policy_node",
            name="policy_node",
            namespace=namespace,
            parameters={
                "camera_names": cameras,
                "joint_names": joints,
                "rate": rate,
                "horizon": horizon,
                "policy": "hold",
                "prompt": prompt,
            },
        ),
    ]


# Chunk-executor parameters a launch argument or a limits file may set in place of the robot spec's defaults.
LIMIT_KEYS = ("lower_limits", "upper_limits", "max_velocity", "max_acceleration", "max_tracking_error")


@dataclasses.dataclass(frozen=True)
class RobotGraphConfig:
    """The launch arguments of `<robot>.launch.py`; every field is one (`ros2 launch ... field:=value`)."""

    robot: str = "aloha"
    """A registered robot (`openpi_core.robots.registry`: built-in or a plugin's)."""
    namespace: str = ""
    policy: str = "hold"
    """hold | checkpoint | remote."""
    config_name: str = ""
    checkpoint_dir: str = ""
    server_url: str = ""
    prompt: str = ""
    rate: float = 0.0
    """Policy inference rate in Hz (0: the robot's default)."""
    horizon: int = 50
    strategy: str = "blend"
    """Chunk execution: broker | ensemble | blend | rtc (rtc also turns on the policy node's real-time chunking)."""
    command_type: str = "joint_state"
    """joint_state | joint_trajectory | both."""
    on_stale: str = ""
    """hold | stop ('' : the robot's default)."""
    command_topic: str = ""
    """Where the executor publishes its commands ('' : joint_commands), e.g. a driver's /arm/joint_command."""
    limits_file: str = ""
    """YAML file of executor limits (any of LIMIT_KEYS, one value per action column) over the robot's defaults."""
    lower_limits: str = ""
    """Per-column lower position limits as a YAML list ('' : the robot's, or the limits file's)."""
    upper_limits: str = ""
    max_velocity: str = ""
    max_age: float = 0.5
    realtime_priority: int = 0
    """SCHED_FIFO priority of the executor's control loop (0: off)."""
    max_chunk_age: float = 0.0
    """Oldest observation a chunk may come from when it reaches the executor, in s (0: the executor's 1 s)."""
    image_size: int = 224
    compressed: bool = False
    """Read every camera as sensor_msgs/CompressedImage from <topic>/compressed."""
    synthetic: bool = False
    """Add a synthetic robot publishing the robot's cameras and joints (no hardware: a wiring check)."""
    sim: bool = False
    """Add the robot's simulator (sim bridge) in place of the hardware and run every node on sim time."""
    task: str = ""
    """Sim task ('' : the robot's default), e.g. AlohaInsertion-v0 or '<libero suite>/<task id>'."""
    seed: int = 0
    max_steps: int = 400
    sim_image_size: int = 224
    sim_real_time_factor: float = 1.0
    """Sim time per wall second at most (0: as fast as it goes); below 1 for a policy slower than real time."""
    use_sim_time: bool = False

    def __post_init__(self) -> None:
        try:
            spec = registry.get(self.robot)
        except registry.UnknownRobotError as exc:
            raise ValueError(f"robot: {exc}") from None
        if self.policy not in POLICY_SOURCES:
            raise ValueError(f"policy: {self.policy!r} is not one of {', '.join(POLICY_SOURCES)}")
        if self.sim and not spec.sim:
            raise ValueError(f"sim: robot {self.robot!r} has no simulator (its spec's `sim` is empty)")
        if self.sim and self.synthetic:
            raise ValueError("sim and synthetic: choose one source of cameras and joints")

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> RobotGraphConfig:
        """Build from launch-argument strings, converting each to its field's type (errors name the field)."""
        kwargs: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, text in values.items():
            if name not in fields:
                raise ValueError(f"unknown launch argument {name!r}; known: {sorted(fields)}")
            kind = fields[name].type
            try:
                if kind == "bool":
                    if text.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(text)
                    kwargs[name] = text.lower() in ("true", "1")
                elif kind == "int":
                    kwargs[name] = int(text)
                elif kind == "float":
                    kwargs[name] = float(text)
                else:
                    kwargs[name] = text
            except ValueError:
                raise ValueError(f"launch argument {name!r}: cannot read {text!r} as {kind}") from None
        return cls(**kwargs)

    @staticmethod
    def arguments() -> dict[str, tuple[str, str]]:
        """Launch argument name -> (default as text, description), for DeclareLaunchArgument."""
        out = {}
        for field in dataclasses.fields(RobotGraphConfig):
            default = field.default
            text = str(default).lower() if isinstance(default, bool) else str(default)
            out[field.name] = (text, _ARGUMENT_HELP.get(field.name, field.name.replace("_", " ")))
        return out


_ARGUMENT_HELP = {
    "robot": "a registered robot: aloha, droid, libero or a plugin's (python -m openpi_core.robots lists them)",
    "namespace": "namespace of every node and topic",
    "policy": "policy source: hold (no model), checkpoint (in-process) or remote (policy server)",
    "config_name": "training config of the checkpoint, e.g. pi05_droid (policy:=checkpoint)",
    "checkpoint_dir": "checkpoint folder: local, file:// or gs:// (policy:=checkpoint)",
    "server_url": "policy server, e.g. ws://gpu-box:8000 (policy:=remote; key from $OPENPI_SERVER_API_KEY)",
    "prompt": "language instruction",
    "rate": "policy inference rate in Hz (0: robot default)",
    "horizon": "chunk length of the hold policy",
    "strategy": "chunk execution: broker, ensemble, blend or rtc (and the policy node's real-time chunking)",
    "command_type": "commands as joint_state, joint_trajectory or both",
    "on_stale": "when chunks go stale: hold or stop (empty: robot default)",
    "max_age": "oldest camera/joint message used, in s",
    "realtime_priority": "SCHED_FIFO priority (1-99) of the executor's control loop; 0: off",
    "max_chunk_age": "oldest observation an executed chunk may come from, in s (0: 1 s; raise for slow inference)",
    "image_size": "images are resized with padding to this square (0: keep)",
    "compressed": "read cameras as CompressedImage from <topic>/compressed",
    "synthetic": "add a synthetic robot (no hardware)",
    "sim": "true: the robot's simulator in place of the hardware (and sim time)",
    "task": "sim task (empty: the robot's default), e.g. AlohaInsertion-v0 or <libero suite>/<task id>",
    "command_topic": "topic the executor commands the arm on (empty: joint_commands)",
    "limits_file": "YAML file of executor limits (lower_limits, upper_limits, max_velocity, ...)",
    "lower_limits": "lower position limit per action column, a YAML list (empty: robot default)",
    "upper_limits": "upper position limit per action column, a YAML list (empty: robot default)",
    "max_velocity": "velocity limit per action column, a YAML list (empty: robot default)",
    "seed": "first episode's seed (sim)",
    "max_steps": "control steps per episode (sim)",
    "sim_image_size": "square size of the sim's rendered cameras",
    "sim_real_time_factor": "sim seconds per wall second at most (0: as fast as possible; below 1 for a slow policy)",
    "use_sim_time": "use /clock (simulation)",
}


def executor_limits(config: RobotGraphConfig, spec: RobotSpec) -> dict[str, Any]:
    """The executor's limit parameters: the spec's, then the limits file's, then the launch arguments'."""
    limits = spec.limits.parameters()
    overrides: dict[str, Any] = {}
    if config.limits_file:
        try:
            overrides = yaml.safe_load(Path(config.limits_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"limits_file: cannot read {config.limits_file!r}: {exc}") from None
        if not isinstance(overrides, dict) or set(overrides) - set(LIMIT_KEYS):
            raise ValueError(f"limits_file {config.limits_file!r}: expected a map with keys among {LIMIT_KEYS}")
    for key in ("lower_limits", "upper_limits", "max_velocity"):
        if getattr(config, key):
            overrides[key] = yaml.safe_load(getattr(config, key))
    for key, values in overrides.items():
        if not isinstance(values, list) or len(values) != spec.action_dim:
            raise ValueError(f"{key}: expected a list of {spec.action_dim} numbers (one per action), got {values!r}")
        try:
            limits[key] = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected numbers, got {values!r}") from None
    return limits


def robot_graph(config: RobotGraphConfig) -> list[NodeSpec]:
    """Policy node + chunk executor for one robot (+ a synthetic robot with `synthetic`, a sim bridge with `sim`)."""
    spec = registry.get(config.robot)
    common = {"use_sim_time": config.use_sim_time or config.sim}
    policy_params: dict[str, Any] = {
        **common,
        "robot": config.robot,
        "policy": config.policy,
        "config_name": config.config_name,
        "checkpoint_dir": config.checkpoint_dir,
        "server_url": config.server_url,
        "prompt": config.prompt,
        "rate": config.rate or spec.policy_rate,
        "horizon": config.horizon,
        "max_age": config.max_age,
        "image_size": config.image_size,
    }
    if config.strategy == "rtc":
        policy_params["rtc"] = True
    if config.compressed:
        policy_params["compressed_cameras"] = list(spec.camera_names)
    executor_params: dict[str, Any] = {
        **common,
        **executor_limits(config, spec),
        "joint_names": list(spec.actions),
        "control_rate": spec.control_rate,
        "strategy": config.strategy,
        "command_type": config.command_type,
    }
    if config.on_stale:
        executor_params["on_stale"] = config.on_stale
    if config.max_chunk_age > 0:
        executor_params["max_chunk_age"] = config.max_chunk_age
    if config.realtime_priority > 0:
        executor_params["realtime_priority"] = config.realtime_priority
    remaps = (("joint_commands", config.command_topic),) if config.command_topic else ()
    graph = [
        NodeSpec("policy_node", "openpi_ros.policy_node", "policy_node", policy_params, namespace=config.namespace),
        NodeSpec(
            "chunk_executor",
            "openpi_ros.chunk_executor_node",
            "chunk_executor",
            executor_params,
            remaps,
            namespace=config.namespace,
        ),
    ]
    if config.sim:
        bridge = {
            "sim": config.robot,
            "task": config.task,
            "seed": config.seed,
            "max_steps": config.max_steps,
            "image_height": config.sim_image_size,
            "image_width": config.sim_image_size,
            "camera_rate": float(policy_params["rate"]),
            "real_time_factor": config.sim_real_time_factor,
        }
        graph.insert(
            0,
            NodeSpec(
                "sim_bridge", "openpi_ros.sim_bridge_node", "sim_bridge", bridge, remaps, namespace=config.namespace
            ),
        )
    if config.synthetic:
        synthetic = {
            **common,
            "camera_names": list(spec.camera_names),
            "joint_names": list(spec.joint_names),
            "encoding": "rgb8",
        }
        camera_remaps = tuple(
            (f"{cam.name}/image_raw", cam.topic) for cam in spec.cameras if f"{cam.name}/image_raw" != cam.topic
        )
        graph.insert(
            0,
            NodeSpec(
                "synthetic_robot",
                "openpi_ros.synthetic_robot_node",
                "synthetic_robot",
                synthetic,
                camera_remaps,
                namespace=config.namespace,
            ),
        )
    return graph
