"""Any registered robot: `ros2 launch openpi_ros robot.launch.py robot:=<name> [command_topic:=/arm/command] ...`.

Built-in (aloha, droid, libero) or from an installed plugin package (docs/robots.md); policy node +
chunk executor with that robot's spec, limits from the spec, a `limits_file` or arguments, `sim:=true` for its
simulator. `ros2 launch openpi_ros robot.launch.py --show-args` lists every argument.
"""

from openpi_ros.launch_util import robot_launch_description


def generate_launch_description():
    return robot_launch_description()
