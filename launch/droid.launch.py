"""DROID robot: `ros2 launch openpi_ros droid.launch.py [policy:=remote server_url:=ws://gpu:8000] [prompt:=...] ...`.

Policy node + chunk executor with the DROID profile and safety defaults (`openpi_ros.graphs.robot_graph`);
`ros2 launch openpi_ros droid.launch.py --show-args` lists every argument.
"""

from openpi_ros.launch_util import robot_launch_description


def generate_launch_description():
    return robot_launch_description("droid")
