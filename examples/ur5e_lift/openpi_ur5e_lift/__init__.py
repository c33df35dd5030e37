"""openpi-ros robot plugin: a UR5e with a gripper (robosuite Lift). The robot is `robot.ROBOT`."""
