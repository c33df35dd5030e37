"""The policy loop without ROS: assemble an observation, call the policy, check the result, keep statistics.

`PolicyRunner.observe` (cheap, on the ROS thread) assembles a new observation or says why there is none;
`PolicyRunner.infer` (the frames' conversion, then the model or the server round trip) turns it into a checked
chunk. `InferenceWorker` runs `infer` on a thread of its own, one observation at a time, so a slow or dead policy
never blocks subscriptions, status or lifecycle transitions.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from openpi_core.errors import OpenpiError
from openpi_core.policies import PolicyClient
from openpi_ros.frames import FrameConverter
from openpi_ros.observation import ObservationAssembler, ObservationRejected, RejectReason, RobotObservation
from openpi_ros.rtc_planner import RtcPlanner

__all__ = ["Chunk", "InferenceWorker", "PolicyRunner", "RunnerStats", "Status"]

logger = logging.getLogger(__name__)


# ROS time may go backwards by this much (sim clock rounding) before it counts as a jump.
CLOCK_JUMP_TOLERANCE_NS = 1_000_000


# Where the policy node gets its policy: the state echo (no model), in-process, or a policy server.
POLICY_SOURCES = ("hold", "checkpoint", "remote")


class Status(enum.IntEnum):
    """Mirrors openpi_msgs/PolicyStatus STATE_* constants."""

    UNCONFIGURED = 0
    WAITING = 1
    RUNNING = 2
    STALE_INPUT = 3
    INVALID_INPUT = 4
    ERROR = 5


_REJECT_STATUS = {
    RejectReason.MISSING: Status.WAITING,
    RejectReason.STALE: Status.STALE_INPUT,
    RejectReason.SKEW: Status.STALE_INPUT,
    RejectReason.INVALID: Status.INVALID_INPUT,
}


@dataclasses.dataclass(frozen=True)
class Chunk:
    actions: np.ndarray  # float32 [horizon, action_dim]
    stamp_ns: int  # observation stamp
    prompt: str
    inference_latency: float
    """Seconds in the policy's `infer` (the model, or the server round trip); the frames' conversion is not in it."""
    sequence: int


@dataclasses.dataclass
class RunnerStats:
    window: int = 200
    latencies: collections.deque = dataclasses.field(default_factory=collections.deque)
    inference: collections.deque = dataclasses.field(default_factory=collections.deque)
    publish_times: collections.deque = dataclasses.field(default_factory=collections.deque)
    dropped: int = 0
    published: int = 0

    def record(self, latency: float, inference: float, now: float) -> None:
        for buf, value in ((self.latencies, latency), (self.inference, inference), (self.publish_times, now)):
            buf.append(value)
            while len(buf) > self.window:
                buf.popleft()
        self.published += 1

    def rate(self, now: float, horizon: float = 5.0) -> float:
        recent = [t for t in self.publish_times if now - t <= horizon]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def percentile(self, which: str, q: float) -> float:
        values = getattr(self, which)
        return float(np.percentile(np.fromiter(values, float), q)) if values else float("nan")


class PolicyRunner:
    def __init__(
        self,
        assembler: ObservationAssembler,
        policy: PolicyClient,
        *,
        default_prompt: str = "",
        to_input: Callable[[dict[str, np.ndarray], np.ndarray, str], dict[str, Any]] | None = None,
        action_dim: int | None = None,
        rtc: RtcPlanner | None = None,
        converter: FrameConverter | None = None,
    ) -> None:
        """`to_input(images, state, prompt)` builds the policy's observation dict (default: the generic
        ``{"images", "state", "prompt"}``); `action_dim` is the expected chunk width (default: the state size);
        `converter` converts the observation's pending frames (default: one after the other, on the caller).
        With `rtc`, every published chunk is recorded there and, when the policy's metadata says it supports
        real-time chunking, every request carries the planner's prefix of the last chunk."""
        self.assembler = assembler
        self.policy = policy
        self.rtc = rtc
        self.converter = converter or FrameConverter()
        self.sends_prefix = rtc is not None and bool(policy.metadata.get("rtc"))
        self.to_input = to_input
        self.action_dim = action_dim
        self.default_prompt = default_prompt
        self.prompt = default_prompt
        self.status = Status.WAITING
        self.status_message = "waiting for the first observation"
        self.stats = RunnerStats()
        self._sequence = 0
        self._last_stamp_ns = -1
        self._last_now_ns: int | None = None

    def set_prompt(self, prompt: str) -> str:
        if "\x00" in prompt:
            raise ValueError("prompt: contains a NUL character")
        self.prompt = prompt if prompt else self.default_prompt
        return self.prompt

    def reject(self, status: int, message: str) -> None:
        """Record why no chunk was produced this tick."""
        if status != self.status or message != self.status_message:
            logger.warning("no chunk: %s", message)
        self.status, self.status_message = status, message
        if status != Status.WAITING:
            self.stats.dropped += 1

    def observe(self, now_ns: int) -> RobotObservation | None:
        """A complete, fresh observation newer than the last one used, or None (`status` says why)."""
        if self._last_now_ns is not None and now_ns < self._last_now_ns - CLOCK_JUMP_TOLERANCE_NS:
            # The ROS clock went back (sim reset, bag loop, NTP step): inputs stamped before the jump are from the
            # future now, and "newer than the last chunk" would refuse everything until the clock caught up.
            logger.warning(
                "ROS clock jumped back %.3f s: dropping the buffered inputs", (self._last_now_ns - now_ns) / 1e9
            )
            self.assembler.clear()
            self._last_stamp_ns = -1
            if self.rtc is not None:
                self.rtc.reset()
        self._last_now_ns = now_ns
        try:
            obs: RobotObservation = self.assembler.assemble(now_ns)
        except ObservationRejected as exc:
            self.reject(_REJECT_STATUS[exc.reason], str(exc))
            return None
        if obs.stamp_ns <= self._last_stamp_ns:
            # Nothing new since the last chunk (e.g. the loop ran late and the joints have not been read since):
            # a second chunk from the same observation would only repeat the first.
            self.reject(Status.WAITING, "no new joint reading since the last chunk")
            return None
        self._last_stamp_ns = obs.stamp_ns
        return obs

    def infer(self, obs: RobotObservation) -> Chunk | None:
        """The policy's checked chunk for `obs`, or None (`status` says why). Safe to call from another thread."""
        prompt = self.prompt
        try:
            obs = dataclasses.replace(obs, images=self.converter.convert(obs.images))
        except ValueError as exc:  # a frame that could not be decoded (the message names the topic and field)
            self.reject(Status.INVALID_INPUT, str(exc))
            return None
        result = self._infer(obs, prompt)
        if result is None:
            return None
        actions, seconds = result
        chunk = Chunk(
            actions=actions, stamp_ns=obs.stamp_ns, prompt=prompt, inference_latency=seconds, sequence=self._sequence
        )
        self._sequence += 1
        self.status, self.status_message = Status.RUNNING, ""
        return chunk

    def step(self, now_ns: int) -> Chunk | None:
        """One synchronous tick: `observe` then `infer`."""
        obs = self.observe(now_ns)
        return None if obs is None else self.infer(obs)

    def _infer(self, obs: RobotObservation, prompt: str) -> tuple[np.ndarray, float] | None:
        """The policy's checked actions for `obs` and the seconds its `infer` took, or None after recording why
        there are none."""
        try:
            if self.to_input is None:
                policy_input = obs.as_policy_input(prompt)
            else:
                policy_input = self.to_input(obs.images, obs.state, prompt)
            if self.sends_prefix:
                assert self.rtc is not None
                policy_input.update(self.rtc.request(obs.stamp_ns))
            start = time.perf_counter()
            result: dict[str, Any] = self.policy.infer(policy_input)
            seconds = time.perf_counter() - start
        except ValueError as exc:
            self.reject(Status.INVALID_INPUT, f"policy rejected the observation: {exc}")
            return None
        except OpenpiError as exc:  # a remote server's refusal or a lost connection: no chunk this tick
            self.reject(Status.ERROR, f"policy: {exc}")
            return None
        except Exception as exc:  # a policy failure must never crash the node or move the robot
            logger.exception("policy raised")
            self.reject(Status.ERROR, f"policy raised {type(exc).__name__}: {exc}")
            return None
        actions = np.asarray(result.get("actions"), dtype=np.float32)
        width = self.action_dim or obs.state.shape[0]
        if actions.ndim != 2 or actions.shape[1] != width or actions.shape[0] == 0:
            self.reject(Status.ERROR, f"policy output 'actions' has shape {actions.shape}, expected [horizon, {width}]")
            return None
        if not np.all(np.isfinite(actions)):
            self.reject(Status.ERROR, "policy output 'actions' contains NaN or Inf")
            return None
        return actions, seconds

    def record_published(self, chunk: Chunk, now_ns: int) -> None:
        latency = (now_ns - chunk.stamp_ns) * 1e-9
        self.stats.record(latency, chunk.inference_latency, now_ns * 1e-9)
        if self.rtc is not None:
            self.rtc.record_chunk(chunk.actions, chunk.stamp_ns, latency)


