"""`pip install openpi-core` (no extras) is the robot / client side: its declared dependencies alone import the
policy-server client, the robot registry and specs, image resizing and the hold policy, with no JAX."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
ROBOT_SIDE = [
    "openpi_core.serving.client",
    "openpi_core.robots.registry",
    "openpi_core.images",
    "openpi_core.policies",
    "openpi_core.rosbag_to_lerobot.metadata_keys",
]


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions `requirements` pull in (markers evaluated, no extras)."""
    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(name) or []]
    return seen


def test_the_base_install_imports_the_robot_side_without_jax(tmp_path: Path) -> None:
    base = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(Requirement(r).name in ("jax", "flax", "orbax-checkpoint") for r in base)
    site = tmp_path / "site"
    site.mkdir()
    for dist_name in _closure(base):
        dist = metadata.distribution(dist_name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists() and not top.endswith((".dist-info", "..")):
                (site / top).symlink_to(source)
    # -S: no site-packages at all; only the base closure and the project's own source are importable.
    probe = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in ROBOT_SIDE)
        + "from openpi_core.robots import registry\n"
        + "assert {'aloha', 'droid', 'libero'} <= set(registry.names())\n"
        + "registry.get('aloha').make_example()\n"
        + "heavy = sorted({n.split('.')[0] for n in sys.modules} & {'jax', 'flax', 'torch', 'orbax', 'rclpy'})\n"
        + "print('heavy:', heavy)\n"
    )
    env = {"PYTHONPATH": f"{site}:{REPO}", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("heavy: []")
