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

from openpi_ros.synthetic import SyntheticRobotConfig

__all__ = ["NodeSpec", "demo_graph"]


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
