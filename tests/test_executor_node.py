"""The chunk executor node over real DDS: a latched e-stop across restarts, velocity joints, trajectories, shutdown.

A DROID-like arm (a velocity column, a position column) so that every safe command is visible on the wire: velocity
columns must be commanded 0, never left silent.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers.ros import Probe
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from openpi_msgs.msg import ActionChunk, ExecutorStatus
from openpi_ros.graphs import NodeSpec
from openpi_ros.messages import make_action_chunk
from openpi_ros.qos import ESTOP_QOS

pytestmark = pytest.mark.ros

NS = "exec_node"
COLUMNS = ["j1/velocity", "gripper"]
SHUTDOWN_BOUND_S = 2.0


def _spec(**params: object) -> NodeSpec:
    base = {
        "joint_names": COLUMNS,
        "control_rate": 50.0,
        "strategy": "broker",
        "command_type": "both",
        "lower_limits": [-2.0, 0.0],
        "upper_limits": [2.0, 1.0],
        "max_velocity": [1.0, 5.0],
        "stale_timeout": 0.3,
    }
    return NodeSpec(
        "chunk_executor", "openpi_ros.chunk_executor_node", "chunk_executor", {**base, **params}, namespace=NS
    )


class ArmProbe(Probe):
    def __init__(self, context: object) -> None:
        super().__init__(context, NS)
        self.commands = self.listen(JointState, "joint_commands", depth=2000)
        self.trajectories = self.listen(JointTrajectory, "joint_trajectory", depth=2000)
        self.statuses = self.listen(ExecutorStatus, "executor_status")
        self.chunk_pub = self.pub(ActionChunk, "action_chunk")
        self.joint_pub = self.pub(JointState, "joint_states")
        self.estop_pub = self.node.create_publisher(Bool, f"/{NS}/estop", ESTOP_QOS)
        self.sequence = 0

    def joints(self) -> None:
        self.joint_pub.publish(JointState(name=["j1", "gripper"], position=[0.1, 0.5]))

    def chunk(self) -> None:
        actions = np.tile([0.8, 0.9], (50, 1)).astype(np.float32)
        msg = make_action_chunk(
            actions,
            stamp_ns=self.now(),
            joint_names=COLUMNS,
            control_period=0.02,
            config_name="test",
            prompt="",
            inference_latency=0.0,
            sequence=self.sequence,
        )
        self.sequence += 1
        self.chunk_pub.publish(msg)

    def drive(self, seconds: float, chunks: bool = True) -> list[JointState]:
        """Joints at 50 Hz and (with `chunks`) a chunk every 0.1 s; returns the commands that arrived meanwhile."""
        start, ticks = len(self.commands), [0]

        def feed() -> None:
            self.joints()
            ticks[0] += 1
            if chunks and ticks[0] % 10 == 1:
                self.chunk()

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            feed()
            self.spin(0.02)
        return self.commands[start:]


def _velocities(commands: list[JointState]) -> np.ndarray:
    return np.array([m.velocity[0] for m in commands])


def _stop(proc: subprocess.Popen) -> float:
    """SIGINT; returns the seconds until exit and checks the exit status."""
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=10)
    elapsed = time.monotonic() - start
    out = proc.stdout.read() if proc.stdout else ""
    assert code == 0, out
    return elapsed


def test_estop_latched_across_restart_velocity_stops_and_clean_shutdown(ros_context: object, spawn: object) -> None:
    """Findings 1, 2, 9, 10: an e-stop published once, before the executor even started, holds it through a
    restart; velocity columns get 0 (not silence) on e-stop, stale chunks and shutdown; trajectories start on
    receipt and carry positions with the velocities; SIGINT exits 0 within the bound, last command safe."""
    probe = ArmProbe(ros_context)
    probe.estop_pub.publish(Bool(data=True))  # nobody listens yet: only TRANSIENT_LOCAL delivers it later
    proc = spawn(_spec().command())
    probe.wait(lambda: probe.statuses and probe.chunk_pub.get_subscription_count() > 0, "the executor")
    during = probe.drive(1.0)
    assert probe.statuses[-1].state == ExecutorStatus.STATE_ESTOP, probe.statuses[-1].message
    assert len(during) > 20  # e-stop: the velocity column is commanded 0 at the control rate ...
    assert np.all(_velocities(during) == 0.0)
    assert all(math.isnan(m.position[1]) for m in during)  # ... and the gripper is not commanded at all
    assert _stop(proc) < SHUTDOWN_BOUND_S

    # Restarted (as compose restarts it): still e-stopped, from the latched sample alone.
    proc = spawn(_spec().command())
    before = len(probe.statuses)
    probe.wait(lambda: len(probe.statuses) > before, "the restarted executor")
    during = probe.drive(1.0)
    assert probe.statuses[-1].state == ExecutorStatus.STATE_ESTOP
    assert np.all(_velocities(during) == 0.0)

    # Released: chunks observed after the release move the arm; a trajectory point carries positions + velocities.
    probe.estop_pub.publish(Bool(data=False))
    probe.spin(0.2)
    moving = probe.drive(1.0)
    assert probe.statuses[-1].state == ExecutorStatus.STATE_EXECUTING, probe.statuses[-1].message
    np.testing.assert_allclose(_velocities(moving)[-5:], 0.8)
    np.testing.assert_allclose([m.position[1] for m in moving[-5:]], 0.9)
    point_msg = probe.trajectories[-1]
    assert point_msg.header.stamp.sec == 0  # "start on receipt": late delivery cannot put the point in the past
    assert point_msg.header.stamp.nanosec == 0
    point = point_msg.points[0]
    assert list(point_msg.joint_names) == ["j1", "gripper"]
    np.testing.assert_allclose(point.positions, [0.1 + 0.8 * 0.02, 0.9], atol=1e-9)
    np.testing.assert_allclose(point.velocities, [0.8, 0.0])

    # Chunks stop (stale): the velocity column is stopped, the gripper held (on_stale hold).
    stale = probe.drive(1.0, chunks=False)
    assert probe.statuses[-1].state == ExecutorStatus.STATE_HOLDING
    np.testing.assert_allclose(_velocities(stale)[-10:], 0.0)
    np.testing.assert_allclose([m.position[1] for m in stale[-10:]], 0.9)

    # SIGINT while moving: the last command on the wire is a stop, within the bound.
    probe.drive(0.5)
    assert _velocities(probe.commands[-1:])[0] == pytest.approx(0.8)
    elapsed = _stop(proc)
    probe.spin(0.3)
    assert elapsed < SHUTDOWN_BOUND_S
    last = probe.commands[-1]
    assert last.velocity[0] == 0.0
    assert last.position[1] == pytest.approx(0.9)
    probe.close()


def test_an_executor_without_limits_refuses_to_start(spawn: object) -> None:
    spec = NodeSpec(
        "chunk_executor",
        "openpi_ros.chunk_executor_node",
        "chunk_executor",
        {"joint_names": ["a", "b"]},
        namespace="exec_unlimited",
    )
    proc = spawn(spec.command())
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "allow_unlimited:=true" in out
    assert "Traceback" not in out
