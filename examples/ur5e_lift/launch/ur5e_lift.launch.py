from openpi_ros.launch_util import robot_launch_description


def generate_launch_description():
    return robot_launch_description("ur5e_lift")
