"""Node graphs per robot setup, in plain Python.

Launch files (`launch/*.launch.py`) turn these specs into `launch_ros` Node actions on a full ROS 2 install; here,
where no `ros2 launch` exists, `NodeSpec.command()` starts the very same nodes as processes over real DDS.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any

from openpi_ros.robots import ROBOTS
from openpi_ros.synthetic import SyntheticRobotConfig

__all__ = ["ROBOT_DEFAULTS", "NodeSpec", "RobotGraphConfig", "demo_graph", "robot_graph"]


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


# Safety and execution defaults per robot (each overridable by a launch argument): the chunk executor's parameters.
# ALOHA: the ViperX 300 S joint ranges (gym-aloha's vx300s MJCF), grippers normalised to [0, 1]; a measured arm
# joint 0.5 rad from its command (a re-home, a sim reset) faults; grippers are not tracked (they stall on objects).
_VX300S_LOWER = (-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158, 0.0)
_VX300S_UPPER = (3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158, 1.0)
# DROID (Franka Panda): openpi's DROID policies output normalised joint velocities (1.0 = DROID's 0.2 rad per
# 15 Hz step, i.e. 3 rad/s; the vector is bounded to max |v| <= 1 as DROID's IK solver does) and a gripper
# position binarised at 0.5 (openpi's examples/droid/main.py). Limits are the Panda's: joint ranges, velocity and
# acceleration (rad, rad/s, rad/s²); the gripper is unbounded in rate (its own controller limits it).
_PANDA_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
_PANDA_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
_PANDA_MAX_VELOCITY = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
_PANDA_MAX_ACCELERATION = (15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0)
DROID_VELOCITY_SCALE = 0.2 * 15.0
ROBOT_DEFAULTS: dict[str, dict[str, Any]] = {
    "aloha": {
        "lower_limits": _VX300S_LOWER * 2,
        "upper_limits": _VX300S_UPPER * 2,
        "max_velocity": ((3.0,) * 6 + (10.0,)) * 2,
        "max_tracking_error": ((0.5,) * 6 + (0.0,)) * 2,
        "on_stale": "hold",
        "rate": 10.0,
    },
    "droid": {
        "lower_limits": (*_PANDA_LOWER, 0.0),
        "upper_limits": (*_PANDA_UPPER, 1.0),
        "max_velocity": (*_PANDA_MAX_VELOCITY, 100.0),
        "max_acceleration": (*_PANDA_MAX_ACCELERATION, 1000.0),
        "velocity_scale": DROID_VELOCITY_SCALE,
        "velocity_input_bound": 1.0,
        "binary_columns": ("gripper",),
        "on_stale": "stop",
        "rate": 5.0,
    },
    "libero": {
        "lower_limits": (-1.0,) * 7,  # robosuite's OSC controller input range
        "upper_limits": (1.0,) * 7,
        "state_joint_names": ("",) * 7,  # end-effector deltas: no measured joint per column
        "on_stale": "stop",  # deltas must not be repeated
        "rate": 10.0,
    },
}
EXECUTOR_DEFAULT_KEYS = (
    "lower_limits",
    "upper_limits",
    "max_velocity",
    "max_acceleration",
    "max_tracking_error",
    "velocity_scale",
    "velocity_input_bound",
    "binary_columns",
    "state_joint_names",
)


@dataclasses.dataclass(frozen=True)
class RobotGraphConfig:
    """The launch arguments of `<robot>.launch.py`; every field is one (`ros2 launch ... field:=value`)."""

    robot: str = "aloha"
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
    """Chunk execution: broker | ensemble | blend."""
    command_type: str = "joint_state"
    """joint_state | joint_trajectory | both."""
    on_stale: str = ""
    """hold | stop ('' : the robot's default)."""
    max_age: float = 0.5
    image_size: int = 224
    compressed: bool = False
    """Read every camera as sensor_msgs/CompressedImage from <topic>/compressed."""
    synthetic: bool = False
    """Add a synthetic robot publishing the robot's cameras and joints (no hardware: a wiring check)."""
    sim: str = ""
    """'' (a real robot), 'aloha' or 'libero': add the sim bridge and run every node on sim time."""
    task: str = ""
    """Sim task: an ALOHA gym id (AlohaTransferCube-v0, AlohaInsertion-v0) or '<libero suite>/<task id>'."""
    seed: int = 0
    max_steps: int = 400
    sim_image_size: int = 224
    use_sim_time: bool = False

    def __post_init__(self) -> None:
        if self.robot not in ROBOTS:
            raise ValueError(f"robot: unknown {self.robot!r}; expected one of {sorted(ROBOTS)}")
        if self.policy not in ("hold", "checkpoint", "remote"):
            raise ValueError(f"policy: {self.policy!r} is not one of hold, checkpoint, remote")
        if self.sim not in ("", self.robot):
            raise ValueError(f"sim: {self.sim!r} does not simulate robot {self.robot!r}")
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
    "robot": "robot profile: aloha, droid or libero",
    "namespace": "namespace of every node and topic",
    "policy": "policy source: hold (no model), checkpoint (in-process) or remote (policy server)",
    "config_name": "training config of the checkpoint, e.g. pi05_droid (policy:=checkpoint)",
    "checkpoint_dir": "checkpoint folder: local, file:// or gs:// (policy:=checkpoint)",
    "server_url": "policy server, e.g. ws://gpu-box:8000 (policy:=remote; key from $OPENPI_SERVER_API_KEY)",
    "prompt": "language instruction",
    "rate": "policy inference rate in Hz (0: robot default)",
    "horizon": "chunk length of the hold policy",
    "strategy": "chunk execution: broker, ensemble or blend",
    "command_type": "commands as joint_state, joint_trajectory or both",
    "on_stale": "when chunks go stale: hold or stop (empty: robot default)",
    "max_age": "oldest camera/joint message used, in s",
    "image_size": "images are resized with padding to this square (0: keep)",
    "compressed": "read cameras as CompressedImage from <topic>/compressed",
    "synthetic": "add a synthetic robot (no hardware)",
    "sim": "'' for a real robot; aloha or libero adds the sim bridge (and sim time)",
    "task": "sim task: AlohaTransferCube-v0, AlohaInsertion-v0, or <libero suite>/<task id>",
    "seed": "first episode's seed (sim)",
    "max_steps": "control steps per episode (sim)",
    "sim_image_size": "square size of the sim's rendered cameras",
    "use_sim_time": "use /clock (simulation)",
}


