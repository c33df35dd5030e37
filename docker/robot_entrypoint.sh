#!/bin/bash
# Entry point of the robot image: the distro's ROS 2 and the colcon-built workspace, then the command.
set -e
# shellcheck source=/dev/null
source "/opt/ros/${ROS_DISTRO}/setup.bash"
# shellcheck source=/dev/null
source /opt/openpi-ros/ros2_ws/install/setup.bash
exec "$@"
