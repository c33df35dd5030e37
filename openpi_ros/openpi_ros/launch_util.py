"""Turn `openpi_ros.graphs` into launch descriptions. Imports `launch`/`launch_ros`, so it needs a full ROS 2 install
(the robot Docker image); the graphs themselves are plain Python that the tests start process by process here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openpi_ros.graphs import NodeSpec, RobotGraphConfig, robot_graph

__all__ = ["nodes_from_specs", "robot_launch_description"]


def nodes_from_specs(specs: list[NodeSpec]) -> list[Any]:
    from launch_ros.actions import Node  # noqa: PLC0415 - only on a full ROS 2 install

    return [
        Node(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace,
            parameters=[dict(spec.parameters)],
            remappings=list(spec.remappings),
            output="screen",
        )
        for spec in specs
    ]


def robot_launch_description(robot: str = "", *, defaults: dict[str, str] | None = None) -> Any:
    """A LaunchDescription with one argument per `RobotGraphConfig` field (`ros2 launch ... -s` lists them);
    `robot` is the default of the ``robot`` argument ('' : `RobotGraphConfig`'s)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction  # noqa: PLC0415
    from launch.substitutions import LaunchConfiguration  # noqa: PLC0415

    from launch import LaunchDescription  # noqa: PLC0415

    arguments = RobotGraphConfig.arguments()
    overrides = {**({"robot": robot} if robot else {}), **(defaults or {})}

    def _nodes(context: Any) -> list[Any]:
        values = {name: LaunchConfiguration(name).perform(context) for name in arguments}
        return nodes_from_specs(robot_graph(RobotGraphConfig.from_strings(values)))

    declared: list[Any] = [
        DeclareLaunchArgument(name, default_value=overrides.get(name, default), description=description)
        for name, (default, description) in arguments.items()
    ]
    action: Callable[[Any], list[Any]] = _nodes
    return LaunchDescription([*declared, OpaqueFunction(function=action)])
