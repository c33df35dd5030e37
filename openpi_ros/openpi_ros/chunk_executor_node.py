"""Node `chunk_executor`: openpi_msgs/ActionChunk in, joint commands out at the control rate, within safety limits.

Subscribes `action_chunk`, `joint_states` (measured positions: the first command's reference and the hold
position) and `estop` (std_msgs/Bool, latched until False). Publishes, as the `command_type` parameter says,
`joint_commands` (sensor_msgs/JointState: positions, or velocities for action names ending in ``/velocity`` as
DROID's) and/or `joint_trajectory` (trajectory_msgs/JointTrajectory, one point `control_period` ahead), and
`executor_status` (openpi_msgs/ExecutorStatus) once a second and on changes. The logic is
`openpi_ros.executor.ChunkExecutor`; this node only moves messages.
"""

from __future__ import annotations

import collections
import sys

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from openpi_msgs.msg import ActionChunk, ExecutorStatus
from openpi_ros.executor import ChunkExecutor, ChunkRejected, ExecutorConfig, SafetyLimits, Strategy
from openpi_ros.ros_util import SENSOR_QOS, chunk_to_array, from_time, optional_list, run_node, to_time

COMMAND_TYPES = ("joint_state", "joint_trajectory", "both")
VELOCITY_SUFFIX = "/velocity"


