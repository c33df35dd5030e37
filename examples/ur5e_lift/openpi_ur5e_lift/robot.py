"""A UR5e with a Robotiq 2F-85 gripper lifting a cube, in robosuite: openpi-ros's worked "bring your own arm".

The spec (`ROBOT`) is all openpi-ros needs: two cameras (a scene camera and a wrist camera), six joints and the
gripper as the state, absolute joint targets and a gripper command as the actions, the executor's limits, and the
simulator that stands in for the real arm. On a real UR5e, leave `sim` as it is (only `sim:=true` uses it) and point
the camera topics and `command_topic` at the drivers.

The simulator is robosuite's ``Lift`` with the UR5e under a joint-position controller at 20 Hz. It accepts the
executor's absolute joint targets and turns them into the controller's delta inputs (at most 0.05 rad per step);
the gripper command is 0 (open) .. 1 (closed), as is the published gripper state.
"""

from __future__ import annotations

import os

import numpy as np

from openpi_core.robots.spec import CameraSpec, ExecutorLimits, RobotSpec

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
_CAMERAS = {"scene": "agentview", "wrist": "robot0_eye_in_hand"}  # policy camera -> robosuite camera
_MAX_DELTA = 0.05  # rad per control step at controller input 1 (robosuite's JOINT_POSITION output_max)
_FINGER_RANGE = 0.8  # rad: the Robotiq 85 finger joint, open (0) .. closed
_GRIPPER_DEADBAND = 0.05


class UR5eLiftSim:
    """robosuite Lift with a UR5e, as `openpi_core.robots.spec.Simulator`."""

    dt = 0.05
    max_reward = 1.0
    prompt = "lift the red cube"

    def __init__(self, params: dict) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        import robosuite  # noqa: PLC0415 (only where the sim runs)
        from robosuite.controllers import load_controller_config  # noqa: PLC0415

        self.task_name = params.get("task") or "Lift"
        unknown = [c for c in params["cameras"] if c not in _CAMERAS]
        if unknown:
            raise ValueError(f"cameras: unknown {unknown}; expected some of {sorted(_CAMERAS)}")
        self._cameras = list(params["cameras"])
        self._size = (int(params["image_width"]), int(params["image_height"]))
        self._env = robosuite.make(
            self.task_name,
            robots="UR5e",
            controller_configs=load_controller_config(default_controller="JOINT_POSITION"),
            has_renderer=False,
            has_offscreen_renderer=True,
            use_camera_obs=False,  # frames are rendered only on the steps that publish them (`_render_frames`)
            control_freq=round(1 / self.dt),
            ignore_done=True,
            hard_reset=False,  # reset in place: a new MuJoCo model and render context per episode is slow
        )
        self._frames: dict[str, np.ndarray] = {}
        self.steps, self.reward, self._success = 0, 0.0, False

    @property
    def state(self) -> np.ndarray:
        robot = self._env.robots[0]
        joints = np.asarray(robot._joint_positions, dtype=np.float64)
        finger = float(self._env.sim.data.qpos[robot._ref_gripper_joint_pos_indexes[0]])
        return np.append(joints, np.clip(finger / _FINGER_RANGE, 0.0, 1.0))

    @property
    def success(self) -> bool:
        return self._success

    def hold_action(self) -> np.ndarray:
        return self.state

    def _render_frames(self) -> None:
        width, height = self._size
        for cam in self._cameras:
            frame = self._env.sim.render(width=width, height=height, camera_name=_CAMERAS[cam])
            self._frames[cam] = np.ascontiguousarray(frame[::-1])  # MuJoCo renders bottom-up

    def reset(self, seed: int | None = None) -> np.ndarray:
        np.random.seed(seed or 0)  # robosuite places the cube with numpy's global generator
        self._env.reset()
        self._render_frames()
        self.steps, self.reward, self._success = 0, 0.0, False
        return self.state

    def step(self, action: np.ndarray, render: bool = True) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action: expected 7 finite values, got shape {action.shape}")
        state = self.state
        deltas = np.clip((action[:6] - state[:6]) / _MAX_DELTA, -1.0, 1.0)
        error = action[6] - state[6]
        gripper = 0.0 if abs(error) < _GRIPPER_DEADBAND else float(np.sign(error))  # Robotiq: +1 closes, -1 opens
        _, reward, _, _ = self._env.step(np.append(deltas, gripper))
        if render:
            self._render_frames()
        self.steps += 1
        self.reward = float(reward)
        self._success = self._success or bool(self._env._check_success())
        return self.state

    def render(self, camera: str) -> np.ndarray:
        return self._frames[camera]

    def close(self) -> None:
        self._env.close()


def make_sim(params: dict) -> UR5eLiftSim:
    return UR5eLiftSim(params)


ROBOT = RobotSpec(
    name="ur5e_lift",
    description="UR5e + Robotiq 2F-85 (robosuite Lift): a scene camera and a wrist camera",
    cameras=(
        CameraSpec("scene", "scene/image_raw", "base_0_rgb"),
        CameraSpec("wrist", "wrist/image_raw", "left_wrist_0_rgb"),
    ),
    joint_names=(*(f"{joint}_joint" for joint in JOINTS), "gripper"),
    action_units="absolute joint positions (rad); gripper 0 open .. 1 closed",
    limits=ExecutorLimits(
        lower=(-6.2832, -6.2832, -3.1416, -6.2832, -6.2832, -6.2832, 0.0),
        upper=(6.2832, 6.2832, 3.1416, 6.2832, 6.2832, 6.2832, 1.0),
        max_velocity=(1.0,) * 6 + (2.0,),  # the sim's controller moves at most 0.05 rad per 20 Hz step
        max_tracking_error=(0.5,) * 6 + (0.0,),
        on_stale="hold",
    ),
    control_rate=20.0,
    policy_rate=5.0,
    gripper_columns=("gripper",),
    train_configs="openpi_ur5e_lift.config:CONFIGS",
    debug_config="debug_ur5e_lift",
    sim="openpi_ur5e_lift.robot:make_sim",
    sim_task="Lift",
    sim_config="debug_ur5e_lift",
)
