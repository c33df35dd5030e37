"""launch_testing: `aloha.launch.py synthetic:=true` brings up the graph and joint commands flow at the control rate.

Runs where ROS 2 is fully installed (`colcon test` in the robot Docker image, or `pytest` with the distro's
launch_testing). Here, where no `launch`/`launch_testing` exists, it is skipped; tests/test_ros_graph.py starts the
same graph (`openpi_ros.graphs.robot_graph`) process by process over real DDS instead.
"""

import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing", reason="launch_testing needs a full ROS 2 install (e.g. the robot Docker image)")
import launch_testing.actions
import launch_testing.asserts
import rclpy
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from sensor_msgs.msg import JointState

from launch import LaunchDescription

NAMESPACE = "launch_test_aloha"


@pytest.mark.launch_test
def generate_test_description():
    launch_file = Path(get_package_share_directory("openpi_ros")) / "launch" / "aloha.launch.py"
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={"synthetic": "true", "namespace": NAMESPACE, "image_size": "64"}.items(),
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestCommandsFlow(unittest.TestCase):
    def test_joint_commands_at_control_rate(self):
        rclpy.init()
        try:
            node = rclpy.create_node("launch_test_probe")
            arrivals = []
            node.create_subscription(
                JointState, f"/{NAMESPACE}/joint_commands", lambda _msg: arrivals.append(time.monotonic()), 100
            )
            deadline = time.monotonic() + 60.0
            while len(arrivals) < 150 and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.1)
            assert len(arrivals) >= 150, "joint commands did not flow"
            window = arrivals[-100:]
            rate = (len(window) - 1) / (window[-1] - window[0])
            assert 40.0 < rate < 55.0, f"commands at {rate:.1f} Hz"
            node.destroy_node()
        finally:
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_nodes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
