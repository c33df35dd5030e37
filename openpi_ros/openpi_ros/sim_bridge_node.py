"""Node `sim_bridge`: a simulator that looks exactly like the robot on ROS topics.

``sim:=<robot>``: the simulator of a registered robot (its spec's ``sim``: ``aloha`` gym-aloha on MuJoCo, ``libero``
LIBERO on robosuite, or a plugin's; ``task`` '' is the spec's ``sim_task``). Publishes the robot's camera
topics (sensor_msgs/Image rgb8, stamped with sim time; only the cameras in ``cameras`` are rendered, at
``camera_rate`` Hz of sim time), ``joint_states`` every control step, ``/clock`` (rosgraph_msgs/Clock; run the other
nodes with ``use_sim_time:=true``, since the sim runs slower than real time on a CPU), and ``episode_status``
(openpi_msgs/EpisodeStatus: reward, success, done). Applies the newest ``joint_commands`` (sensor_msgs/JointState
from the chunk executor, matched by name); a command that is malformed, non-finite or older than
``command_timeout`` s of sim time is never applied: the sim holds (ALOHA: the current joints; LIBERO: a zero
motion with the gripper open, openpi's "dummy" action). ``reset`` (openpi_msgs/ResetEpisode) starts an episode.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from openpi_core.robots import registry
from openpi_core.robots.spec import RobotSpec, Simulator, load_attribute
from openpi_msgs.msg import EpisodeStatus
from openpi_msgs.srv import ResetEpisode
from openpi_ros.image_messages import rgb_to_image_fields
from openpi_ros.messages import to_time
from openpi_ros.node_main import optional_list, run_node

NS = 1_000_000_000


def make_sim(spec: RobotSpec, params: dict) -> Simulator:
    """The robot's simulator (its spec's ``sim`` factory) for `sim_bridge`'s parameters."""
    if not spec.sim:
        raise ValueError(f"parameter 'sim': robot {spec.name!r} has no simulator")
    factory = load_attribute(spec.sim, f"robot {spec.name!r}: sim")
    return factory({**params, "task": params["task"] or spec.sim_task})


class SimBridgeNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_bridge")
        p = self.declare_parameter
        kind = str(p("sim", "aloha").value)
        p("cameras", Parameter.Type.STRING_ARRAY)
        try:
            profile = registry.get(kind)
        except registry.UnknownRobotError as exc:
            raise ValueError(f"parameter 'sim': {exc}") from None
        cameras = optional_list(self, "cameras") or list(profile.camera_names)
        params = {
            "task": str(p("task", "").value),
            "cameras": cameras,
            "image_height": int(p("image_height", 224).value),
            "image_width": int(p("image_width", 224).value),
            "assets_dir": str(p("assets_dir", "").value),
        }
        self._camera_period = 1.0 / float(p("camera_rate", 10.0).value)
        self._max_steps = int(p("max_steps", 400).value)
        self._timeout = float(p("command_timeout", 0.1).value)
        rtf = float(p("real_time_factor", 1.0).value)
        seed = int(p("seed", 0).value)
        self.get_logger().info(f"building the {kind} simulator ({params['task'] or 'default task'})...")
        self._sim = make_sim(profile, params)
        self._profile = profile
        self._cameras = cameras
        topics = dict(zip(profile.camera_names, profile.camera_topics, strict=True))
        self._image_pubs = {cam: self.create_publisher(Image, topics[cam], 5) for cam in cameras}
        self._joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._status_pub = self.create_publisher(EpisodeStatus, "episode_status", 10)
        self.create_subscription(JointState, "joint_commands", self._on_command, 10)
        self.create_service(ResetEpisode, "reset", self._on_reset)
        self._command: np.ndarray | None = None
        self._command_time = -math.inf
        self.invalid_commands = 0
        self._episode = -1
        self._sim_clock = 0.0
        self._seed = seed
        self._reset(seed)
        self._wall_period = self._sim.dt / rtf if rtf > 0 else 0.0
        self._next_wall = time.monotonic()
        self.create_timer(max(self._wall_period, 0.001), self._step)
        self.get_logger().info(
            f"{kind}: {self._sim.prompt!r}, cameras {cameras} at {1 / self._camera_period:.0f} Hz sim time, "
            f"control {1 / self._sim.dt:.0f} Hz, real-time factor {'max' if rtf <= 0 else rtf}"
        )

    # -- episode ------------------------------------------------------------------------------------------------------
    def _reset(self, seed: int) -> None:
        self._sim.reset(seed)
        self._episode += 1
        self._seed = seed
        self._command, self._command_time = None, -math.inf
        self._last_frame = -math.inf
        self._publish_observation(frames=True)

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        seed = int(request.seed) if request.seed >= 0 else self._seed + 1
        try:
            self._reset(seed)
        except Exception as exc:  # a bad seed (e.g. beyond LIBERO's initial states) must not kill the bridge
            response.success, response.message = False, f"reset failed: {exc}"
            return response
        response.success, response.message = True, f"{self._sim.prompt} (seed {seed}, episode {self._episode})"
        return response

    # -- commands -----------------------------------------------------------------------------------------------------
    def _on_command(self, msg: JointState) -> None:
        names = list(msg.name)
        values = np.asarray(msg.position, dtype=np.float64)
        wanted = self._profile.actions
        if len(names) != values.size or any(n not in names for n in wanted):
            self._reject(f"joint_commands: expected positions for {list(wanted)}, got names {names}")
            return
        command = values[[names.index(n) for n in wanted]]
        if not np.all(np.isfinite(command)):
            self._reject("joint_commands: non-finite position")
            return
        self._command, self._command_time = command, self._now_sim()

    def _reject(self, reason: str) -> None:
        self.invalid_commands += 1
        self.get_logger().warning(f"command ignored: {reason}", throttle_duration_sec=1.0)

    # -- stepping ------------------------------------------------------------------------------------------------------
    def _now_sim(self) -> float:
        """Seconds of simulated time since the bridge started (continues across episodes: /clock never jumps back)."""
        return self._sim_clock

    def _step(self) -> None:
        if self._wall_period > 0:
            now = time.monotonic()
            if now < self._next_wall:
                return
            self._next_wall = max(self._next_wall + self._wall_period, now - self._wall_period)
        done = self._sim.success or self._sim.steps >= self._max_steps
        fresh = self._command is not None and self._now_sim() - self._command_time <= self._timeout
        action = self._command if fresh else self._sim.hold_action()
        due = self._sim_clock + self._sim.dt - self._last_frame >= self._camera_period - 1e-9
        if not done:  # a finished episode stands still (time goes on) until the next reset
            self._sim.step(action, render=due)
        self._sim_clock += self._sim.dt
        self._publish_observation(frames=due)

    def _publish_observation(self, frames: bool = True) -> None:
        t = self._now_sim()
        stamp = to_time(round(t * NS))
        self._clock_pub.publish(Clock(clock=stamp))
        joints = JointState(name=list(self._profile.joint_names), position=[float(v) for v in self._sim.state])
        joints.header.stamp = stamp
        self._joint_pub.publish(joints)
        if frames:
            self._last_frame = t
            for cam in self._cameras:
                image = Image(**rgb_to_image_fields(self._sim.render(cam)))
                image.header.stamp = stamp
                image.header.frame_id = f"{cam}_optical_frame"
                self._image_pubs[cam].publish(image)
        status = EpisodeStatus(
            task=self._sim.task_name,
            prompt=self._sim.prompt,
            episode=self._episode,
            step=self._sim.steps,
            reward=self._sim.reward,
            max_reward=float(self._sim.max_reward),
            success=self._sim.success,
            done=self._sim.success or self._sim.steps >= self._max_steps,
        )
        status.header.stamp = stamp
        self._status_pub.publish(status)


def main(args: list[str] | None = None) -> int:
    return run_node(SimBridgeNode, args)


if __name__ == "__main__":
    sys.exit(main())