def robot_graph(config: RobotGraphConfig) -> list[NodeSpec]:
    """Policy node + chunk executor for one robot (+ a synthetic robot with `synthetic`, a sim bridge with `sim`)."""
    profile, defaults = ROBOTS[config.robot], ROBOT_DEFAULTS[config.robot]
    common = {"use_sim_time": config.use_sim_time or bool(config.sim)}
    policy_params: dict[str, Any] = {
        **common,
        "robot": config.robot,
        "policy": config.policy,
        "config_name": config.config_name,
        "checkpoint_dir": config.checkpoint_dir,
        "server_url": config.server_url,
        "prompt": config.prompt,
        "rate": config.rate or defaults["rate"],
        "horizon": config.horizon,
        "max_age": config.max_age,
        "image_size": config.image_size,
    }
    if config.compressed:
        policy_params["compressed_cameras"] = list(profile.cameras)
    executor_params: dict[str, Any] = {
        **common,
        "joint_names": list(profile.actions),
        "control_rate": profile.control_rate,
        "strategy": config.strategy,
        "command_type": config.command_type,
        "on_stale": config.on_stale or defaults["on_stale"],
    }
    for key in EXECUTOR_DEFAULT_KEYS:
        value = defaults.get(key)
        if isinstance(value, tuple):
            executor_params[key] = [v if isinstance(v, str) else float(v) for v in value]
        elif value is not None:
            executor_params[key] = float(value)
    graph = [
        NodeSpec("policy_node", "openpi_ros.policy_node", "policy_node", policy_params, namespace=config.namespace),
        NodeSpec(
            "chunk_executor",
            "openpi_ros.chunk_executor_node",
            "chunk_executor",
            executor_params,
            namespace=config.namespace,
        ),
    ]
    if config.sim:
        bridge = {
            "sim": config.sim,
            "task": config.task,
            "seed": config.seed,
            "max_steps": config.max_steps,
            "image_height": config.sim_image_size,
            "image_width": config.sim_image_size,
            "camera_rate": float(policy_params["rate"]),
        }
        graph.insert(
            0, NodeSpec("sim_bridge", "openpi_ros.sim_bridge_node", "sim_bridge", bridge, namespace=config.namespace)
        )
    if config.synthetic:
        synthetic = {
            **common,
            "camera_names": list(profile.cameras),
            "joint_names": list(profile.joint_names),
            "encoding": "rgb8",
        }
        remaps = tuple(
            (f"{cam}/image_raw", topic)
            for cam, topic in zip(profile.cameras, profile.camera_topics, strict=True)
            if f"{cam}/image_raw" != topic
        )
        graph.insert(
            0,
            NodeSpec(
                "synthetic_robot",
                "openpi_ros.synthetic_robot_node",
                "synthetic_robot",
                synthetic,
                remaps,
                namespace=config.namespace,
            ),
        )
    return graph
