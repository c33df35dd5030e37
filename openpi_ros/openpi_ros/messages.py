"""Message conversions: builtin_interfaces/Time <-> integer nanoseconds, openpi_msgs/ActionChunk <-> arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time

from openpi_msgs.msg import ActionChunk

__all__ = ["chunk_to_array", "from_time", "make_action_chunk", "to_time"]


def to_time(stamp_ns: int) -> Time:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def from_time(stamp: Time) -> int:
    """builtin_interfaces/Time as integer nanoseconds (exact; float seconds would lose ~240 ns at epoch scale)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def make_action_chunk(
    actions: np.ndarray,
    *,
    stamp_ns: int,
    joint_names: Sequence[str],
    control_period: float,
    config_name: str,
    prompt: str,
    inference_latency: float,
    sequence: int,
) -> ActionChunk:
    actions = np.ascontiguousarray(actions, dtype=np.float32)
    if actions.ndim != 2:
        raise ValueError(f"actions: expected [horizon, action_dim], got shape {actions.shape}")
    if joint_names and len(joint_names) != actions.shape[1]:
        raise ValueError(f"joint_names: {len(joint_names)} names for action_dim {actions.shape[1]}")
    msg = ActionChunk()
    msg.header.stamp = to_time(stamp_ns)
    msg.joint_names = list(joint_names)
    msg.horizon, msg.action_dim = int(actions.shape[0]), int(actions.shape[1])
    msg.actions = actions.ravel()  # rclpy float32[] fields accept numpy float32 arrays without a copy to list
    msg.control_period = float(control_period)
    msg.config_name = config_name
    msg.prompt = prompt
    msg.inference_latency = float(inference_latency)
    msg.sequence = int(sequence)
    return msg


def chunk_to_array(msg: ActionChunk) -> np.ndarray:
    """The chunk's actions as float32 [horizon, action_dim]; raises ValueError naming the field on mismatch."""
    actions = np.asarray(msg.actions, dtype=np.float32)
    if actions.size != msg.horizon * msg.action_dim:
        raise ValueError(
            f"actions: {actions.size} values, expected horizon*action_dim = {msg.horizon * msg.action_dim}"
        )
    if msg.joint_names and len(msg.joint_names) != msg.action_dim:
        raise ValueError(f"joint_names: {len(msg.joint_names)} names for action_dim {msg.action_dim}")
    return actions.reshape(msg.horizon, msg.action_dim)
