"""Project-level rules: openpi_core never imports ROS, packages are where ROS tooling expects them."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from openpi_ros.graphs import NodeSpec, demo_graph

REPO = Path(__file__).resolve().parent.parent
ROS_MODULES = {
    "rclpy",
    "rosidl_runtime_py",
    "openpi_msgs",
    "openpi_ros",
    "sensor_msgs",
    "std_msgs",
    "launch",
    "launch_ros",
}


def test_openpi_core_has_no_ros_imports():
    offenders = []
    for path in (REPO / "openpi_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in ROS_MODULES]
    assert offenders == []


def test_openpi_core_imports_without_ros_on_the_path():
    """Import every openpi_core module in a process where importing rclpy would fail."""
    code = (
        "import sys, importlib, pkgutil\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'rclpy', 'openpi_msgs', 'openpi_ros'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import openpi_core\n"
        "for m in pkgutil.walk_packages(openpi_core.__path__, 'openpi_core.'): importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_package_manifests():
    msgs = ET.parse(REPO / "openpi_msgs" / "package.xml").getroot()
    assert msgs.findtext("name") == "openpi_msgs"
    assert msgs.find("export/build_type").text == "ament_cmake"
    assert msgs.findtext("member_of_group") == "rosidl_interface_packages"
    ros = ET.parse(REPO / "openpi_ros" / "package.xml").getroot()
    assert ros.findtext("name") == "openpi_ros"
    assert ros.find("export/build_type").text == "ament_python"
    assert "openpi_msgs" in {e.text for e in ros.findall("exec_depend")}
    assert (REPO / "openpi_ros" / "resource" / "openpi_ros").is_file()
    assert (REPO / "openpi_ros" / "launch").resolve() == (REPO / "launch").resolve()
    for link in ("openpi_msgs", "openpi_ros"):
        assert (REPO / "ros2_ws" / "src" / link).resolve() == (REPO / link).resolve()


def test_node_spec_arguments():
    spec = NodeSpec(
        "policy_node",
        "openpi_ros.policy_node",
        "policy",
        namespace="/robot/",
        parameters={"rate": 10.0, "names": ["a", "b"], "prompt": "pick it: up", "on": True},
        remappings=(("joint_states", "/arm/joint_states"),),
    )
    args = spec.ros_args()
    assert args[:5] == ["--ros-args", "-r", "__node:=policy", "-r", "__ns:=/robot"]
    assert args[5:7] == ["-r", "joint_states:=/arm/joint_states"]
    assert 'names:=["a", "b"]' in args
    assert 'prompt:="pick it: up"' in args
    assert "on:=true" in args
    assert spec.command("py")[:3] == ["py", "-m", "openpi_ros.policy_node"]
    graph = demo_graph(namespace="x", rate=5.0)
    assert [s.executable for s in graph] == ["synthetic_robot", "policy_node"]
    assert graph[1].parameters["joint_names"] == graph[0].parameters["joint_names"]


def test_console_scripts_point_at_real_mains():
    tree = ast.parse((REPO / "openpi_ros" / "setup.py").read_text())
    scripts = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and " = " in n.value
    ]
    assert scripts
    for entry in scripts:
        _, target = (s.strip() for s in entry.split("="))
        module, func = target.split(":")
        mod = __import__(module, fromlist=[func])
        assert callable(getattr(mod, func)), entry


def test_robot_launch_files_read_the_graphs():
    """Every robot launch file hands its robot to `robot_launch_description`, whose arguments are the graph's; the
    generic `robot.launch.py` takes the robot as an argument (any registered one), the plugin's names its own."""
    from openpi_core.robots import registry  # noqa: PLC0415
    from openpi_ros.graphs import RobotGraphConfig, robot_graph  # noqa: PLC0415

    robots = {}
    paths = [*sorted((REPO / "launch").glob("*.launch.py")), REPO / "examples/ur5e_lift/launch/ur5e_lift.launch.py"]
    for path in paths:
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body), path
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "robot_launch_description"
        ]
        if calls:
            robots[path.name] = calls[0].args[0].value if calls[0].args else ""
    assert robots == {
        "aloha.launch.py": "aloha",
        "droid.launch.py": "droid",
        "aloha_sim.launch.py": "aloha",
        "libero_sim.launch.py": "libero",
        "robot.launch.py": "",
        "ur5e_lift.launch.py": "ur5e_lift",
    }
    assert set(robots.values()) - {""} <= set(registry.names())
    arguments = RobotGraphConfig.arguments()
    assert arguments["policy"] == ("hold", arguments["policy"][1])
    assert arguments["synthetic"][0] == "false"
    # Launch-argument strings build the same graph as typed values; bad values name the argument.
    config = RobotGraphConfig.from_strings({"robot": "droid", "rate": "3.5", "compressed": "true", "horizon": "7"})
    assert config == RobotGraphConfig(robot="droid", rate=3.5, compressed=True, horizon=7)
    policy, executor = robot_graph(config)
    assert policy.parameters["compressed_cameras"] == list(registry.get("droid").camera_names)
    assert executor.parameters["joint_names"][0] == "panda_joint1/velocity"
    assert executor.parameters["on_stale"] == "stop"
    for bad, phrase in (({"rate": "fast"}, "'rate'"), ({"synthetic": "maybe"}, "'synthetic'"), ({"x": "1"}, "unknown")):
        with pytest.raises(ValueError, match=phrase):
            RobotGraphConfig.from_strings(bad)
    with pytest.raises(ValueError, match="robot"):
        RobotGraphConfig(robot="spot")


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (every import, also inside functions; not `TYPE_CHECKING` ones)."""
    roots = {"openpi_core": REPO / "openpi_core", "openpi_ros": REPO / "openpi_ros" / "openpi_ros"}
    files = {}
    for base in roots.values():
        for path in base.rglob("*.py"):
            parts = path.relative_to(base.parent).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        hidden = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_between_files_or_folders() -> None:
    graph = _import_graph()
    assert _cycles(graph) == []

    def folder(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2])  # openpi_core.training, openpi_ros.sim, ... (top-level modules are their own)

    folders: dict[str, set[str]] = {}
    for module, imported in graph.items():
        for other in imported:
            if folder(module) != folder(other):
                folders.setdefault(folder(module), set()).add(folder(other))
    assert _cycles(folders) == []
    # The robot side never reaches the model code through the registry (no JAX for a remote-policy robot).
    reach, todo = set(), ["openpi_core.robots.registry"]
    while todo:
        for other in graph[todo.pop()] - reach:
            reach.add(other)
            todo.append(other)
    assert not {m for m in reach if m.startswith(("openpi_core.models", "openpi_core.training"))}