class InferenceWorker:
    """Runs `PolicyRunner.infer` on one background thread, one observation at a time.

    `submit` hands over an observation if the worker is idle and returns at once; the chunk (if any) goes to
    `on_chunk(chunk, generation)` on the worker thread. `generation` is whatever the caller passed to `submit`:
    a lifecycle node bumps its own counter on deactivate and drops results of an older generation, so an
    inference that was still running never publishes after it. `close` waits a bounded time; a worker stuck in a
    policy call is a daemon thread and never keeps the process alive.
    """

    def __init__(self, runner: PolicyRunner, on_chunk: Callable[[Chunk, int], None]) -> None:
        self.runner = runner
        self._on_chunk = on_chunk
        self._lock = threading.Condition()
        self._job: tuple[RobotObservation, int] | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="policy-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy or self._job is not None

    def submit(self, obs: RobotObservation, generation: int) -> bool:
        with self._lock:
            if self._closed or self._busy or self._job is not None:
                return False
            self._job = (obs, generation)
            self._lock.notify()
            return True

    def close(self, timeout: float = 1.0) -> bool:
        """Stop taking work; True if the thread ended within `timeout`."""
        with self._lock:
            self._closed = True
            self._job = None
            self._lock.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._job is None and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                assert self._job is not None
                (obs, generation), self._job = self._job, None
                self._busy = True
            try:
                chunk = self.runner.infer(obs)
                if chunk is not None:
                    self._on_chunk(chunk, generation)
            except Exception:  # infer records policy errors itself; this is a bug in a callback: log, keep going
                logger.exception("inference worker")
            finally:
                with self._lock:
                    self._busy = False
