"""openpi_ros: ROS 2 nodes around openpi policies. ROS-free logic lives in plain classes the tests drive directly."""

__version__ = "0.1.0"
