"""Simulators behind the sim bridge nodes (no ROS types here): ALOHA (gym-aloha, MuJoCo) and LIBERO (robosuite)."""
