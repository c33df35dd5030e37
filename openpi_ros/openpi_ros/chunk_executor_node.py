"""Node `chunk_executor`: openpi_msgs/ActionChunk in, joint commands out at the control rate, within safety limits.

Subscribes `action_chunk`, `joint_states` (the measured positions every limit starts from) and `estop`
(std_msgs/Bool, latched until False; reliable + TRANSIENT_LOCAL, so an e-stop published before this node started or
before discovery finished still arrives: publish it with `ESTOP_QOS`; a volatile publisher is heard too). Publishes,
as `command_type` says, `joint_commands` (sensor_msgs/JointState: positions, and velocities for ``*/velocity``
columns; NaN where a column is not commanded) and/or `joint_trajectory` (trajectory_msgs/JointTrajectory stamped
0 = "start on receipt", one point `control_period` ahead with positions, plus velocities for velocity columns, so
joint_trajectory_controller accepts it without `allow_integration_in_goal_trajectories`), and `executor_status`
(openpi_msgs/ExecutorStatus) once a second and on changes.

The safety contract is `openpi_ros.executor`'s; this node moves messages, ticks on the steady clock (a stopped
`/clock` cannot silence the watchdog), and on shutdown publishes the safe command (hold position, velocity 0) first.
Without any limit it refuses to start unless `allow_unlimited:=true`. ``realtime_priority`` (default 0: off) runs
the control loop under SCHED_FIFO at that priority (1-99), so its ticks keep time on a busy machine; where that is
not permitted, a warning says so and the node runs as before.
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration as RclpyDuration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from openpi_msgs.msg import ActionChunk, ExecutorStatus
from openpi_ros.executor import (
    VELOCITY_SUFFIX,
    ChunkExecutor,
    ChunkRejected,
    Command,
    ExecutorConfig,
    SafetyLimits,
    Strategy,
)
from openpi_ros.messages import chunk_to_array, from_time, to_time
from openpi_ros.node_main import FINAL_COMMAND_ACK_S, run_node, set_realtime_priority
from openpi_ros.node_main import optional_list as _list
from openpi_ros.qos import ESTOP_QOS, ESTOP_VOLATILE_QOS, SENSOR_QOS

COMMAND_TYPES = ("joint_state", "joint_trajectory", "both")
LIMIT_PARAMETERS = ("lower_limits", "upper_limits", "max_velocity", "max_acceleration", "max_tracking_error")


def _choice(value: str, name: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"parameter '{name}': {value!r} is not one of {list(options)}")
    return value


class ChunkExecutorNode(Node):
    def __init__(self) -> None:
        super().__init__("chunk_executor")
        p = self.declare_parameter
        for name in ("joint_names", "state_joint_names", "binary_columns"):
            p(name, Parameter.Type.STRING_ARRAY)
        for name in LIMIT_PARAMETERS:  # unset (the default) disables a limit; one value per joint otherwise
            p(name, Parameter.Type.DOUBLE_ARRAY)
        joint_names = tuple(_list(self, "joint_names"))
        if not joint_names:
            raise ValueError("parameter 'joint_names': required (the chunk columns to execute)")
        rate = float(p("control_rate", 50.0).value)
        if not rate > 0:
            raise ValueError(f"parameter 'control_rate': must be > 0, got {rate}")
        strategy = _choice(str(p("strategy", "blend").value), "strategy", tuple(s.value for s in Strategy))
        command_type = _choice(str(p("command_type", "joint_state").value), "command_type", COMMAND_TYPES)
        on_stale = _choice(str(p("on_stale", "hold").value), "on_stale", ("hold", "stop"))
        limits = SafetyLimits(
            lower=tuple(_list(self, "lower_limits")),
            upper=tuple(_list(self, "upper_limits")),
            max_velocity=tuple(_list(self, "max_velocity")),
            max_acceleration=tuple(_list(self, "max_acceleration")),
            max_tracking_error=tuple(_list(self, "max_tracking_error")),
        )
        if not limits.configured and not p("allow_unlimited", False).value:
            raise ValueError(
                "no safety limits: set lower_limits/upper_limits and/or max_velocity (one value per joint), "
                "or allow_unlimited:=true to execute chunks unbounded"
            )
        state_names = tuple(_list(self, "state_joint_names")) or None
        priority = int(p("realtime_priority", 0).value)
        if priority > 0:  # before the timers, so the control loop runs on a real-time thread
            refused = set_realtime_priority(priority)
            if refused:
                self.get_logger().warning(f"parameter 'realtime_priority': SCHED_FIFO {priority} {refused}")
            else:
                self.get_logger().info(f"control loop under SCHED_FIFO priority {priority}")
        self._config = ExecutorConfig(
            joint_names=joint_names,
            state_joint_names=state_names,
            strategy=Strategy(strategy),
            control_period=1.0 / rate,
            ensemble_decay=float(p("ensemble_decay", 0.01).value),
            blend_time=float(p("blend_time", 0.2).value),
            stale_timeout=float(p("stale_timeout", 0.5).value),
            max_chunk_age=float(p("max_chunk_age", 1.0).value),
            max_future_stamp=float(p("max_future_stamp", 0.05).value),
            hold_on_stale=on_stale == "hold",
            max_state_age=float(p("max_state_age", 0.5).value),
            velocity_scale=float(p("velocity_scale", 1.0).value),
            velocity_input_bound=float(p("velocity_input_bound", 0.0).value),
            binary_columns=tuple(_list(self, "binary_columns")),
            binary_threshold=float(p("binary_threshold", 0.5).value),
            estop_heartbeat_timeout=float(p("estop_heartbeat_timeout", 0.0).value),
            estop_grace=float(p("estop_grace", 2.0).value),
            limits=limits,
        )
        self._logic = ChunkExecutor(self._config)
        self._logic.start(self._now())  # nothing observed before this process started moves the arm
        self._is_velocity = list(self._config.velocity_mask)
        self._names = [name.removesuffix(VELOCITY_SUFFIX) for name in joint_names]
        columns = zip(joint_names, self._is_velocity, self._config.measured_names, strict=True)
        unmeasured = [name for name, velocity, measured in columns if velocity and not measured]
        if command_type != "joint_state" and unmeasured:
            raise ValueError(
                "parameter 'command_type': a trajectory point needs positions, and velocity columns "
                f"{unmeasured} have no measured joint (state_joint_names)"
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
        # Both durabilities: the latched sample of a TRANSIENT_LOCAL publisher (published before we started), and
        # any volatile publisher (which a TRANSIENT_LOCAL reader alone would not match).
        # A volatile publisher is reported as incompatible with the first one; the second hears it, so say nothing.
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda _event: None)
        self.create_subscription(Bool, "estop", self._on_estop, ESTOP_QOS, event_callbacks=quiet)
        self.create_subscription(Bool, "estop", self._on_estop, ESTOP_VOLATILE_QOS)
        self._publish_times: collections.deque[int] = collections.deque(maxlen=500)
        self._last_state = self._logic.state
        self._estop_engaged: bool | None = None
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self._config.control_period, self._tick, clock=steady)
        self.create_timer(1.0, self._publish_status, clock=steady)
        enabled = [name for name in LIMIT_PARAMETERS if _list(self, name)]
        heartbeat = self._config.estop_heartbeat_timeout
        self.get_logger().info(
            f"executing {len(joint_names)} joints at {rate} Hz, strategy {strategy}, on stale: {on_stale}, "
            f"limits: {', '.join(enabled) or 'NONE (allow_unlimited)'}"
            + (f", e-stop heartbeat {heartbeat} s" if heartbeat else "")
        )

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    # -- inputs -------------------------------------------------------------------------------------------------
    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            actions = chunk_to_array(msg)
            self._logic.add_chunk(
                actions,
                stamp_ns=from_time(msg.header.stamp),
                control_period=msg.control_period,
                joint_names=list(msg.joint_names),
                now_ros_ns=self._now(),
                now_mono_ns=time.monotonic_ns(),
            )
        except (ChunkRejected, ValueError) as exc:
            self.get_logger().warning(f"chunk {msg.sequence} rejected: {exc}", throttle_duration_sec=1.0)
            self._logic.message = f"chunk {msg.sequence} rejected: {exc}"
            self._publish_status()

    def _on_joints(self, msg: JointState) -> None:
        try:
            self._logic.update_measured(list(msg.name), list(msg.position), time.monotonic_ns())
        except ValueError as exc:
            self.get_logger().warning(f"joint state ignored: {exc}", throttle_duration_sec=1.0)

    def _on_estop(self, msg: Bool) -> None:
        engaged = bool(msg.data)
        self._logic.set_estop(engaged, self._now(), time.monotonic_ns())
        if engaged != self._estop_engaged:  # the two subscriptions deliver a latched publisher's samples twice
            self._estop_engaged = engaged
            self.get_logger().warning("e-stop ENGAGED" if engaged else "e-stop released")
            self._publish_status()

    # -- outputs ------------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        now, mono = self._now(), time.monotonic_ns()
        if self._logic.awaiting_estop and self.count_publishers("estop") > 0:
            self._logic.estop_publisher_seen(mono)
        command = self._logic.step(now, mono)
        try:
            if command is not None:
                self._publish_command(command, now)
            if self._logic.state != self._last_state:
                self._last_state = self._logic.state
                self._publish_status()
        except Exception as exc:  # a publishing error must not take the safety node down
            self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=1.0)

    def publish_final_command(self) -> None:
        """Shutdown: hold the last commanded position and stop velocity joints, before teardown."""
        command = self._logic.safe_command()
        if command is None:
            return
        self._publish_command(command, self._now())
        for pub in (self._joint_state_pub, self._trajectory_pub):
            if pub is not None:
                pub.wait_for_all_acked(RclpyDuration(seconds=FINAL_COMMAND_ACK_S))

    def _publish_command(self, command: Command, now: int) -> None:
        values = [float(x) for x in command.values]
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
        if self._trajectory_pub is not None and np.all(np.isfinite(command.targets)):
            period_ns = round(self._config.control_period * 1e9)
            point = JointTrajectoryPoint(
                positions=[float(x) for x in command.targets],
                time_from_start=Duration(sec=period_ns // 10**9, nanosec=period_ns % 10**9),
            )
            if any(self._is_velocity):
                point.velocities = [x if v else 0.0 for x, v in zip(values, self._is_velocity, strict=True)]
            # Stamp 0: the controller starts the trajectory when it receives it, so late delivery cannot put the
            # point in the past (which joint_trajectory_controller drops).
            self._trajectory_pub.publish(JointTrajectory(joint_names=self._names, points=[point]))
        self._publish_times.append(time.monotonic_ns())

    def _publish_status(self) -> None:
        now, mono = self._now(), time.monotonic_ns()
        times = np.array([t for t in self._publish_times if mono - t <= 5 * 10**9], dtype=np.int64)
        rate, jitter50, jitter99 = 0.0, float("nan"), float("nan")
        if times.size >= 3 and times[-1] > times[0]:
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
            faults=counters.faults,
            clock_jumps=counters.clock_jumps,
        )
        msg.header.stamp = to_time(now)
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(ChunkExecutorNode, args)


if __name__ == "__main__":
    sys.exit(main())
