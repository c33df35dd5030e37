"""The robot node graphs over real DDS, process by process: policy node (lifecycle), chunk executor, safety.

These are the graphs `launch/aloha.launch.py` and `launch/droid.launch.py` start (`openpi_ros.graphs.robot_graph`);
where `ros2 launch` exists, `openpi_ros/test/test_launch_*.py` start them through launch_testing instead.
"""

from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest
from helpers.ros import Probe
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool

from openpi_core.robots import registry
from openpi_msgs.msg import ActionChunk, ExecutorStatus, PolicyStatus
from openpi_ros.graphs import NodeSpec, RobotGraphConfig, robot_graph
from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.messages import chunk_to_array, from_time, make_action_chunk, to_time

pytestmark = pytest.mark.ros


def _start(spawn: object, graph: list[NodeSpec]) -> None:
    for spec in graph:
        spawn(spec.command())


# -- the ALOHA graph with a synthetic robot: commands at the control rate, inside the limits ---------------------
def test_aloha_graph_commands_arrive_at_the_control_rate(ros_context: object, spawn: object) -> None:
    config = RobotGraphConfig(robot="aloha", namespace="aloha_graph", synthetic=True, rate=10.0, image_size=64)
    _start(spawn, robot_graph(config))
    probe = Probe(ros_context, "aloha_graph")
    commands = probe.listen(JointState, "joint_commands", depth=500)
    measured = probe.listen(JointState, "joint_states", depth=500)
    statuses = probe.listen(ExecutorStatus, "executor_status")
    probe.wait(lambda: len(commands) >= 50, "50 commands from the ALOHA graph", timeout=60.0)
    start = len(commands)
    probe.spin(3.0)
    window = probe.arrivals["joint_commands"][start:]
    rate = (len(window) - 1) / (window[-1] - window[0])
    assert 40.0 <= rate <= 55.0, f"commands at {rate:.1f} Hz, expected 50"
    aloha = registry.get("aloha")
    lower, upper = np.array(aloha.limits.lower), np.array(aloha.limits.upper)
    names = list(aloha.joint_names)
    for msg in commands[start:]:
        assert list(msg.name) == names
        position = np.array(msg.position)
        assert np.all(np.isfinite(position))
        assert np.all(position >= lower - 1e-9)
        assert np.all(position <= upper + 1e-9)
    # The hold policy repeats the measured joints: commands follow the synthetic robot's slow sine waves.
    last_cmd = np.array(commands[-1].position)
    last_joints = np.array(measured[-1].position)
    assert np.max(np.abs(last_cmd - last_joints)) < 0.15
    steps = np.abs(np.diff([np.array(m.position) for m in commands[start:]], axis=0))
    assert steps.max() < 3.0 * 0.04 + 1e-6  # never more than max_velocity x two control periods
    assert statuses
    assert statuses[-1].state == ExecutorStatus.STATE_EXECUTING
    assert statuses[-1].commands_published > 0
    probe.close()


# -- the chunk executor alone: safety over DDS ------------------------------------------------------------------------
def _chunk(actions: np.ndarray, names: list[str], stamp_ns: int, sequence: int) -> ActionChunk:
    return make_action_chunk(
        actions.astype(np.float32),
        stamp_ns=stamp_ns,
        joint_names=names,
        control_period=0.02,
        config_name="test",
        prompt="",
        inference_latency=0.0,
        sequence=sequence,
    )


