"""Lifecycle node `policy_node`: cameras + joints in, openpi_msgs/ActionChunk out, openpi_msgs/PolicyStatus for health.

Parameters (all read in `on_configure`; the policy is loaded there, never in the constructor):

- ``robot``: a registered robot (``aloha``, ``droid``, ``libero`` or a plugin's, `openpi_core.robots`) or ``custom``
  (`openpi_ros.robots`): camera names, default topics, joint order and the policy's observation layout.
  ``camera_names``, ``camera_topics``, ``joint_names`` and ``joint_state_topics`` override the spec's (``custom``
  needs ``joint_names``).
- ``compressed_cameras``: cameras read as sensor_msgs/CompressedImage (JPEG/PNG) from ``<topic>/compressed``.
- ``image_size``: images are resized with padding to this square before the policy (openpi's clients send 224;
  0 keeps the camera size). Each camera's newest message is kept as it came and converted (decoded, resized) at
  most once, when an inference takes it or, ahead of time, when one is due before the camera's next frame
  (`openpi_ros.frames`); ``convert_on_arrival`` (default false) converts every frame as it arrives instead.
- ``policy``: ``hold`` (state echo, no model), ``checkpoint`` (``config_name`` + ``checkpoint_dir``, in-process) or
  ``remote`` (``server_url``; the API key from the file ``api_key_file`` or ``$OPENPI_SERVER_API_KEY``, never a
  parameter, which anyone on the graph could read); ``num_steps``, ``default_prompt``, ``paligemma_tokenizer`` /
  ``fast_tokenizer`` (local tokenizer copies; default: the checkpoint's); ``inference_timeout`` (s,
  one remote request) and ``connect_timeout`` (s, reaching the server at configure).
- ``prompt`` (also the ``set_prompt`` service and the ``prompt`` topic), ``rate`` (Hz), ``max_age`` / ``max_skew``
  (s), ``control_period`` (s between chunk rows; default from the robot), ``horizon`` (hold only).
- ``trigger``: ``data`` (default): the joint reading that arrives once an inference is due (every 1/``rate`` s,
  `openpi_ros.inference_schedule`) starts it, so its observation is as young as the joint rate allows; while a
  camera's newest frame is still being converted, the next reading starts it instead (one joint period later, as
  fresh an observation; only with readings at 4x ``rate`` or more), so an inference rarely waits for a conversion;
  a timer at ``rate`` starts one only when no reading came for half a period more. ``timer``: a fixed timer at
  ``rate``.
- ``rtc`` (default false): real-time chunking (`openpi_ros.rtc_planner`; pair it with the executor's ``rtc``
  strategy). Each request carries the last chunk's rows from the observation time on and the delay in rows
  (``rtc_delay_percentile`` of the recent stamp -> publish latencies, default 90), matched up to
  ``rtc_execution_horizon`` rows (0: all); a policy whose metadata has no ``rtc`` gets plain requests. A request
  also goes out as soon as the last chunk has ``delay + rtc_margin_rows`` (default 5) rows left (checked at every
  joint reading, or every control period with ``trigger: timer``); ``rate`` stays the most time between requests.
- ``autostart`` (default true): configure and activate right away when run on its own (a configure that fails ends
  the process with exit code 1); set false under a lifecycle manager.

A chunk is published only from a complete, fresh, valid observation, and only while active. Inference (with the
frames' conversion) runs on a worker thread (`InferenceWorker`): subscriptions, status and lifecycle transitions
never wait for a slow or dead policy, and a chunk whose inference was still running at deactivate is dropped. An
inference that is due while the worker is busy starts at the first reading after it finishes (never from the
reading an earlier one used).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from openpi_core.images import resize_with_pad
from openpi_core.policies import HoldPositionPolicy, PolicyClient
from openpi_core.robots.spec import RobotSpec
from openpi_msgs.msg import ActionChunk, PolicyStatus
from openpi_msgs.srv import SetPrompt
from openpi_ros.frames import FrameConverter, PendingFrame
from openpi_ros.image_messages import compressed_to_rgb, image_to_rgb
from openpi_ros.inference_schedule import InferenceSchedule
from openpi_ros.messages import from_time, make_action_chunk, to_time
from openpi_ros.node_main import NodeStartError, optional_list, run_node
from openpi_ros.observation import AssemblerConfig, ObservationAssembler, ObservationRejected
from openpi_ros.policy_runner import POLICY_SOURCES, Chunk, InferenceWorker, PolicyRunner, Status
from openpi_ros.qos import SENSOR_QOS
from openpi_ros.robots import resolve
from openpi_ros.rtc_planner import RtcConfig, RtcPlanner

logger = logging.getLogger(__name__)

API_KEY_ENV = "OPENPI_SERVER_API_KEY"

TRIGGERS = ("data", "timer")

# Frames are converted on up to this many threads (one per camera).
MAX_CONVERSION_THREADS = 4


def make_policy(params: dict[str, Any], robot: RobotSpec) -> PolicyClient:
    """The policy named by the node parameters (`policy` and the fields of that source)."""
    source = params["policy"]
    if source == "hold":
        if robot.actions != robot.joint_names:
            raise ValueError(
                f"parameter 'policy': 'hold' repeats the joint positions as actions, but robot {robot.name!r} acts "
                f"in {list(robot.actions)}; use a checkpoint or remote policy"
            )
        return HoldPositionPolicy(horizon=params["horizon"], action_dim=len(robot.joint_names))
    if source == "remote":
        from openpi_core.serving.client import WebsocketPolicyClient  # noqa: PLC0415 - imports websockets, no JAX

        if not params["server_url"]:
            raise ValueError("parameter 'server_url': required for policy 'remote' (e.g. ws://gpu-box:8000)")
        connect_timeout = float(params["connect_timeout"])
        return WebsocketPolicyClient(
            params["server_url"],
            api_key=read_api_key(params["api_key_file"]),
            timeout_s=float(params["inference_timeout"]),
            connect_timeout_s=min(connect_timeout, 5.0),
            connect_retries=max(1, round(connect_timeout / 5.0)),
        )
    if source == "checkpoint":
        # JAX and the model load only for an in-process policy.
        from openpi_core.policies.policy_config import create_trained_policy  # noqa: PLC0415
        from openpi_core.training import configs as _configs  # noqa: PLC0415

        if not params["config_name"] or not params["checkpoint_dir"]:
            raise ValueError("parameters 'config_name' and 'checkpoint_dir': required for policy 'checkpoint'")
        sample_kwargs = {"num_steps": params["num_steps"]} if params["num_steps"] > 0 else None
        policy = create_trained_policy(
            _configs.get_config(params["config_name"]),
            params["checkpoint_dir"],
            default_prompt=params["default_prompt"] or None,
            sample_kwargs=sample_kwargs,
            paligemma_tokenizer=params["paligemma_tokenizer"] or None,
            fast_tokenizer=params["fast_tokenizer"] or None,
        )
        # Compile now, at configure: the first chunk of an episode must not wait for XLA.
        start = time.perf_counter()
        policy.infer(robot.make_example())
        logger.info("warm-up inference (compilation) took %.1f s", time.perf_counter() - start)
        return policy
    raise ValueError(f"parameter 'policy': unknown source {source!r}; available: {', '.join(POLICY_SOURCES)}")


def convert_frame(decode: Callable[..., np.ndarray], msg: Any, topic: str, image_size: int) -> np.ndarray:
    """A camera message as the policy's image: decoded, resized with padding to `image_size` (0: kept as is), and
    always an array of its own (a read-only view of the message buffer, when nothing was resized, is copied).
    ImageDecodeError names the topic and field."""
    rgb = decode(msg, topic=topic)
    if image_size > 0:
        rgb = resize_with_pad(rgb, image_size, image_size)
    return rgb if rgb.flags.writeable else rgb.copy()


def read_api_key(path: str) -> str | None:
    """The policy server's API key from the file `path` (if given) or ``$OPENPI_SERVER_API_KEY``."""
    if path:
        try:
            key = Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"parameter 'api_key_file': cannot read {path}: {exc.strerror}") from None
        if not key:
            raise ValueError(f"parameter 'api_key_file': {path} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


class PolicyNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("policy_node")
        p = self.declare_parameter
        p("robot", "custom")
        for name in ("camera_names", "camera_topics", "joint_names", "joint_state_topics", "compressed_cameras"):
            p(name, Parameter.Type.STRING_ARRAY)
        for name, default in (
            ("policy", "hold"),
            ("config_name", ""),
            ("checkpoint_dir", ""),
            ("server_url", ""),
            ("api_key_file", ""),
            ("paligemma_tokenizer", ""),
            ("fast_tokenizer", ""),
            ("default_prompt", ""),
            ("prompt", ""),
            ("trigger", "data"),
        ):
            p(name, default)
        for name, default in (
            ("rate", 10.0),
            ("max_age", 0.5),
            ("max_skew", 0.2),
            ("control_period", 0.0),
            ("inference_timeout", 10.0),
            ("connect_timeout", 10.0),
            ("rtc_delay_percentile", 90.0),
        ):
            p(name, default)
        for name, default in (
            ("horizon", 50),
            ("num_steps", 0),
            ("image_size", 224),
            ("rtc_execution_horizon", 0),
            ("rtc_margin_rows", 5),
        ):
            p(name, default)
        p("rtc", False)
        p("convert_on_arrival", False)
        p("autostart", True)
        self._runner: PolicyRunner | None = None
        self._worker: InferenceWorker | None = None
        self._converter: FrameConverter | None = None
        self._schedule: InferenceSchedule | None = None
        self._last_stamps: dict[str, int] = {}  # per camera and joint topic: the newest message's stamp
        self._input_periods: dict[str, int] = {}  # ... and the interval (ns) before it
        self._deferred_reading = False  # a due reading passed while frames were converting
        self._generation = 0  # bumped on deactivate: results of older inferences are dropped
        self._subscriptions_made: list[Any] = []
        self._services_made: list[Any] = []
        self._tick_timers: list[Any] = []
        self._status_timer = None
        self._status_pub = self.create_lifecycle_publisher(PolicyStatus, "policy_status", 10)
        self._chunk_pub = self.create_lifecycle_publisher(ActionChunk, "action_chunk", 10)
        if self.get_parameter("autostart").value:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise NodeStartError("policy_node: configure failed (see the error above)")
            self.trigger_activate()

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # a bad parameter or an unloadable policy: stay unconfigured, say why
            self.get_logger().error(f"configure failed: {exc}")
            self._destroy_entities()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        assert self._runner is not None
        self._tick_timers = [self.create_timer(1.0 / self._rate, self._on_rate_timer)]
        if self._runner.rtc is not None and self._trigger == "timer":  # request early when the last chunk runs low
            self._tick_timers.append(self.create_timer(self._control_period, self._on_control_timer))
        self.get_logger().info("active: publishing chunks")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._generation += 1  # an inference still running will not publish
        self._cancel_timers()
        if self._schedule is not None:
            self._schedule.reset()
        if self._runner is not None and self._runner.rtc is not None:
            self._runner.rtc.reset()  # after reactivation the old chunk is no prefix
        self.get_logger().info("inactive: no chunks are published")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._cancel_timers()
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._cancel_timers()
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def _cancel_timers(self) -> None:
        for timer in self._tick_timers:
            self.destroy_timer(timer)
        self._tick_timers = []

    def _destroy_entities(self) -> None:
        for sub in self._subscriptions_made:
            self.destroy_subscription(sub)
        for service in self._services_made:
            self.destroy_service(service)
        if self._status_timer is not None:
            self.destroy_timer(self._status_timer)
        self._subscriptions_made, self._services_made, self._status_timer = [], [], None
        self._generation += 1
        if self._worker is not None:
            self._worker.close(timeout=0.5)
        if self._converter is not None:
            self._converter.close()
        close = getattr(self._runner.policy if self._runner else None, "close", None)
        if close is not None:
            close()
        self._runner, self._worker, self._converter, self._schedule = None, None, None, None
        self._last_stamps, self._input_periods = {}, {}

    def _configure(self) -> None:
        get = self.get_parameter
        lists = {n: tuple(optional_list(self, n)) for n in ("camera_names", "camera_topics", "joint_names")}
        robot = resolve(
            str(get("robot").value),
            cameras=lists["camera_names"],
            camera_topics=lists["camera_topics"],
            joint_names=lists["joint_names"],
            joint_state_topics=tuple(optional_list(self, "joint_state_topics")),
        )
        cameras, topics, joint_topics = robot.camera_names, robot.camera_topics, robot.joint_state_topics
        compressed = set(optional_list(self, "compressed_cameras"))
        unknown = compressed - set(cameras)
        if unknown:
            raise ValueError(f"parameter 'compressed_cameras': {sorted(unknown)} are not among {list(cameras)}")
        self._rate = float(get("rate").value)
        if not self._rate > 0:
            raise ValueError(f"parameter 'rate': must be > 0, got {self._rate}")
        self._trigger = str(get("trigger").value)
        if self._trigger not in TRIGGERS:
            raise ValueError(f"parameter 'trigger': {self._trigger!r} is not one of {list(TRIGGERS)}")
        self._convert_on_arrival = bool(get("convert_on_arrival").value)
        self._image_size = int(get("image_size").value)
        period = float(get("control_period").value)
        self._control_period = period if period > 0 else 1.0 / robot.control_rate
        params = {n: get(n).value for n in ("policy", "config_name", "checkpoint_dir", "server_url", "api_key_file")}
        params |= {
            n: get(n).value
            for n in (
                *("default_prompt", "horizon", "num_steps", "inference_timeout", "connect_timeout"),
                *("paligemma_tokenizer", "fast_tokenizer"),
            )
        }
        policy = make_policy(params, robot)
        self._robot = robot
        self._config_name = str(policy.metadata.get("config_name", params["policy"]))
        self._assembler = ObservationAssembler(
            AssemblerConfig(
                cameras, robot.joint_names, max_age=float(get("max_age").value), max_skew=float(get("max_skew").value)
            )
        )
        planner = None
        if get("rtc").value:
            planner = RtcPlanner(
                RtcConfig(
                    control_period_ns=round(self._control_period * 1e9),
                    delay_percentile=float(get("rtc_delay_percentile").value),
                    execution_horizon=int(get("rtc_execution_horizon").value),
                    margin_rows=int(get("rtc_margin_rows").value),
                )
            )
        self._converter = FrameConverter(0 if self._convert_on_arrival else min(len(cameras), MAX_CONVERSION_THREADS))
        self._schedule = InferenceSchedule(round(1e9 / self._rate))
        self._runner = PolicyRunner(
            self._assembler,
            policy,
            default_prompt=str(get("prompt").value),
            to_input=None if params["policy"] == "hold" else robot.policy_input,
            action_dim=len(robot.actions),
            rtc=planner,
            converter=self._converter,
        )
        if planner is not None and not self._runner.sends_prefix:
            self.get_logger().warning(
                f"parameter 'rtc': policy {self._config_name!r} has no real-time chunking (its metadata has no 'rtc'):"
                " requests carry no prefix; only the early trigger applies"
            )
        self._worker = InferenceWorker(self._runner, self._publish_chunk)
        for cam, topic in zip(cameras, topics, strict=True):
            if cam in compressed:
                kind, name, decode = CompressedImage, f"{topic}/compressed", compressed_to_rgb
            else:
                kind, name, decode = Image, topic, partial(image_to_rgb, copy=False)  # see convert_frame
            callback = partial(self._on_frame, cam, name, decode)
            self._subscriptions_made.append(self.create_subscription(kind, name, callback, SENSOR_QOS))
        for topic in joint_topics:
            self._subscriptions_made.append(
                self.create_subscription(JointState, topic, partial(self._on_joints, topic), SENSOR_QOS)
            )
        self._subscriptions_made.append(self.create_subscription(String, "prompt", self._on_prompt_topic, 10))
        self._services_made.append(self.create_service(SetPrompt, "set_prompt", self._on_set_prompt))
        self._status_timer = self.create_timer(1.0, self._publish_status)
        self.get_logger().info(
            f"configured: robot {robot.name}, policy {self._config_name!r} ({params['policy']}), "
            f"{len(cameras)} cameras, {len(robot.joint_names)} joints, {self._rate} Hz ({self._trigger} trigger)"
            + (", real-time chunking" if self._runner.sends_prefix else "")
        )

    # -- inputs -------------------------------------------------------------------------------------------------
    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _note_stamp(self, source: str, stamp_ns: int) -> int:
        """Record `source`'s newest stamp; returns its interval to the one before (0 while unknown)."""
        last = self._last_stamps.get(source)
        self._last_stamps[source] = stamp_ns
        if last is not None and 0 < stamp_ns - last < 1_000_000_000:
            self._input_periods[source] = stamp_ns - last
        return self._input_periods.get(source, 0)

    def _on_frame(self, camera: str, topic: str, decode: Callable[..., np.ndarray], msg: Any) -> None:
        if self._converter is None:
            return
        stamp_ns = from_time(msg.header.stamp)
        frame = PendingFrame(partial(convert_frame, decode, msg, topic, self._image_size))
        self._assembler.add_image(camera, frame, stamp_ns)
        period = self._note_stamp(camera, stamp_ns)
        if self._convert_on_arrival:
            with contextlib.suppress(ValueError):  # kept in the frame: the inference taking it is refused, says why
                frame.get()
        elif period and self._last_before_trigger(stamp_ns, period):
            self._converter.prefetch(frame)

    def _on_joints(self, topic: str, msg: JointState) -> None:
        stamp_ns = from_time(msg.header.stamp)
        try:
            self._assembler.add_joints(msg.name, msg.position, stamp_ns, source=topic)
        except ObservationRejected as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        period = self._note_stamp(topic, stamp_ns)
        if self._trigger != "data" or self._schedule is None:
            return
        if not self._due(self._now(), period // 2):
            return
        # While a camera's newest frame is still being converted, the next reading (as fresh an observation, one
        # joint period later) starts the inference instead of this one waiting for the conversion: one reading at
        # most, and only when readings come at least four times per inference period.
        soon = 0 < period <= self._schedule.period_ns // 4
        if not soon or self._deferred_reading or self._assembler.frames_converted():
            self._start_inference()
        else:
            self._deferred_reading = True

    def _last_before_trigger(self, stamp_ns: int, period_ns: int) -> bool:
        """Whether a frame stamped `stamp_ns` is its camera's last before the next inference starts: the camera's
        next frame (up to 10% late) would come after the predicted trigger. With real-time chunking's early
        trigger, also when that falls due within one camera period."""
        trigger = self._next_trigger_ns()
        if trigger is None or stamp_ns + period_ns + period_ns // 10 > trigger:
            return True
        rtc = self._runner.rtc if self._runner is not None else None
        return rtc is not None and rtc.due(self._now() + period_ns)

    def _next_trigger_ns(self) -> int | None:
        """When the next inference is expected to start (None: at once): its due time with the timer trigger; with
        the data trigger, the stamp of the first joint reading (on the grid of its topic's past readings) that
        will find it due, up to half a joint period early."""
        if self._schedule is None or self._schedule.next_due_ns is None:
            return None
        due = self._schedule.next_due_ns
        if self._trigger != "data":
            return due
        starts = []
        for topic in self._robot.joint_state_topics:
            last, period = self._last_stamps.get(topic), self._input_periods.get(topic)
            if last is None or not period:
                return due
            readings = max(0, -(-(due - period // 2 - last) // period))  # readings until the first one on time
            starts.append(last + readings * period)
        return min(starts, default=due)

    def _on_prompt_topic(self, msg: String) -> None:
        if self._runner is not None:
            self._runner.set_prompt(msg.data)

    def _on_set_prompt(self, request: SetPrompt.Request, response: SetPrompt.Response) -> SetPrompt.Response:
        try:
            assert self._runner is not None
            response.message = self._runner.set_prompt(request.prompt)
            response.success = True
        except ValueError as exc:
            response.success, response.message = False, str(exc)
        return response

    # -- outputs ------------------------------------------------------------------------------------------------
    def _due(self, now_ns: int, early_ns: int) -> bool:
        """Whether an inference is due within `early_ns`: by the rate, or (real-time chunking) by the last chunk's
        remaining rows."""
        if self._schedule is None or self._runner is None:
            return False
        rtc = self._runner.rtc
        return self._schedule.due(now_ns, early_ns) or (rtc is not None and rtc.due(now_ns + early_ns))

    def _start_inference(self) -> None:
        """Assemble an observation and hand it to the worker, while active and unless the worker is busy (then the
        next reading after it finishes starts one)."""
        if not self._tick_timers or self._runner is None or self._worker is None or self._schedule is None:
            return
        if self._worker.busy:
            return
        now = self._now()
        self._deferred_reading = False
        self._schedule.started(now)
        obs = self._runner.observe(now)
        if obs is not None:
            self._worker.submit(obs, self._generation)

    def _on_rate_timer(self) -> None:
        if self._trigger == "timer" or (self._schedule is not None and self._schedule.overdue(self._now())):
            self._start_inference()

    def _on_control_timer(self) -> None:
        runner = self._runner
        if runner is not None and runner.rtc is not None and runner.rtc.due(self._now()):
            self._start_inference()

    def _publish_chunk(self, chunk: Chunk, generation: int) -> None:
        """On the inference worker's thread (rclpy publishers are thread-safe)."""
        if generation != self._generation or self._runner is None:
            return  # deactivated (or cleaned up) while this inference ran
        msg = make_action_chunk(
            chunk.actions,
            stamp_ns=chunk.stamp_ns,
            joint_names=self._robot.actions,
            control_period=self._control_period,
            config_name=self._config_name,
            prompt=chunk.prompt,
            inference_latency=chunk.inference_latency,
            sequence=chunk.sequence,
        )
        self._chunk_pub.publish(msg)
        self._runner.record_published(chunk, self._now())

    def _publish_status(self) -> None:
        if self._runner is None:
            return
        stats, now = self._runner.stats, self._now()
        active = bool(self._tick_timers)
        msg = PolicyStatus(
            state=self._runner.status if active else Status.UNCONFIGURED,
            message=self._runner.status_message if active else "inactive (lifecycle): no chunks are published",
            chunk_rate=stats.rate(now * 1e-9),
            latency_p50=stats.percentile("latencies", 50),
            latency_p99=stats.percentile("latencies", 99),
            inference_p50=stats.percentile("inference", 50),
            dropped_observations=stats.dropped,
            published_chunks=stats.published,
        )
        msg.header.stamp = to_time(now)
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
