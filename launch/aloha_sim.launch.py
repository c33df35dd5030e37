"""ALOHA in simulation (gym-aloha): `ros2 launch openpi_ros aloha_sim.launch.py [task:=AlohaTransferCube-v0] ...`.

The same ALOHA policy node and chunk executor as on the robot, on sim time, with the ALOHA sim bridge in place of
the hardware.
"""

from openpi_ros.launch_util import robot_launch_description


def generate_launch_description():
    return robot_launch_description("aloha", defaults={"sim": "true"})