def test_executor_limits_watchdog_and_estop(ros_context: object, spawn: object) -> None:
    names = ["j0", "j1"]
    spec = NodeSpec(
        "chunk_executor",
        "openpi_ros.chunk_executor_node",
        "chunk_executor",
        {
            "joint_names": names,
            "control_rate": 50.0,
            "strategy": "broker",
            "on_stale": "hold",
            "stale_timeout": 0.3,
            "lower_limits": [-1.0, -1.0],
            "upper_limits": [1.0, 1.0],
            "max_velocity": [2.5, 2.5],  # 0.05 per 20 ms
            "estop_grace": 0.0,  # no latched e-stop here: the start-up wait is tests/test_executor_node.py's
        },
        namespace="exec_test",
    )
    spawn(spec.command())
    probe = Probe(ros_context, "exec_test")
    commands = probe.listen(JointState, "joint_commands", depth=1000)
    statuses = probe.listen(ExecutorStatus, "executor_status")
    chunk_pub, joints_pub, estop_pub = (
        probe.pub(ActionChunk, "action_chunk"),
        probe.pub(JointState, "joint_states"),
        probe.pub(Bool, "estop"),
    )
    probe.wait(
        lambda: chunk_pub.get_subscription_count() > 0 and joints_pub.get_subscription_count() > 0 and statuses,
        "the executor",
    )
    probe.spin(0.1)  # stamps after the executor's start
    sequence = iter(range(1000))

    def send(actions: np.ndarray, names_: list[str] = names) -> None:
        chunk_pub.publish(_chunk(actions, names_, probe.now(), next(sequence)))

    # No measured position yet: a chunk is not executed (its first step could jump).
    send(np.full((50, 2), 0.5))
    probe.spin(0.5)
    assert commands == []
    assert statuses[-1].state == ExecutorStatus.STATE_WAITING_FOR_STATE

    # Measured at 0 (the robot publishes its joints at 50 Hz): the target 3.0 is clipped to the limit 1.0 and
    # approached at <= 0.05 per tick.
    measured = [0.0, 0.0]

    def joints() -> None:
        joints_pub.publish(JointState(name=names, position=measured))

    def feed() -> None:
        joints()
        if probe.now() % 200_000_000 < 20_000_000:  # a fresh chunk about every 0.2 s
            send(np.full((50, 2), 3.0))

    probe.spin(0.3, every=joints)
    probe.spin(1.2, every=feed)
    values = np.array([m.position for m in commands])
    assert len(values) > 20
    assert values.max() <= 1.0 + 1e-9
    assert np.abs(np.diff(values, axis=0)).max() <= 0.1 + 1e-9  # <= max_velocity * 2 periods (late ticks)
    assert values[0].max() <= 0.05 + 1e-9
    np.testing.assert_allclose(values[-1], [1.0, 1.0])
    measured = [1.0, 1.0]

    # A NaN chunk and a chunk for other joints: rejected, the executor holds what it had.
    before = len(commands)
    send(np.full((50, 2), np.nan))
    probe.spin(0.15, every=joints)
    send(np.zeros((50, 2)), ["x", "y"])
    probe.spin(0.6, every=joints)
    assert all(np.allclose(m.position, [1.0, 1.0]) for m in commands[before:])
    assert statuses[-1].chunks_rejected >= 2
    assert any("NaN" in s.message for s in statuses) or any("no column" in s.message for s in statuses)
    assert statuses[-1].state == ExecutorStatus.STATE_HOLDING

    # E-stop: nothing at all is published, and after release only a new chunk moves the arm.
    estop_pub.publish(Bool(data=True))
    probe.spin(0.3, every=joints)
    engaged = len(commands)
    send(np.full((50, 2), -1.0))
    probe.spin(0.5, every=joints)
    assert len(commands) == engaged
    assert statuses[-1].state == ExecutorStatus.STATE_ESTOP
    estop_pub.publish(Bool(data=False))
    probe.spin(0.5, every=joints)
    assert len(commands) == engaged  # released, but no chunk since
    send(np.full((50, 2), -1.0))
    probe.spin(0.3, every=joints)
    assert len(commands) > engaged
    after = np.array([m.position for m in commands[engaged:]])
    assert after[0].min() >= 1.0 - 0.05 - 1e-9  # ramps from the measured position, no jump
    assert np.all(np.diff(after, axis=0) <= 1e-9)
    probe.close()


