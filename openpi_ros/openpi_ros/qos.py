"""QoS profiles the nodes share: sensor streams (newest only, best effort) and the latched e-stop."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

__all__ = ["ESTOP_QOS", "ESTOP_VOLATILE_QOS", "SENSOR_QOS"]

# Keep only the newest sample; best effort subscribers match both reliable and best-effort publishers.
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)

# E-stop: the last sample is kept by the publisher and delivered to subscribers that join later (a restarted
# executor, or one still in discovery). Publishers of std_msgs/Bool on `estop` should use this profile.
ESTOP_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# A TRANSIENT_LOCAL reader does not match a volatile writer, so the executor also listens with this one.
ESTOP_VOLATILE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
