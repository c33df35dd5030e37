"""Synthetic robot + policy node: `ros2 launch openpi_ros demo.launch.py [namespace:=demo] [rate:=10.0]`.

The node graph itself lives in `openpi_ros.graphs.demo_graph`, which the tests also start process by process.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription
from openpi_ros.graphs import demo_graph
from openpi_ros.launch_util import nodes_from_specs

ARGUMENTS = {
    "namespace": ("demo", "namespace of every node and topic"),
    "rate": ("10.0", "policy inference rate in Hz"),
    "horizon": ("50", "actions per chunk"),
    "prompt": ("hold still", "language instruction"),
}


def _nodes(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    graph = demo_graph(
        namespace=value["namespace"], rate=float(value["rate"]), horizon=int(value["horizon"]), prompt=value["prompt"]
    )
    return nodes_from_specs(graph)


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, (default, desc) in ARGUMENTS.items()
        ]
        + [OpaqueFunction(function=_nodes)]
    )