class ChunkExecutorNode(Node):
    def __init__(self) -> None:
        super().__init__("chunk_executor")
        p = self.declare_parameter
        p("joint_names", Parameter.Type.STRING_ARRAY)
        joint_names = tuple(optional_list(self, "joint_names"))
        rate = float(p("control_rate", 50.0).value)
        strategy = str(p("strategy", "blend").value)
        command_type = str(p("command_type", "joint_state").value)
        if command_type not in COMMAND_TYPES:
            raise ValueError(f"parameter 'command_type': {command_type!r} is not one of {COMMAND_TYPES}")
        try:
            strategy_enum = Strategy(strategy)
        except ValueError:
            raise ValueError(
                f"parameter 'strategy': {strategy!r} is not one of {[s.value for s in Strategy]}"
            ) from None
        if not rate > 0:
            raise ValueError(f"parameter 'control_rate': must be > 0, got {rate}")
        on_stale = str(p("on_stale", "hold").value)
        if on_stale not in ("hold", "stop"):
            raise ValueError(f"parameter 'on_stale': {on_stale!r} is not 'hold' or 'stop'")
        # Unset (the default) disables a limit; one value per joint otherwise.
        for name in ("lower_limits", "upper_limits", "max_velocity"):
            p(name, Parameter.Type.DOUBLE_ARRAY)
        limits = SafetyLimits(
            lower=tuple(optional_list(self, "lower_limits")),
            upper=tuple(optional_list(self, "upper_limits")),
            max_velocity=tuple(optional_list(self, "max_velocity")),
        )
        self._config = ExecutorConfig(
            joint_names=joint_names,
            strategy=strategy_enum,
            control_period=1.0 / rate,
            ensemble_decay=float(p("ensemble_decay", 0.01).value),
            blend_time=float(p("blend_time", 0.2).value),
            stale_timeout=float(p("stale_timeout", 0.5).value),
            max_chunk_age=float(p("max_chunk_age", 1.0).value),
            hold_on_stale=on_stale == "hold",
            limits=limits,
        )
        self._logic = ChunkExecutor(self._config)
        # Action names ending in "/velocity" (DROID) are velocity commands for the joint before the slash.
        self._is_velocity = [name.endswith(VELOCITY_SUFFIX) for name in joint_names]
        self._names = [name.removesuffix(VELOCITY_SUFFIX) for name in joint_names]
        if command_type != "joint_state" and any(self._is_velocity) and not all(self._is_velocity):
            raise ValueError(
                "parameter 'command_type': joint_trajectory needs all-position or all-velocity joints; "
                f"{list(joint_names)} mixes them: use joint_state"
            )
        self._joint_state_pub = (
            self.create_publisher(JointState, "joint_commands", 10) if command_type != "joint_trajectory" else None
        )
        self._trajectory_pub = (
            self.create_publisher(JointTrajectory, "joint_trajectory", 10) if command_type != "joint_state" else None
        )
        self._status_pub = self.create_publisher(ExecutorStatus, "executor_status", 10)
        self.create_subscription(ActionChunk, "action_chunk", self._on_chunk, 10)
        self.create_subscription(JointState, "joint_states", self._on_joints, SENSOR_QOS)
        self.create_subscription(Bool, "estop", self._on_estop, 10)
        self._publish_times: collections.deque[int] = collections.deque(maxlen=500)
        self._last_state = self._logic.state
        self.create_timer(self._config.control_period, self._tick)
        self.create_timer(1.0, self._publish_status)
        self.get_logger().info(
            f"executing {len(joint_names)} joints at {rate} Hz, strategy {strategy}, on stale: {on_stale}, "
            f"limits: {'position ' if limits.lower or limits.upper else ''}"
            f"{'velocity' if limits.max_velocity else ''}"
        )

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            actions = chunk_to_array(msg)
            self._logic.add_chunk(
                actions,
                stamp_ns=from_time(msg.header.stamp),
                control_period=msg.control_period,
                joint_names=list(msg.joint_names),
                now_ns=self._now(),
            )
        except (ChunkRejected, ValueError) as exc:
            self.get_logger().warning(f"chunk {msg.sequence} rejected: {exc}", throttle_duration_sec=1.0)
            self._logic.message = f"chunk {msg.sequence} rejected: {exc}"
            self._publish_status()

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.name) == len(msg.position):
            self._logic.update_measured(list(msg.name), list(msg.position))

    def _on_estop(self, msg: Bool) -> None:
        self._logic.set_estop(bool(msg.data), self._now())
        self.get_logger().warning("e-stop ENGAGED" if msg.data else "e-stop released")
        self._publish_status()

    def _tick(self) -> None:
        now = self._now()
        command = self._logic.step(now)
        if command is not None:
            self._publish_command(command, now)
        if self._logic.state != self._last_state:
            self._last_state = self._logic.state
            self._publish_status()

    def _publish_command(self, command: np.ndarray, now: int) -> None:
        values = [float(x) for x in command]
        nan = float("nan")
        if self._joint_state_pub is not None:
            msg = JointState(name=self._names)
            if any(self._is_velocity):  # velocity joints in `velocity`, position joints in `position`, NaN elsewhere
                msg.position = [nan if v else x for x, v in zip(values, self._is_velocity, strict=True)]
                msg.velocity = [x if v else nan for x, v in zip(values, self._is_velocity, strict=True)]
            else:
                msg.position = values
            msg.header.stamp = to_time(now)
            self._joint_state_pub.publish(msg)
        if self._trajectory_pub is not None:
            period_ns = round(self._config.control_period * 1e9)
            point = JointTrajectoryPoint(time_from_start=Duration(sec=period_ns // 10**9, nanosec=period_ns % 10**9))
            if all(self._is_velocity):
                point.velocities = values
            else:
                point.positions = values
            traj = JointTrajectory(joint_names=self._names, points=[point])
            traj.header.stamp = to_time(now)
            self._trajectory_pub.publish(traj)
        self._publish_times.append(now)

    def _publish_status(self) -> None:
        now = self._now()
        times = np.array([t for t in self._publish_times if now - t <= 5 * 10**9], dtype=np.int64)
        rate, jitter50, jitter99 = 0.0, float("nan"), float("nan")
        if times.size >= 3:
            periods = np.diff(times) * 1e-9
            rate = (times.size - 1) / ((times[-1] - times[0]) * 1e-9)
            deviation = np.abs(periods - self._config.control_period)
            jitter50, jitter99 = float(np.median(deviation)), float(np.percentile(deviation, 99))
        counters = self._logic.counters
        msg = ExecutorStatus(
            state=int(self._logic.state),
            message=self._logic.message,
            command_rate=float(rate),
            jitter_p50=jitter50,
            jitter_p99=jitter99,
            chunks_received=counters.chunks_received,
            chunks_rejected=counters.chunks_rejected,
            commands_published=counters.commands,
            commands_clamped=counters.clamped,
        )
        msg.header.stamp = to_time(now)
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(ChunkExecutorNode, args)


if __name__ == "__main__":
    sys.exit(main())
