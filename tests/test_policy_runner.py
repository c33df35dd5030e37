"""Observation assembly and the policy loop without ROS: nothing reaches the robot from bad or stale data."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openpi_core.errors import InvalidObservationError
from openpi_core.policies import HoldPositionPolicy, PolicyClient
from openpi_ros.observation import AssemblerConfig, ObservationAssembler, ObservationRejected, RejectReason
from openpi_ros.policy_runner import InferenceWorker, PolicyRunner, Status

S = 1_000_000_000  # ns per s
CAMS = ("cam_high", "cam_wrist")
JOINTS = ("j0", "j1", "j2")
IMG = np.zeros((4, 4, 3), np.uint8)


def make_assembler(**kw: object) -> ObservationAssembler:
    return ObservationAssembler(AssemblerConfig(CAMS, JOINTS, max_age=0.5, max_skew=0.2, **kw))


def feed(asm: ObservationAssembler, t: int, state=(0.1, 0.2, 0.3), cams=CAMS) -> None:
    for cam in cams:
        asm.add_image(cam, IMG, t)
    asm.add_joints(list(JOINTS), list(state), t)


def test_complete_fresh_observation():
    asm = make_assembler()
    feed(asm, 10 * S)
    obs = asm.assemble(10 * S + S // 10)
    np.testing.assert_array_equal(obs.state, np.float32([0.1, 0.2, 0.3]))
    assert obs.stamp_ns == 10 * S
    assert set(obs.images) == set(CAMS)


def test_joint_order_comes_from_config_not_message():
    asm = make_assembler()
    feed(asm, S)
    asm.add_joints(["j2", "extra", "j0", "j1"], [3.0, 99.0, 1.0, 2.0], S)
    np.testing.assert_array_equal(asm.assemble(S).state, np.float32([1, 2, 3]))


@pytest.mark.parametrize(
    ("setup", "reason", "text"),
    [
        (lambda a: feed(a, S, cams=CAMS[:1]), RejectReason.MISSING, "cam_wrist"),
        (lambda a: (feed(a, S), a.add_image("cam_wrist", IMG, S - S)), RejectReason.STALE, "cam_wrist"),
        (lambda a: (feed(a, S), a.add_image("cam_high", IMG, S - 3 * S // 10)), RejectReason.SKEW, "cam_high"),
        (lambda a: feed(a, S, state=(0.0, float("nan"), 0.0)), RejectReason.INVALID, "j1"),
        (
            lambda a: (feed(a, S), a.mark_invalid("cam_high", "cam_high: field 'encoding' is 'x'")),
            RejectReason.INVALID,
            "encoding",
        ),
    ],
    ids=["missing-camera", "stale-camera", "skewed-camera", "nan-joint", "undecodable-image"],
)
def test_rejections_name_the_input(setup, reason, text):
    asm = make_assembler()
    setup(asm)
    with pytest.raises(ObservationRejected, match=text) as info:
        asm.assemble(S + S // 10)
    assert info.value.reason is reason


def test_missing_joint_and_mismatched_lengths():
    asm = make_assembler()
    feed(asm, S)
    asm2 = make_assembler()
    for cam in CAMS:
        asm2.add_image(cam, IMG, S)
    asm2.add_joints(["j0", "j1"], [0.0, 0.0], S)
    with pytest.raises(ObservationRejected, match="j2"):
        asm2.assemble(S)
    with pytest.raises(ObservationRejected, match="'position' has 2"):
        asm.add_joints(["j0", "j1", "j2"], [0.0, 0.0], S)
    with pytest.raises(ObservationRejected, match="'position' has 2"):
        asm.assemble(S)  # stays rejected until a good joint message arrives
    asm.add_joints(list(JOINTS), [0.0, 0.0, 0.0], S)
    asm.assemble(S)


def test_stale_then_recovers():
    asm = make_assembler()
    feed(asm, S)
    with pytest.raises(ObservationRejected):
        asm.assemble(2 * S)
    feed(asm, 2 * S)
    assert asm.assemble(2 * S).stamp_ns == 2 * S


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="joint_names"):
        AssemblerConfig(CAMS, ())
    with pytest.raises(ValueError, match="duplicates"):
        AssemblerConfig(("a", "a"), JOINTS)
    with pytest.raises(ValueError, match="max_age"):
        AssemblerConfig(CAMS, JOINTS, max_age=0)


class ExplodingPolicy:
    metadata: dict = {}  # noqa: RUF012

    def __init__(self, actions: object = None, exc: Exception | None = None) -> None:
        self.actions, self.exc = actions, exc

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        if self.exc:
            raise self.exc
        return {"actions": self.actions}


def test_runner_publishes_only_checked_chunks():
    asm = make_assembler()
    runner = PolicyRunner(asm, HoldPositionPolicy(horizon=4), default_prompt="fold")
    assert runner.step(S) is None
    assert runner.status == Status.WAITING
    feed(asm, S)
    chunk = runner.step(S)
    assert chunk is not None
    assert chunk.actions.shape == (4, 3)
    assert chunk.prompt == "fold"
    assert chunk.sequence == 0
    assert runner.step(S) is None  # the same observation again: nothing new to act on
    assert runner.status == Status.WAITING
    assert "no new joint reading" in runner.status_message
    assert runner.stats.dropped == 0
    feed(asm, S + 1)
    assert runner.step(S + 1).sequence == 1
    assert runner.set_prompt("") == "fold"
    assert runner.set_prompt("open") == "open"
    with pytest.raises(ValueError, match="prompt"):
        runner.set_prompt("bad\x00")

    for policy, status, text in [
        (ExplodingPolicy(actions=np.zeros((4, 2))), Status.ERROR, "shape"),
        (ExplodingPolicy(actions=np.full((4, 3), np.inf)), Status.ERROR, "NaN or Inf"),
        (ExplodingPolicy(exc=RuntimeError("cuda oom")), Status.ERROR, "cuda oom"),
        (ExplodingPolicy(exc=InvalidObservationError("state", "bad")), Status.INVALID_INPUT, "state"),
    ]:
        assert isinstance(policy, PolicyClient)
        bad = PolicyRunner(asm, policy)
        assert bad.step(S) is None
        assert bad.status == status
        assert text in bad.status_message
        assert bad.stats.dropped == 1


def test_hold_policy_validates_state():
    policy = HoldPositionPolicy(horizon=3, action_dim=2)
    out = policy.infer({"state": np.float32([1, 2])})
    np.testing.assert_array_equal(out["actions"], [[1, 2]] * 3)
    for obs, text in [
        ({}, "missing"),
        ({"state": np.zeros(3)}, "expected 2"),
        ({"state": np.float32([0, np.nan])}, "NaN"),
        ({"state": np.zeros((2, 1))}, "1-D"),
    ]:
        with pytest.raises(InvalidObservationError, match=text):
            policy.infer(obs)
    with pytest.raises(ValueError, match="horizon"):
        HoldPositionPolicy(horizon=0)


def test_runner_resumes_after_the_clock_jumps_back():
    """Finding 4: after a backwards jump (sim reset, bag loop) every observation was "not newer than the last
    chunk" until the clock caught up; the buffered inputs, stamped in the future now, are dropped too."""
    asm = make_assembler()
    runner = PolicyRunner(asm, HoldPositionPolicy(horizon=2))
    feed(asm, 100 * S)
    assert runner.step(100 * S) is not None
    assert runner.step(20 * S) is None  # jumped back 80 s: the old inputs are gone, nothing is assembled from them
    assert runner.status == Status.WAITING
    feed(asm, 20 * S)
    chunk = runner.step(20 * S)
    assert chunk is not None
    assert chunk.stamp_ns == 20 * S


def test_inference_worker_runs_one_observation_at_a_time():
    release = threading.Event()

    class Slow(HoldPositionPolicy):
        def infer(self, obs: dict) -> dict:
            release.wait(10)
            return super().infer(obs)

    asm = make_assembler()
    runner = PolicyRunner(asm, Slow(horizon=2))
    results: list[tuple[int, int]] = []
    done = threading.Event()
    worker = InferenceWorker(
        runner, lambda chunk, generation: (results.append((chunk.sequence, generation)), done.set())
    )
    feed(asm, S)
    assert worker.submit(runner.observe(S), generation=7)
    feed(asm, 2 * S)
    assert worker.busy
    assert not worker.submit(runner.observe(2 * S), generation=7)  # busy: refused, not queued
    release.set()
    assert done.wait(10)
    assert results == [(0, 7)]
    assert worker.close(timeout=5)