# -- the policy node: compressed cameras, several joint topics, bad data, lifecycle ----------------------------------
def _policy_spec(ns: str, **params: object) -> NodeSpec:
    base = {
        "robot": "custom",
        "camera_names": ["front", "wrist"],
        "joint_names": ["a1", "a2", "b1"],
        "joint_state_topics": ["arm_a/joint_states", "arm_b/joint_states"],
        "compressed_cameras": ["wrist"],
        "rate": 20.0,
        "horizon": 4,
        "image_size": 32,
        "max_age": 0.4,
    }
    return NodeSpec("policy_node", "openpi_ros.policy_node", "policy_node", {**base, **params}, namespace=ns)


class PolicyProbe(Probe):
    def __init__(self, context: object, ns: str) -> None:
        super().__init__(context, ns)
        self.chunks = self.listen(ActionChunk, "action_chunk")
        self.statuses = self.listen(PolicyStatus, "policy_status")
        self.front = self.pub(Image, "front/image_raw")
        self.wrist = self.pub(CompressedImage, "wrist/image_raw/compressed")
        self.arm_a = self.pub(JointState, "arm_a/joint_states")
        self.arm_b = self.pub(JointState, "arm_b/joint_states")
        ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
        assert ok
        self.jpeg = jpeg.tobytes()

    def publish(self, *, a: tuple = (0.1, 0.2), b: tuple = (0.3,), wrist: bytes | None = None, skip: str = "") -> None:
        now = self.now()
        if skip != "front":
            image = Image(**rgb_to_image_fields(np.zeros((40, 60, 3), np.uint8)))
            image.header.stamp = to_time(now)
            self.front.publish(image)
        if skip != "wrist":
            compressed = CompressedImage(format="jpeg", data=wrist if wrist is not None else self.jpeg)
            compressed.header.stamp = to_time(now)
            self.wrist.publish(compressed)
        for pub, names, values in ((self.arm_a, ["a1", "a2"], a), (self.arm_b, ["b1"], b)):
            msg = JointState(name=names[: len(values)], position=[float(v) for v in values])
            msg.header.stamp = to_time(now)
            pub.publish(msg)

    def drive(self, seconds: float, settle: float = 0.3, **kwargs: object) -> list[ActionChunk]:
        start = self.now() + int(settle * 1e9)
        self.spin(seconds, every=lambda: self.publish(**kwargs))
        return [c for c in self.chunks if from_time(c.header.stamp) >= start]

    def last_status(self, since: int) -> PolicyStatus:
        assert len(self.statuses) > since, "no policy status received"
        return self.statuses[-1]


def test_policy_node_inputs_and_bad_data(ros_context: object, spawn: object) -> None:
    spawn(_policy_spec("pn_inputs").command())
    probe = PolicyProbe(ros_context, "pn_inputs")
    probe.wait(lambda: probe.arm_b.get_subscription_count() > 0 and probe.statuses, "the policy node")

    # A raw and a JPEG camera, joints from two topics: chunks echo the assembled state.
    good = probe.drive(1.2)
    assert len(good) >= 5
    np.testing.assert_allclose(chunk_to_array(good[-1]), np.tile([0.1, 0.2, 0.3], (4, 1)), rtol=1e-6)
    assert list(good[-1].joint_names) == ["a1", "a2", "b1"]

    cases = [
        ({"wrist": b"\xff\xd8 not really a jpeg"}, PolicyStatus.STATE_INVALID_INPUT, "not a decodable JPEG"),
        ({"a": (0.1,)}, PolicyStatus.STATE_STALE_INPUT, "'a2'"),  # a2 missing from arm_a: its reading goes stale
        ({"skip": "front"}, PolicyStatus.STATE_STALE_INPUT, "camera 'front'"),  # a publisher that stopped
        ({"b": (float("nan"),)}, PolicyStatus.STATE_INVALID_INPUT, "non-finite"),
    ]
    for kwargs, state, phrase in cases:
        seen = len(probe.statuses)
        assert probe.drive(1.6, settle=0.5, **kwargs) == [], kwargs
        status = probe.last_status(seen)
        assert status.state == state, (kwargs, status.message)
        assert phrase in status.message, (kwargs, status.message)
        assert probe.drive(1.0), f"no recovery after {kwargs}"
    probe.close()


