"""Test helper process: republishes every openpi_msgs/ActionChunk from `chunk_in` on `chunk_out`, untouched."""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from openpi_msgs.msg import ActionChunk

QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def main() -> int:
    rclpy.init()
    node = Node("chunk_echo")
    pub = node.create_publisher(ActionChunk, "chunk_out", QOS)
    node.create_subscription(ActionChunk, "chunk_in", pub.publish, QOS)
    print("chunk_echo ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
