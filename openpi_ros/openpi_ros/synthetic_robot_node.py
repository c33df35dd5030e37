"""Node `synthetic_robot`: publishes synthetic cameras (sensor_msgs/Image) and joints (sensor_msgs/JointState)."""

from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.node_main import run_node
from openpi_ros.synthetic import SyntheticRobot, SyntheticRobotConfig


class SyntheticRobotNode(Node):
    def __init__(self) -> None:
        super().__init__("synthetic_robot")
        defaults = SyntheticRobotConfig()
        cameras = self.declare_parameter("camera_names", list(defaults.camera_names)).value
        joints = self.declare_parameter("joint_names", list(defaults.joint_names)).value
        height = self.declare_parameter("image_height", defaults.image_height).value
        width = self.declare_parameter("image_width", defaults.image_width).value
        camera_rate = self.declare_parameter("camera_rate", 30.0).value
        joint_rate = self.declare_parameter("joint_rate", 50.0).value
        self._encoding = self.declare_parameter("encoding", "rgb8").value
        self._robot = SyntheticRobot(
            SyntheticRobotConfig(
                camera_names=tuple(cameras), joint_names=tuple(joints), image_height=height, image_width=width
            )
        )
        self._joint_names = list(joints)
        self._image_pubs = [self.create_publisher(Image, f"{cam}/image_raw", 5) for cam in cameras]
        self._frame_ids = [f"{cam}_optical_frame" for cam in cameras]
        self._joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self._t0 = self.get_clock().now().nanoseconds * 1e-9
        self.create_timer(1.0 / camera_rate, self._publish_images)
        self.create_timer(1.0 / joint_rate, self._publish_joints)
        self.get_logger().info(
            f"publishing {len(cameras)} cameras {width}x{height} {self._encoding} at {camera_rate} Hz "
            f"and {len(joints)} joints at {joint_rate} Hz"
        )

    def _publish_images(self) -> None:
        now = self.get_clock().now()
        t = now.nanoseconds * 1e-9 - self._t0
        for k, pub in enumerate(self._image_pubs):
            msg = Image(**rgb_to_image_fields(self._robot.camera_frame(k, t), self._encoding))
            msg.header.stamp = now.to_msg()
            msg.header.frame_id = self._frame_ids[k]
            pub.publish(msg)

    def _publish_joints(self) -> None:
        now = self.get_clock().now()
        msg = JointState(
            name=self._joint_names, position=self._robot.joint_positions(now.nanoseconds * 1e-9 - self._t0).tolist()
        )
        msg.header.stamp = now.to_msg()
        self._joint_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(SyntheticRobotNode, args)


if __name__ == "__main__":
    sys.exit(main())