def _change_state(probe: Probe, node: str, transition: int) -> bool:
    client = probe.node.create_client(ChangeState, f"/{probe.ns}/{node}/change_state")
    probe.wait(client.service_is_ready, f"{node}/change_state")
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
    probe.wait(future.done, f"{node} transition {transition}", timeout=30.0)
    return future.result().success


def _state(probe: Probe, node: str) -> str:
    client = probe.node.create_client(GetState, f"/{probe.ns}/{node}/get_state")
    probe.wait(client.service_is_ready, f"{node}/get_state")
    future = client.call_async(GetState.Request())
    probe.wait(future.done, f"{node} state")
    return future.result().current_state.label


def test_policy_node_lifecycle(ros_context: object, spawn: object) -> None:
    spawn(_policy_spec("pn_life", autostart=False).command())
    # Configuring fails cleanly on a bad source: the node stays unconfigured and says why in its log.
    bad = _policy_spec("pn_life_bad", autostart=False, policy="remote")
    bad_proc = spawn(bad.command())
    probe = PolicyProbe(ros_context, "pn_life")
    assert _state(probe, "policy_node") == "unconfigured"
    probe.spin(0.5, every=probe.publish)
    assert probe.chunks == []
    assert _change_state(probe, "policy_node", Transition.TRANSITION_CONFIGURE)
    assert _state(probe, "policy_node") == "inactive"
    probe.spin(1.0, every=probe.publish)
    assert probe.chunks == []  # configured but inactive: nothing is published
    assert _change_state(probe, "policy_node", Transition.TRANSITION_ACTIVATE)
    assert probe.drive(1.0)
    assert _change_state(probe, "policy_node", Transition.TRANSITION_DEACTIVATE)
    assert probe.drive(1.0, settle=0.2) == []
    assert _change_state(probe, "policy_node", Transition.TRANSITION_ACTIVATE)
    assert probe.drive(1.0)
    assert _change_state(probe, "policy_node", Transition.TRANSITION_DEACTIVATE)
    assert _change_state(probe, "policy_node", Transition.TRANSITION_CLEANUP)
    assert _state(probe, "policy_node") == "unconfigured"

    bad_probe = Probe(ros_context, "pn_life_bad")
    assert not _change_state(bad_probe, "policy_node", Transition.TRANSITION_CONFIGURE)
    assert _state(bad_probe, "policy_node") == "unconfigured"
    bad_proc.send_signal(2)
    out, _ = bad_proc.communicate(timeout=20)
    assert "server_url" in out
    probe.close()
    bad_probe.close()


