"""ros2_ws/ builds with colcon as on a robot: interfaces, the Python package, launch files in the share folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLCON = Path(sys.executable).with_name("colcon")

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not COLCON.exists(), reason="colcon is not installed in this environment (make setup installs it)")
def test_colcon_build_of_ros2_ws(tmp_path):
    # Build the real ros2_ws (its src/ links to the packages), with every output under tmp_path.
    env = dict(os.environ, AMENT_PREFIX_PATH=str(Path(sys.prefix)))
    install = tmp_path / "install"
    out = subprocess.run(
        [
            str(COLCON),
            "--log-base",
            str(tmp_path / "log"),
            "build",
            "--build-base",
            str(tmp_path / "build"),
            "--install-base",
            str(install),
            "--cmake-args",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=REPO / "ros2_ws",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "Summary: 2 packages finished" in out.stdout, out.stdout
    # where `ros2 launch openpi_ros <file>` looks
    for launch_file in ("demo", "aloha", "droid", "aloha_sim", "libero_sim"):
        assert (install / "openpi_ros" / "share" / "openpi_ros" / "launch" / f"{launch_file}.launch.py").is_file()
    for executable in ("chunk_executor", "sim_bridge"):
        assert (install / "openpi_ros" / "lib" / "openpi_ros" / executable).is_file()
    assert (install / "openpi_ros" / "share" / "ament_index" / "resource_index" / "packages" / "openpi_ros").is_file()
    assert (install / "openpi_ros" / "lib" / "openpi_ros" / "policy_node").is_file()
    assert (install / "openpi_msgs" / "share" / "openpi_msgs" / "msg" / "ActionChunk.msg").is_file()
    # The workspace's own interface build imports after sourcing its setup script.
    check = subprocess.run(
        [
            "bash",
            "-c",
            f"source {install}/setup.bash && {sys.executable} -c "
            "'import openpi_msgs, openpi_msgs.msg as m; print(openpi_msgs.__file__); m.ActionChunk()'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert check.returncode == 0, check.stderr
    assert str(install) in check.stdout
