"""Node `policy_node`: cameras + joints in, openpi_msgs/ActionChunk out, openpi_msgs/PolicyStatus for health.

Subscribes `<camera>/image_raw` for each camera and `joint_states`; serves `set_prompt` (openpi_msgs/SetPrompt)
and listens on `prompt` (std_msgs/String). A chunk is published only from a complete, fresh, valid observation.
"""

from __future__ import annotations

import sys
from functools import partial

from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from openpi_core.policies import HoldPositionPolicy, PolicyClient
from openpi_msgs.msg import ActionChunk, PolicyStatus
from openpi_msgs.srv import SetPrompt
from openpi_ros.images import ImageDecodeError, image_to_rgb
from openpi_ros.observation import AssemblerConfig, ObservationAssembler, ObservationRejected
from openpi_ros.policy_runner import PolicyRunner
from openpi_ros.ros_util import SENSOR_QOS, from_time, make_action_chunk, run_node, to_time
from openpi_ros.synthetic import SyntheticRobotConfig

POLICY_SOURCES = ("hold",)


def make_policy(source: str, horizon: int, action_dim: int) -> PolicyClient:
    if source == "hold":
        return HoldPositionPolicy(horizon=horizon, action_dim=action_dim)
    raise ValueError(f"parameter 'policy': unknown source {source!r}; available: {', '.join(POLICY_SOURCES)}")


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy_node")
        defaults = SyntheticRobotConfig()
        cameras = list(self.declare_parameter("camera_names", list(defaults.camera_names)).value)
        self._joint_names = list(self.declare_parameter("joint_names", list(defaults.joint_names)).value)
        rate = float(self.declare_parameter("rate", 10.0).value)
        horizon = int(self.declare_parameter("horizon", 50).value)
        self._control_period = float(self.declare_parameter("control_period", 0.02).value)
        max_age = float(self.declare_parameter("max_age", 0.5).value)
        max_skew = float(self.declare_parameter("max_skew", 0.2).value)
        prompt = str(self.declare_parameter("prompt", "").value)
        source = str(self.declare_parameter("policy", "hold").value)
        self._config_name = source

        self._assembler = ObservationAssembler(
            AssemblerConfig(tuple(cameras), tuple(self._joint_names), max_age=max_age, max_skew=max_skew)
        )
        policy = make_policy(source, horizon, len(self._joint_names))
        self._runner = PolicyRunner(self._assembler, policy, default_prompt=prompt)

        for cam in cameras:
            self.create_subscription(Image, f"{cam}/image_raw", partial(self._on_image, cam), SENSOR_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joints, SENSOR_QOS)
        self.create_subscription(String, "prompt", self._on_prompt_topic, 10)
        self.create_service(SetPrompt, "set_prompt", self._on_set_prompt)
        self._chunk_pub = self.create_publisher(ActionChunk, "action_chunk", 10)
        self._status_pub = self.create_publisher(PolicyStatus, "policy_status", 10)
        self.create_timer(1.0 / rate, self._tick)
        self.create_timer(1.0, self._publish_status)
        self.get_logger().info(
            f"policy {source!r}: {len(cameras)} cameras, {len(self._joint_names)} joints, {rate} Hz, horizon {horizon}"
        )

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg, topic=f"{camera}/image_raw")
        except ImageDecodeError as exc:
            self._assembler.mark_invalid(camera, str(exc))  # never act on a frame that could not be decoded
            return
        self._assembler.add_image(camera, rgb, from_time(msg.header.stamp))

    def _on_joints(self, msg: JointState) -> None:
        try:
            self._assembler.add_joints(msg.name, msg.position, from_time(msg.header.stamp))
        except ObservationRejected as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)

    def _on_prompt_topic(self, msg: String) -> None:
        self._runner.set_prompt(msg.data)

    def _on_set_prompt(self, request: SetPrompt.Request, response: SetPrompt.Response) -> SetPrompt.Response:
        try:
            response.message = self._runner.set_prompt(request.prompt)
            response.success = True
        except ValueError as exc:
            response.success, response.message = False, str(exc)
        return response

    def _tick(self) -> None:
        chunk = self._runner.step(self._now())
        if chunk is None:
            return
        msg = make_action_chunk(
            chunk.actions,
            stamp_ns=chunk.stamp_ns,
            joint_names=self._joint_names,
            control_period=self._control_period,
            config_name=self._config_name,
            prompt=chunk.prompt,
            inference_latency=chunk.inference_latency,
            sequence=chunk.sequence,
        )
        self._chunk_pub.publish(msg)
        self._runner.record_published(chunk, self._now())

    def _publish_status(self) -> None:
        stats, now = self._runner.stats, self._now()
        msg = PolicyStatus(
            state=self._runner.status,
            message=self._runner.status_message,
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