# -- remote policy: LIBERO graph -> policy server with a tiny model -> executor ----------------------------------------
def test_libero_graph_with_a_remote_policy_server(
    ros_context: object, spawn: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from helpers.policies import make_tiny_libero_checkpoint  # noqa: PLC0415

    from openpi_core.policies.policy_config import create_trained_policy  # noqa: PLC0415
    from openpi_core.serving.server import PolicyServer, ServerConfig  # noqa: PLC0415
    from openpi_core.serving.spec import spec_for  # noqa: PLC0415

    horizon = 20  # 1 s of LIBERO actions at 20 Hz: chunks outlive the ~0.2 s round trip on a busy 2-core box
    config, checkpoint = make_tiny_libero_checkpoint(tmp_path_factory.mktemp("remote"), horizon=horizon)
    policy = create_trained_policy(config, checkpoint, sample_kwargs={"num_steps": 2})
    server = PolicyServer(policy, ServerConfig(port=0, api_key="k"), spec=spec_for("libero")).start()
    try:
        graph = robot_graph(
            RobotGraphConfig(
                robot="libero",
                namespace="libero_remote",
                policy="remote",
                server_url=f"ws://127.0.0.1:{server.port}",
                rate=5.0,
                prompt="open the drawer",
            )
        )
        env = {**os.environ, "OPENPI_SERVER_API_KEY": "k"}
        for spec in graph:
            spawn(spec.command(), env=env)
        probe = Probe(ros_context, "libero_remote")
        chunks = probe.listen(ActionChunk, "action_chunk")
        commands = probe.listen(JointState, "joint_commands", depth=500)
        profile = registry.get("libero")
        cams = [probe.pub(Image, topic) for topic in profile.camera_topics]
        joints = probe.pub(JointState, "joint_states")
        state = np.linspace(-0.5, 0.5, 8)
        rng = np.random.default_rng(0)
        frame = Image(**rgb_to_image_fields(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)))

        def publish() -> None:
            stamp = to_time(probe.now())
            for pub in cams:
                frame.header.stamp = stamp
                pub.publish(frame)
            msg = JointState(name=list(profile.joint_names), position=list(state))
            msg.header.stamp = stamp
            joints.publish(msg)

        # Ends as soon as 20 commands are in; the deadline only bounds a broken run (the server's first answer
        # compiles, which on a loaded 2-core machine has taken most of a minute).
        deadline = time.monotonic() + 180.0
        while len(commands) < 20 and time.monotonic() < deadline:
            probe.spin(0.05, every=publish)
        assert len(chunks) >= 1, "no chunk from the remote policy"
        chunk = chunks[-1]
        assert list(chunk.joint_names) == list(profile.actions)
        assert chunk.config_name == "libero_tiny"
        assert chunk.prompt == "open the drawer"
        actions = chunk_to_array(chunk)
        assert actions.shape == (horizon, 7)
        # The tiny checkpoint's actions are 2.0 + state on the six end-effector dims (see helpers.policies).
        np.testing.assert_allclose(actions[:, :6], np.broadcast_to(2.0 + state[:6], (horizon, 6)), atol=1e-4)
        # The executor clips them to the LIBERO controller's range [-1, 1].
        assert len(commands) >= 20
        values = np.array([m.position for m in commands])
        assert values.max() <= 1.0 + 1e-9
        assert values.min() >= -1.0 - 1e-9
        assert server.stats.served >= 1
        probe.close()
    finally:
        server.stop()


class _HangingPolicy:
    """Answers with the state, except that the first call hangs until released (a wedged server)."""

    metadata: dict = {}  # noqa: RUF012

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.release.wait(30)
        return {"actions": np.tile(np.asarray(obs["state"], np.float32), (4, 1))}


def test_policy_node_deactivates_at_once_while_inference_hangs(ros_context: object, spawn: object) -> None:
    """Finding 11: the node used to run inference on its only thread, so a deactivate waited for a hung server
    (up to 30-60 s with reconnects). Now inference runs on a worker: the transition returns within 1 s, and the
    answer that finally comes back is not published."""
    from openpi_core.serving.server import PolicyServer, ServerConfig  # noqa: PLC0415

    policy = _HangingPolicy()
    with PolicyServer(policy, ServerConfig(port=0)) as server:
        spawn(_policy_spec("pn_hang", policy="remote", server_url=f"ws://127.0.0.1:{server.port}").command())
        probe = PolicyProbe(ros_context, "pn_hang")
        probe.wait(lambda: probe.arm_b.get_subscription_count() > 0 and probe.statuses, "the policy node")
        deadline = time.monotonic() + 20
        while not policy.entered.is_set() and time.monotonic() < deadline:
            probe.spin(0.05, every=probe.publish)
        assert policy.entered.is_set(), "no inference reached the server"
        probe.spin(0.3, every=probe.publish)  # statuses and subscriptions keep running meanwhile
        start = time.monotonic()
        assert _change_state(probe, "policy_node", Transition.TRANSITION_DEACTIVATE)
        assert time.monotonic() - start < 1.0
        policy.release.set()
        probe.spin(1.0, every=probe.publish)
        assert probe.chunks == []  # the hung inference's answer arrived after deactivate: dropped
        assert _change_state(probe, "policy_node", Transition.TRANSITION_ACTIVATE)
        assert probe.drive(1.5), "no chunk after reactivating"
        probe.close()


