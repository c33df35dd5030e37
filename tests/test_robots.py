"""Robots as plugins: the registry (built-in specs, the installed UR5e example, broken plugins), the generic robot
adapter and data config, and every consumer reading the spec instead of a table of its own."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml

from openpi_core.adapters.robot_policy import RobotInputs, RobotOutputs
from openpi_core.errors import InvalidObservationError
from openpi_core.models import model as _model
from openpi_core.robots import registry
from openpi_core.robots.spec import CameraSpec, ExecutorLimits, RobotSpec
from openpi_core.serving.spec import spec_for
from openpi_core.training import configs as _configs
from openpi_core.training.configs.robot import delta_mask
from openpi_ros.graphs import RobotGraphConfig, robot_graph
from openpi_ros.robots import resolve

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ur5e_lift"


def test_registry_has_the_builtins_and_the_installed_plugin() -> None:
    assert registry.names()[:3] == ["aloha", "droid", "libero"]
    entry = [e for e in metadata.entry_points(group=registry.ENTRY_POINT_GROUP) if e.name == "ur5e_lift"]
    assert entry
    assert entry[0].dist.name == "openpi-ur5e-lift"
    ur5e = registry.get("ur5e_lift")
    assert ur5e.camera_names == ("scene", "wrist")
    assert ur5e.state_dim == 7
    assert ur5e.action_dim == 7
    assert registry.plugin_errors() == {}
    # Its configs join the named ones; every config names the robot whose observations it reads.
    assert {"debug_ur5e_lift", "pi05_ur5e_lift"} <= set(_configs.config_names())
    assert _configs.get_config("debug_ur5e_lift").data.robot_name() == "ur5e_lift"
    assert _configs.get_config("pi05_droid").data.robot_name() == "droid"
    with pytest.raises(registry.UnknownRobotError, match=r"unknown robot 'spot'; registered: aloha, droid"):
        registry.get("spot")


def test_the_example_plugin_is_one_robot_file_one_mapping_one_config_one_launch_file() -> None:
    files = sorted(str(p.relative_to(EXAMPLE)) for p in EXAMPLE.rglob("*") if p.is_file() and "egg-info" not in str(p))
    files = [f for f in files if "__pycache__" not in f]
    assert files == [
        "launch/ur5e_lift.launch.py",
        "openpi_ur5e_lift/__init__.py",
        "openpi_ur5e_lift/config.py",
        "openpi_ur5e_lift/mapping.yaml",
        "openpi_ur5e_lift/robot.py",
        "pyproject.toml",
    ]
    code = [line for line in (EXAMPLE / "launch/ur5e_lift.launch.py").read_text().splitlines() if line.strip()]
    assert len(code) == 3
    # The shipped mapping is the spec's own default for the namespace the README uses.
    mapping = yaml.safe_load((EXAMPLE / "openpi_ur5e_lift/mapping.yaml").read_text())
    assert mapping == registry.get("ur5e_lift").rosbag_mapping("ur5e")
    shipped = yaml.safe_load((REPO / "examples/aloha_mapping.yaml").read_text())
    assert shipped == registry.get("aloha").rosbag_mapping("aloha")


_BROKEN = {
    "raises": "raise ImportError('libfoo.so: cannot open shared object file')",
    "not_a_spec": "ROBOT = {'name': 'not_a_spec'}",
    "misnamed": textwrap.dedent(
        """
        from openpi_core.robots.spec import ExecutorLimits, RobotSpec
        ROBOT = RobotSpec(name="other", description="", cameras=(), joint_names=("j",), limits=ExecutorLimits())
        """
    ),
    "aloha": textwrap.dedent(  # a plugin may not replace a built-in robot
        """
        from openpi_core.robots.spec import ExecutorLimits, RobotSpec
        ROBOT = RobotSpec(name="aloha", description="", cameras=(), joint_names=("j",), limits=ExecutorLimits())
        """
    ),
}


def test_a_broken_plugin_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """Real installed-package metadata (a dist-info folder on sys.path) for four broken plugins: the built-in and
    the good robots still load, each broken one is named with its reason, and asking for it raises that reason."""
    dist = tmp_path / "broken_robots-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-robots\nVersion: 0.1\n")
    lines = [f"{name} = broken_{name}:ROBOT" for name in _BROKEN]
    (dist / "entry_points.txt").write_text("[openpi.robots]\n" + "\n".join(lines) + "\n")
    for name, body in _BROKEN.items():
        (tmp_path / f"broken_{name}.py").write_text(body)
    probe = textwrap.dedent(
        """
        import json
        from openpi_core.robots import registry
        errors = {}
        for name in ("raises", "not_a_spec", "misnamed"):
            try:
                registry.get(name)
            except registry.UnknownRobotError as exc:
                errors[name] = str(exc)
        print(json.dumps({"names": registry.names(), "skipped": registry.plugin_errors(), "errors": errors}))
        """
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["names"][:3] == ["aloha", "droid", "libero"]
    assert "ur5e_lift" in out["names"]
    assert set(out["skipped"]) == set(_BROKEN)
    assert "libfoo.so" in out["errors"]["raises"]
    assert "not a RobotSpec" in out["errors"]["not_a_spec"]
    assert "names the robot 'other'" in out["errors"]["misnamed"]
    assert "already registered" in out["skipped"]["aloha"]
    assert "robot plugin skipped" in run.stderr  # said once, as a warning


def test_robot_spec_errors_name_the_field() -> None:
    limits = ExecutorLimits(lower=(0.0,) * 3)
    with pytest.raises(ValueError, match=r"limits.lower has 3 values for 2 actions"):
        RobotSpec("arm", "", (), ("a", "b"), limits)
    with pytest.raises(ValueError, match="gripper_columns"):
        RobotSpec("arm", "", (), ("a", "b"), ExecutorLimits(), gripper_columns=("c",))
    with pytest.raises(ValueError, match="sim must be 'module:attribute'"):
        RobotSpec("arm", "", (), ("a",), ExecutorLimits(), sim="my_sim")


def test_generic_adapter_feeds_each_camera_to_its_slot() -> None:
    ur5e = registry.get("ur5e_lift")
    cameras = tuple((c.name, c.model_key) for c in ur5e.cameras)
    example = ur5e.make_example()
    scene = example["images"]["scene"]
    for model_type, padding in ((_model.ModelType.PI0, False), (_model.ModelType.PI0_FAST, True)):
        out = RobotInputs(cameras, 7, model_type)(example)
        np.testing.assert_array_equal(out["image"]["base_0_rgb"], scene)
        np.testing.assert_array_equal(out["image"]["left_wrist_0_rgb"], example["images"]["wrist"])
        assert not out["image"]["right_wrist_0_rgb"].any()
        assert out["image_mask"] == {"base_0_rgb": True, "left_wrist_0_rgb": True, "right_wrist_0_rgb": padding}
    # A camera missing from one observation is a masked blank, not an error.
    out = RobotInputs(cameras, 7, _model.ModelType.PI0)({"images": {"scene": scene}, "state": np.zeros(7)})
    assert not out["image_mask"]["left_wrist_0_rgb"]
    assert not out["image"]["left_wrist_0_rgb"].any()
    with pytest.raises(InvalidObservationError, match="'state'"):
        RobotInputs(cameras, 7, _model.ModelType.PI0)({"images": {"scene": scene}, "state": np.zeros(6)})
    with pytest.raises(ValueError, match="model keys"):
        RobotInputs((("a", "base_0_rgb"), ("b", "base_0_rgb")), 7, _model.ModelType.PI0)
    assert RobotOutputs(7)({"actions": np.ones((10, 32))})["actions"].shape == (10, 7)


def test_generic_data_config_trains_joints_as_deltas_and_grippers_absolute(tmp_path: Path) -> None:
    ur5e = registry.get("ur5e_lift")
    assert delta_mask(ur5e) == (True,) * 6 + (False,)
    assert delta_mask(registry.get("droid")) == (False,) * 8  # velocities and the gripper stay absolute
    config = _configs.get_config("debug_ur5e_lift")
    data = config.data.create(tmp_path, config.model)
    repack = data.repack_transforms.inputs[0].structure
    assert repack["images"] == {"scene": "observation.images.scene", "wrist": "observation.images.wrist"}
    assert repack["state"] == "observation.state"
    assert repack["actions"] == "action"
    assert data.action_sequence_keys == ("action",)


def test_serving_spec_comes_from_the_robot() -> None:
    spec = spec_for("ur5e_lift")
    example = registry.get("ur5e_lift").make_example()
    spec.check(example)
    del example["images"]["wrist"]
    with pytest.raises(InvalidObservationError, match=r"images\.wrist"):
        spec.check(example)
    aloha = spec_for("aloha")
    assert {a.name for a in aloha.arrays if a.optional} == {
        "images.cam_low",
        "images.cam_left_wrist",
        "images.cam_right_wrist",
    }


def test_launch_arguments_for_a_plugin_robot(tmp_path: Path) -> None:
    ur5e = registry.get("ur5e_lift")
    config = RobotGraphConfig.from_strings({"robot": "ur5e_lift", "command_topic": "/ur/joint_command", "sim": "true"})
    bridge, policy, executor = robot_graph(config)
    assert policy.parameters["robot"] == "ur5e_lift"
    assert policy.parameters["rate"] == ur5e.policy_rate
    assert executor.parameters["joint_names"] == list(ur5e.actions)
    assert executor.parameters["upper_limits"] == list(ur5e.limits.upper)
    assert executor.parameters["control_rate"] == ur5e.control_rate
    assert ("joint_commands", "/ur/joint_command") in executor.remappings  # the driver's topic
    assert ("joint_commands", "/ur/joint_command") in bridge.remappings  # and where the sim listens
    assert bridge.parameters["sim"] == "ur5e_lift"
    # Limits from a file, then from arguments (one value per action column).
    limits = tmp_path / "limits.yaml"
    limits.write_text(yaml.safe_dump({"max_velocity": [0.5] * 7, "lower_limits": [-1.0] * 6 + [0.0]}))
    values = {"robot": "ur5e_lift", "limits_file": str(limits), "max_velocity": "[0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 1]"}
    _, executor = robot_graph(RobotGraphConfig.from_strings(values))
    assert executor.parameters["max_velocity"] == [0.2] * 6 + [1.0]
    assert executor.parameters["lower_limits"] == [-1.0] * 6 + [0.0]
    assert executor.parameters["upper_limits"] == list(ur5e.limits.upper)
    with pytest.raises(ValueError, match=r"upper_limits: expected a list of 7 numbers"):
        robot_graph(RobotGraphConfig(robot="ur5e_lift", upper_limits="[1, 2]"))
    limits.write_text(yaml.safe_dump({"max_speed": [1.0] * 7}))
    with pytest.raises(ValueError, match="limits_file"):
        robot_graph(RobotGraphConfig(robot="ur5e_lift", limits_file=str(limits)))
    with pytest.raises(ValueError, match="has no simulator"):
        RobotGraphConfig(robot="droid", sim=True)


def test_node_robot_from_parameters() -> None:
    custom = resolve("custom", cameras=("front", "hand"), joint_names=("j1", "j2", "grip"))
    assert [c.model_key for c in custom.cameras] == ["base_0_rgb", "left_wrist_0_rgb"]
    assert custom.camera_topics == ("front/image_raw", "hand/image_raw")
    moved = resolve("ur5e_lift", camera_topics=("/zed/left", "/wrist_cam/color"))
    assert moved.camera_topics == ("/zed/left", "/wrist_cam/color")
    assert moved.cameras[0].model_key == "base_0_rgb"
    with pytest.raises(ValueError, match="'joint_names'"):
        resolve("custom")
    with pytest.raises(ValueError, match="'camera_topics': 1 topics for 2 cameras"):
        resolve("ur5e_lift", camera_topics=("/a",))
    with pytest.raises(ValueError, match="parameter 'robot'"):
        resolve("spot")
    assert CameraSpec("top", "t", "base_0_rgb", "high").feature == "high"


# Where robot knowledge used to be copied: none of these modules may name a built-in robot in a table again.
CONSUMERS = [
    "openpi_ros/openpi_ros/robots.py",
    "openpi_ros/openpi_ros/graphs.py",
    "openpi_ros/openpi_ros/sim_eval.py",
    "openpi_ros/openpi_ros/sim_bridge_node.py",
    "openpi_ros/openpi_ros/policy_node.py",
    "openpi_core/serving/spec.py",
    "openpi_core/serving/cli.py",
    "openpi_core/serving/fullsize_benchmark.py",
    "openpi_core/policies/small_policy.py",
]


@pytest.mark.parametrize("path", CONSUMERS)
def test_consumers_keep_no_robot_tables(path: str) -> None:
    tree = ast.parse((REPO / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            assert not keys & {"aloha", "droid", "libero"}, f"{path}:{node.lineno} keys a table by robot"
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            assert len(names & {"aloha", "droid", "libero"}) < 2, f"{path}:{node.lineno} lists robots"


def test_robots_cli_lists_and_shows(capsys: pytest.CaptureFixture[str]) -> None:
    from openpi_core.robots.__main__ import main  # noqa: PLC0415

    assert main([]) == 0
    listed = capsys.readouterr().out
    assert all(f"{name} " in listed for name in ("aloha", "droid", "libero", "ur5e_lift"))
    assert main(["droid"]) == 0
    shown = capsys.readouterr().out
    assert "panda_joint1/velocity" in shown
    assert "velocity_scale: 3.0" in shown
    assert main(["spot"]) == 2
    assert "unknown robot 'spot'" in capsys.readouterr().err
