"""Real rclpy over real loopback DDS, across processes: openpi_msgs types and the policy node."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.ros import spin_until
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from openpi_msgs.msg import ActionChunk, PolicyStatus
from openpi_msgs.srv import SetPrompt
from openpi_ros.graphs import demo_graph
from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.messages import chunk_to_array, from_time, make_action_chunk, to_time

pytestmark = pytest.mark.ros
HELPERS = Path(__file__).resolve().parent / "helpers"
DISCOVERY_TIMEOUT = 20.0


def test_action_chunk_round_trip_across_processes(ros_context, spawn):
    """Chunks published here, echoed by another process, arrive back with every field unchanged."""
    spawn([sys.executable, str(HELPERS / "chunk_echo.py"), "--ros-args", "-r", "__ns:=/echo_test"])
    node = Node("chunk_sender", context=ros_context)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(ActionChunk, "/echo_test/chunk_in", qos)
    received: list[ActionChunk] = []
    sub = node.create_subscription(ActionChunk, "/echo_test/chunk_out", received.append, qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    # Messages sent before discovery completes are lost: wait until both directions are matched.
    spin_until(
        executor,
        lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0,
        DISCOVERY_TIMEOUT,
        "discovery of the echo process",
    )
    rng = np.random.default_rng(7)
    sent = []
    for i in range(20):
        horizon, dim = int(rng.integers(1, 60)), int(rng.integers(1, 33))
        msg = make_action_chunk(
            rng.normal(size=(horizon, dim)).astype(np.float32),
            stamp_ns=time.time_ns(),
            joint_names=[f"j{k}" for k in range(dim)],
            control_period=1 / 50,
            config_name="pi0_aloha",
            prompt=f"prompt {i} ✓",
            inference_latency=0.036,
            sequence=i,
        )
        sent.append(msg)
        pub.publish(msg)
    spin_until(executor, lambda: len(received) >= len(sent), 10.0, "20 echoed chunks")
    assert received == sent
    for msg in received:
        assert chunk_to_array(msg).shape == (msg.horizon, msg.action_dim)
    executor.shutdown()
    node.destroy_node()


class GraphProbe:
    """Test-side node that feeds a policy node and records what it says."""

    def __init__(self, context: object, namespace: str, cameras: list[str], joints: list[str]) -> None:
        self.node = Node("probe", context=context)
        self.ns, self.cameras, self.joints = namespace, cameras, joints
        self.images = {c: self.node.create_publisher(Image, f"/{namespace}/{c}/image_raw", 5) for c in cameras}
        self.joint_pub = self.node.create_publisher(JointState, f"/{namespace}/joint_states", 10)
        self.chunks: list[ActionChunk] = []
        self.statuses: list[PolicyStatus] = []
        self.node.create_subscription(ActionChunk, f"/{namespace}/action_chunk", self.chunks.append, 50)
        self.node.create_subscription(PolicyStatus, f"/{namespace}/policy_status", self.statuses.append, 50)
        self.set_prompt = self.node.create_client(SetPrompt, f"/{namespace}/set_prompt")
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def publish(self, positions: np.ndarray, *, encoding: str = "rgb8", camera_age: float = 0.0) -> int:
        now = self.node.get_clock().now().nanoseconds
        rgb = np.zeros((32, 32, 3), np.uint8)
        for _cam, pub in self.images.items():
            msg = Image(**rgb_to_image_fields(rgb))
            msg.encoding = encoding if encoding != "bogus" else "yuv422_weird"
            msg.header.stamp = to_time(now - int(camera_age * 1e9))
            pub.publish(msg)
        joint = JointState(name=self.joints, position=[float(v) for v in positions])
        joint.header.stamp = to_time(now)
        self.joint_pub.publish(joint)
        return now

    def drive(self, seconds: float, positions: np.ndarray, settle: float = 0.3, **kwargs: object) -> list[ActionChunk]:
        """Publish for `seconds`; return the chunks computed from joint readings taken after the first `settle` s.

        Judging by the chunk's stamp (its joint reading's time), not by arrival, keeps chunks from the previous
        phase out; the settle window lets the switch finish (a fresh joint reading may legitimately meet the
        previous phase's good images for one tick).
        """
        start = self.node.get_clock().now().nanoseconds + int(settle * 1e9)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.publish(positions, **kwargs)
            self.executor.spin_once(timeout_sec=0.02)
        return [c for c in self.chunks if from_time(c.header.stamp) >= start]


def test_policy_node_chunks_prompt_service_and_bad_input(ros_context, spawn):
    graph = demo_graph(namespace="policy_test", rate=20.0, horizon=8)
    policy_spec = graph[1]
    params = policy_spec.parameters
    spawn(policy_spec.command())
    probe = GraphProbe(ros_context, "policy_test", list(params["camera_names"]), list(params["joint_names"]))
    spin_until(
        probe.executor,
        lambda: (
            probe.joint_pub.get_subscription_count() > 0
            and probe.set_prompt.service_is_ready()
            and probe.node.count_publishers("/policy_test/action_chunk") > 0
        ),
        DISCOVERY_TIMEOUT,
        "the policy node",
    )

    # Good data: chunks come, each row equals the joint reading they were computed from, stamped with its time.
    state = np.linspace(-1, 1, len(probe.joints)).astype(np.float32)
    good = probe.drive(1.3, state)
    assert len(good) >= 5, f"only {len(good)} chunks in 1 s at 20 Hz"
    assert all(c.prompt == "hold still" for c in good)
    for chunk in good:
        assert chunk.horizon == 8
        assert chunk.action_dim == len(probe.joints)
        assert list(chunk.joint_names) == probe.joints
        np.testing.assert_array_equal(chunk_to_array(chunk), np.broadcast_to(state, (8, len(state))))
        assert chunk.control_period == pytest.approx(0.02)
    assert [c.sequence for c in probe.chunks] == sorted(c.sequence for c in probe.chunks)

    # The prompt service takes effect on the next chunk.
    future = probe.set_prompt.call_async(SetPrompt.Request(prompt="pick up the red cube"))
    spin_until(probe.executor, future.done, 5.0, "the SetPrompt response")
    assert future.result().success
    assert future.result().message == "pick up the red cube"
    after = probe.drive(0.8, state, settle=0.0)
    assert after
    assert all(c.prompt == "pick up the red cube" for c in after)

    # A stale camera: no chunk at all, and the status says which input and why.
    probe.statuses.clear()
    assert probe.drive(1.5, state, camera_age=2.0) == []
    stale = [s for s in probe.statuses if s.state == PolicyStatus.STATE_STALE_INPUT]
    assert stale
    assert "old" in stale[-1].message
    assert "camera" in stale[-1].message

    # NaN joints: no chunk.
    bad_state = state.copy()
    bad_state[3] = np.nan
    assert probe.drive(1.0, bad_state) == []

    # An unknown image encoding: no chunk, status names the field.
    probe.statuses.clear()
    assert probe.drive(1.5, state, encoding="bogus") == []
    invalid = [s for s in probe.statuses if s.state == PolicyStatus.STATE_INVALID_INPUT]
    assert invalid
    assert "encoding" in invalid[-1].message

    # Good data again: the node recovers.
    recovered = probe.drive(1.0, state)
    assert recovered, "no chunk after good data returned"
    np.testing.assert_array_equal(chunk_to_array(recovered[-1]), np.broadcast_to(state, (8, len(state))))
    probe.executor.shutdown()
    probe.node.destroy_node()