class _RecordingPolicy:
    """Answers with the state after `delay` s; records when each request came and which reading it carried."""

    metadata: dict = {}  # noqa: RUF012

    def __init__(self) -> None:
        self.delay = 0.0
        self.calls: list[tuple[float, float]] = []  # (monotonic entry time, state[0])

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        state = np.asarray(obs["state"], np.float32)
        self.calls.append((time.monotonic(), float(state[0])))
        time.sleep(self.delay)
        return {"actions": np.tile(state, (4, 1))}


def test_policy_node_data_trigger_uses_each_reading_once_and_fresh(ros_context: object, spawn: object) -> None:
    """Inference is started by the joint reading that arrives when one is due: readings slower than the rate each
    start exactly one inference (the timer fallback adds none from an old reading); with an inference slower than
    the rate, the next one starts from a reading that arrived after it, never twice from one, never from a reading
    queued while it ran."""
    from openpi_core.serving.server import PolicyServer, ServerConfig  # noqa: PLC0415

    policy = _RecordingPolicy()
    with PolicyServer(policy, ServerConfig(port=0)) as server:
        spec = _policy_spec("pn_trigger", policy="remote", server_url=f"ws://127.0.0.1:{server.port}", rate=10.0)
        spawn(spec.command())
        probe = PolicyProbe(ros_context, "pn_trigger")
        probe.wait(lambda: probe.arm_b.get_subscription_count() > 0 and probe.statuses, "the policy node")
        published: dict[float, float] = {}  # reading id (joint a1) -> monotonic publish time
        next_publish = 0.0

        def publish(interval: float) -> None:
            nonlocal next_publish
            if time.monotonic() >= next_publish:
                reading = float(len(published) + 1)  # exact in float32
                published[reading] = time.monotonic()
                probe.publish(a=(reading, 0.2))
                next_publish = time.monotonic() + interval

        probe.wait(lambda: (publish(0.02), policy.calls)[1], "the first inference", timeout=30)
        # Readings every 0.25 s into a 10 Hz node: one inference per reading, each from its own reading.
        probe.spin(0.5, every=lambda: publish(0.25))
        first = len(published)
        probe.spin(3.0, every=lambda: publish(0.25))
        probe.spin(0.3)  # the last reading's answer
        calls = [(entry, reading) for entry, reading in policy.calls if reading > first]
        sent = [reading for reading in published if reading > first]
        assert [reading for _, reading in calls] == sent
        ages = sorted(entry - published[reading] for entry, reading in calls)
        assert ages[len(ages) // 2] < 0.04, f"observation ages at inference {ages}: not started by the reading"

        # An inference slower than the rate, readings at 50 Hz.
        policy.delay = 0.25
        probe.spin(0.6, every=lambda: publish(0.02))
        start = len(policy.calls)
        probe.spin(3.0, every=lambda: publish(0.02))
        calls = policy.calls[start:]
        assert len(calls) >= 5
        readings = [reading for _, reading in calls]
        assert readings == sorted(set(readings)), "a reading was used twice or out of order"
        ages = [entry - published[reading] for entry, reading in calls]
        assert max(ages) < 0.2, f"observation ages at inference {ages}: one waited out an inference (0.25 s)"
        probe.close()


def test_policy_node_exits_nonzero_when_the_server_is_unreachable(spawn: object) -> None:
    """Finding 11: with a dead server the node used to idle forever and exit 0."""
    spec = _policy_spec("pn_dead", policy="remote", server_url="ws://127.0.0.1:9", connect_timeout=1.0)
    proc = spawn(spec.command())
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "cannot connect to policy server ws://127.0.0.1:9" in out
