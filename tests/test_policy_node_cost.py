"""The policy node's own cost, without ROS: frames converted at most once and only when used, inference due on a
grid of periods and started by the reading that arrives when due, large buffers kept in the heap."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from functools import partial

import numpy as np
import pytest

from openpi_core.images import resize_with_pad
from openpi_core.policies import HoldPositionPolicy
from openpi_ros.dds import BUFFER_REUSE_ENV
from openpi_ros.frames import FrameConverter, PendingFrame
from openpi_ros.image_messages import ImageDecodeError, image_to_rgb, rgb_to_image_fields
from openpi_ros.inference_schedule import InferenceSchedule
from openpi_ros.observation import AssemblerConfig, ObservationAssembler
from openpi_ros.policy_runner import PolicyRunner, Status

MS = 1_000_000


class _Message:
    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)


class CountingConversion:
    """A conversion that counts its calls and takes `seconds` (so concurrent callers overlap)."""

    def __init__(self, image: np.ndarray, seconds: float = 0.0) -> None:
        self.image, self.seconds, self.calls = image, seconds, 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        time.sleep(self.seconds)
        return self.image


# -- frames -----------------------------------------------------------------------------------------------------
def test_pending_frame_converts_once_for_concurrent_callers() -> None:
    conversion = CountingConversion(np.ones((2, 2, 3), np.uint8), seconds=0.05)
    frame = PendingFrame(conversion)
    assert not frame.converted
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(frame.get())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert conversion.calls == 1
    assert frame.converted
    assert len(results) == 4
    assert all(r is results[0] for r in results)


def test_pending_frame_keeps_its_error() -> None:
    calls = []

    def bad() -> np.ndarray:
        calls.append(1)
        raise ImageDecodeError("cam/image_raw: field 'data' is empty")

    frame = PendingFrame(bad)
    for _ in range(2):
        with pytest.raises(ImageDecodeError, match="field 'data'"):
            frame.get()
    assert calls == [1]


def test_converter_converts_every_pending_frame_in_parallel_and_once() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    conversions = [CountingConversion(image, seconds=0.2) for _ in range(3)]
    converter = FrameConverter(3)
    try:
        frames = {f"cam{i}": PendingFrame(c) for i, c in enumerate(conversions)}
        converter.prefetch(frames["cam0"])  # already on its way: waited for, not converted again
        start = time.monotonic()
        out = converter.convert({**frames, "plain": image})
        elapsed = time.monotonic() - start
        assert set(out) == {"cam0", "cam1", "cam2", "plain"}
        assert all(isinstance(v, np.ndarray) for v in out.values())
        assert [c.calls for c in conversions] == [1, 1, 1]
        assert elapsed < 0.5, f"three 0.2 s conversions took {elapsed:.2f} s: not in parallel"
        converter.convert(frames)  # converted frames are reused
        assert [c.calls for c in conversions] == [1, 1, 1]
    finally:
        converter.close()


def test_prefetch_converts_in_the_background() -> None:
    conversion = CountingConversion(np.zeros((2, 2, 3), np.uint8))
    frame = PendingFrame(conversion)
    converter = FrameConverter(1)
    try:
        converter.prefetch(frame)
        deadline = time.monotonic() + 10
        while not frame.converted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert frame.converted
        assert conversion.calls == 1
    finally:
        converter.close()


def test_runner_refuses_an_observation_whose_frame_cannot_be_decoded() -> None:
    """The decode now runs at inference: a bad frame still never reaches the policy, and the status names it."""
    asm = ObservationAssembler(AssemblerConfig(("cam",), ("j0",)))
    runner = PolicyRunner(asm, HoldPositionPolicy(horizon=2))

    def bad() -> np.ndarray:
        raise ImageDecodeError("cam/image_raw/compressed: field 'data' (3 bytes) is not a decodable JPEG or PNG image")

    asm.add_image("cam", PendingFrame(bad), 10 * MS)
    asm.add_joints(["j0"], [0.5], 10 * MS)
    assert runner.step(20 * MS) is None
    assert runner.status == Status.INVALID_INPUT
    assert "not a decodable JPEG" in runner.status_message
    asm.add_joints(["j0"], [0.5], 15 * MS)
    assert runner.observe(25 * MS) is None  # the failed frame is known: refused before any new inference
    assert runner.status == Status.INVALID_INPUT
    asm.add_image("cam", PendingFrame(lambda: np.zeros((4, 4, 3), np.uint8)), 30 * MS)  # the next frame recovers
    asm.add_joints(["j0"], [0.5], 30 * MS)
    chunk = runner.step(40 * MS)
    assert chunk is not None
    assert runner.status == Status.RUNNING


def test_inference_latency_is_the_policy_call_alone() -> None:
    """The frames' conversion counts as the node's overhead, not as model time."""
    asm = ObservationAssembler(AssemblerConfig(("cam",), ("j0",)))
    runner = PolicyRunner(asm, HoldPositionPolicy(horizon=2))
    asm.add_image("cam", PendingFrame(CountingConversion(np.zeros((4, 4, 3), np.uint8), seconds=0.3)), 10 * MS)
    asm.add_joints(["j0"], [0.5], 10 * MS)
    chunk = runner.step(20 * MS)
    assert chunk is not None
    assert chunk.inference_latency < 0.1


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_image_view_shares_the_message_buffer_and_resizes_as_openpi(encoding: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    fields = rgb_to_image_fields(rgb, encoding)
    import array  # noqa: PLC0415 - rclpy delivers uint8[] as array.array

    msg = _Message(**{**fields, "data": array.array("B", fields["data"])})
    view = image_to_rgb(msg, copy=False)
    np.testing.assert_array_equal(view, rgb)
    assert not view.flags.writeable
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(resize_with_pad(view, 32, 32), resize_with_pad(rgb, 32, 32))
    owned = image_to_rgb(msg)
    assert owned.flags.writeable
    assert not np.shares_memory(owned, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize(("shape", "size"), [((32, 32, 3), 32), ((48, 64, 3), 0), ((48, 64, 3), 32)])
def test_converted_frames_are_the_policys_own(shape: tuple[int, int, int], size: int) -> None:
    """Whether or not a resize ran, the policy gets a writable array that does not alias the message."""
    from openpi_ros.policy_node import convert_frame  # noqa: PLC0415 - imports rclpy

    rgb = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    msg = _Message(**rgb_to_image_fields(rgb))
    image = convert_frame(partial(image_to_rgb, copy=False), msg, "cam/image_raw", size)
    assert image.flags.writeable
    assert not np.shares_memory(image, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(image, resize_with_pad(rgb, size, size) if size else rgb)


# -- schedule ---------------------------------------------------------------------------------------------------
def test_schedule_keeps_the_rate_on_a_grid_when_readings_trigger_it() -> None:
    """Readings every 30 ms (not a divisor of the 100 ms period): the reading nearest each grid point (up to 15 ms
    early) starts the inference, so over 10 s the rate is the configured one; restarting one period after each
    start instead would drift to one start per 90 ms."""
    period, reading = 100 * MS, 30 * MS
    schedule = InferenceSchedule(period)
    starts = []
    for now in range(0, 10_000 * MS, reading):
        if schedule.due(now, early_ns=reading // 2):
            schedule.started(now)
            starts.append(now)
    gaps = np.diff(starts)
    assert len(starts) in (100, 101)  # 0 s to 9.99 s
    assert gaps.min() >= 90 * MS
    assert gaps.max() <= 120 * MS


def test_schedule_restarts_after_a_gap_without_a_burst() -> None:
    period = 100 * MS
    schedule = InferenceSchedule(period)
    schedule.started(0)
    assert not schedule.due(50 * MS)
    assert schedule.due(95 * MS, early_ns=10 * MS)
    schedule.started(400 * MS)  # started late (the worker was busy): the grid restarts from now
    assert schedule.next_due_ns == 500 * MS
    assert not schedule.due(450 * MS)
    schedule.started(510 * MS)  # a little late: the grid is kept
    assert schedule.next_due_ns == 600 * MS


def test_schedule_overdue_and_clock_jumps() -> None:
    period = 100 * MS
    schedule = InferenceSchedule(period)
    assert schedule.due(0)  # nothing started yet
    schedule.started(1000 * MS)
    assert not schedule.overdue(1120 * MS)
    assert schedule.overdue(1160 * MS)
    assert schedule.due(10 * MS)  # the clock went back 1 s: due at once, not in a second
    schedule.started(10 * MS)
    assert schedule.next_due_ns == 110 * MS
    schedule.reset()
    assert schedule.due(0)
    with pytest.raises(ValueError, match="period_ns"):
        InferenceSchedule(0)


# -- allocator --------------------------------------------------------------------------------------------------
_FAULTS_PER_BUFFER = """
import ctypes
from openpi_ros.dds import reuse_large_buffers
applied = reuse_large_buffers()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
SIZE = 921_600  # one 480x640 rgb8 frame

def minor_faults():
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])

def rounds(n):  # three cameras' frames alive at once, then freed, as a node's receive buffers are
    for _ in range(n):
        buffers = [libc.malloc(SIZE) for _ in range(3)]
        for b in buffers:
            ctypes.memset(b, 1, SIZE)
        for b in buffers:
            libc.free(b)

rounds(5)
before = minor_faults()
rounds(50)
print(applied, (minor_faults() - before) / 150)
"""


@pytest.mark.parametrize("reuse", [True, False])
def test_large_buffers_are_reused_without_page_faults(reuse: bool) -> None:
    """glibc's defaults hand freed frame-sized buffers back to the kernel, so every new one faults its pages in
    again (~225 per 900 KB buffer); `reuse_large_buffers` (on unless OPENPI_ROS_REUSE_LARGE_BUFFERS=0) keeps them."""
    env = {**os.environ, BUFFER_REUSE_ENV: "1" if reuse else "0"}
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_BUFFER], env=env, capture_output=True, text=True, check=True
    )
    applied, faults = out.stdout.split()
    assert applied == str(reuse)
    if reuse:
        assert float(faults) < 5
    else:
        assert float(faults) > 100
