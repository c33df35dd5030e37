"""ALOHA in MuJoCo through gym-aloha's physics and tasks, rendering only the cameras asked for.

gym-aloha's own `AlohaEnv` renders three 480×640 cameras on every step (about 4.7 steps/s on a CPU). Here the task's
observation renders nothing; `render(camera)` draws one camera when the bridge needs a frame. Actions and joint
readings use gym-aloha's (and openpi's ALOHA) convention: 6 arm joints in rad then the gripper normalised to
[0, 1] (0 closed), left arm first.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless; set MUJOCO_GL=osmesa to use OSMesa instead

__all__ = ["ALOHA_CAMERAS", "ALOHA_TASKS", "AlohaSim", "AlohaSimConfig", "make_sim"]

# gym-aloha task id -> (task name in gym_aloha.env, default prompt)
ALOHA_TASKS = {
    "AlohaTransferCube-v0": ("transfer_cube", "Transfer cube"),
    "AlohaInsertion-v0": ("insertion", "Insert the peg into the socket"),
}
# ALOHA camera name -> MuJoCo camera in gym-aloha's scene
ALOHA_CAMERAS = {
    "cam_high": "top",
    "cam_left_wrist": "left_wrist",
    "cam_right_wrist": "right_wrist",
    "cam_low": "angle",
}


@dataclasses.dataclass(frozen=True)
class AlohaSimConfig:
    task: str = "AlohaTransferCube-v0"
    cameras: tuple[str, ...] = ("cam_high",)
    image_height: int = 480
    image_width: int = 640

    def __post_init__(self) -> None:
        if self.task not in ALOHA_TASKS:
            raise ValueError(f"task: unknown {self.task!r}; expected one of {sorted(ALOHA_TASKS)}")
        unknown = [c for c in self.cameras if c not in ALOHA_CAMERAS]
        if unknown:
            raise ValueError(f"cameras: unknown {unknown}; expected some of {sorted(ALOHA_CAMERAS)}")
        if self.image_height <= 0 or self.image_width <= 0:
            raise ValueError(f"image size must be positive, got {self.image_height}x{self.image_width}")


class AlohaSim:
    """One bimanual ViperX scene. `reset(seed)` then `step(action)`; `time` is the simulated time in seconds."""

    dt = 0.02  # gym-aloha's control period (50 Hz)

    def __init__(self, config: AlohaSimConfig) -> None:
        # Imported here: MuJoCo and dm_control load only when a sim is built.
        from dm_control import mujoco  # noqa: PLC0415
        from dm_control.rl import control  # noqa: PLC0415
        from gym_aloha import constants  # noqa: PLC0415
        from gym_aloha.tasks import sim as tasks  # noqa: PLC0415

        self.config = config
        self._tasks = tasks
        name = ALOHA_TASKS[config.task][0]
        base = tasks.TransferCubeTask if name == "transfer_cube" else tasks.InsertionTask

        class _Task(base):  # the observation is the joints only: frames are rendered on demand
            def get_observation(self, physics: object) -> dict:
                return {"qpos": self.get_qpos(physics)}

        xml = constants.ASSETS_DIR / f"bimanual_viperx_{name}.xml"
        self._physics = mujoco.Physics.from_xml_path(str(xml))
        self._task = _Task()
        self._env = control.Environment(
            self._physics, self._task, float("inf"), control_timestep=constants.DT, flat_observation=False
        )
        self.max_reward = self._task.max_reward
        self.prompt = ALOHA_TASKS[config.task][1]
        self.steps = 0
        self.reward = 0.0
        self._qpos = np.zeros(14)
        self._target = np.zeros(14)

    @property
    def time(self) -> float:
        return self.steps * self.dt

    @property
    def task_name(self) -> str:
        return self.config.task

    @property
    def state(self) -> np.ndarray:
        """The 14 joint readings (the ALOHA profile's joint order)."""
        return self._qpos.copy()

    def hold_action(self) -> np.ndarray:
        """The last applied target (at the start of an episode: the start pose). Re-targeting the measured joints
        instead would let the arms sag under gravity, step after step."""
        return self._target.copy()

    @property
    def success(self) -> bool:
        return self.reward >= self.max_reward

    def reset(self, seed: int | None = None) -> np.ndarray:
        from gym_aloha import utils  # noqa: PLC0415

        rng = np.random.RandomState(seed)
        self._task._random = rng
        if ALOHA_TASKS[self.config.task][0] == "transfer_cube":
            self._tasks.BOX_POSE[0] = utils.sample_box_pose(seed)
        else:
            self._tasks.BOX_POSE[0] = np.concatenate(utils.sample_insertion_pose(seed))
        step = self._env.reset()
        self.steps, self.reward = 0, 0.0
        self._qpos = np.asarray(step.observation["qpos"], dtype=np.float64)
        self._target = self._qpos.copy()
        return self.state

    def step(self, action: np.ndarray, render: bool = True) -> np.ndarray:
        """One 20 ms control step. (`render` is accepted for symmetry with LIBERO: frames are drawn in `render()`.)"""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (14,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action: expected 14 finite values, got shape {action.shape}")
        step = self._env.step(action)
        self._target = action.copy()
        self.steps += 1
        self.reward = float(step.reward or 0.0)
        self._qpos = np.asarray(step.observation["qpos"], dtype=np.float64)
        return self.state

    def render(self, camera: str) -> np.ndarray:
        """uint8 [height, width, 3] RGB from one ALOHA camera."""
        cfg = self.config
        return self._physics.render(height=cfg.image_height, width=cfg.image_width, camera_id=ALOHA_CAMERAS[camera])


def make_sim(params: dict) -> AlohaSim:
    """`sim_bridge`'s factory (the aloha robot spec's ``sim``)."""
    config = AlohaSimConfig(
        task=params["task"],
        cameras=tuple(params["cameras"]),
        image_height=params["image_height"],
        image_width=params["image_width"],
    )
    return AlohaSim(config)
