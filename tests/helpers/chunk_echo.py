"""Test helper process: republishes every openpi_msgs/ActionChunk from `chunk_in` on `chunk_out`, untouched."""

from __future__ import annotations

import sys

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from openpi_msgs.msg import ActionChunk
from openpi_ros.node_main import run_node

QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def make_echo() -> Node:
    node = Node("chunk_echo")
    pub = node.create_publisher(ActionChunk, "chunk_out", QOS)
    node.create_subscription(ActionChunk, "chunk_in", pub.publish, QOS)
    return node


if __name__ == "__main__":
    sys.exit(run_node(make_echo))
