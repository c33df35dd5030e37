"""LIBERO in simulation: `ros2 launch openpi_ros libero_sim.launch.py policy:=remote server_url:=ws://gpu:8000`.

Policy node + chunk executor with the LIBERO profile (end-effector deltas, limits [-1, 1], stop on stale chunks)
on sim time; the LIBERO bridge (`sim_bridge`) publishes the cameras and state and applies the commands.
"""

from openpi_ros.launch_util import robot_launch_description


def generate_launch_description():
    return robot_launch_description(
        "libero",
        defaults={"sim": "true", "policy": "remote", "server_url": "ws://127.0.0.1:8000"},
    )
