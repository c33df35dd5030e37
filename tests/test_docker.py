"""Deployment files, checked where no Docker engine runs: hadolint on every Dockerfile; the robot image's package
list against what the robot-side nodes really import; the server image's install line against what serving a
checkpoint imports; and compose.yml's commands run here outside Docker: the server through the image's own
entry point (docker/serve.sh) and the robot graph from the compose command's launch arguments, over DDS."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.ros import Probe

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
HADOLINT = Path(sys.executable).with_name("hadolint")
# Python modules the robot image takes from Ubuntu's apt packages (python3-numpy, -opencv, -yaml,
# -typing-extensions), not from requirements/robot.txt.
APT_MODULES = {"numpy", "cv2", "yaml", "typing_extensions"}
# This project, and the example robot plugin `make setup` installs (a plugin is imported where it is installed).
OWN = {"openpi_core", "openpi_ros", "openpi_msgs", "openpi_ur5e_lift"}
# Imported by JAX only if installed (try/except ImportError): pickling helpers, and its search for CUDA wheels
# (which the server image gets from jax[cuda12]).
OPTIONAL_FOR_JAX = {"cloudpickle", "nvidia"}


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HADOLINT), str(path)], check=False, capture_output=True, text=True, timeout=60)


def test_hadolint_passes_every_dockerfile_and_catches_problems(tmp_path: Path) -> None:
    dockerfiles = sorted(DOCKER.glob("*.Dockerfile"))
    assert [p.name for p in dockerfiles] == ["robot.Dockerfile", "server.Dockerfile"]
    for path in dockerfiles:
        result = _lint(path)
        assert result.returncode == 0, f"{path.name}:\n{result.stdout}{result.stderr}"
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM ubuntu\nRUN cd /tmp && apt-get install curl\n")
    result = _lint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
    assert "DL3003" in result.stdout  # cd instead of WORKDIR


def _imported_distributions(code: str) -> dict[str, list[str]]:
    """Top-level modules (not stdlib) imported by `code` in a fresh interpreter -> their distributions. Modules
    without a spec (Cython's `cython_runtime`, made by compiled extensions at run time) come from no package."""
    probe = (
        f"{code}\nimport sys, json, importlib.metadata as m\n"
        "names = {n.split('.')[0] for n, mod in list(sys.modules.items()) if getattr(mod, '__spec__', None)}\n"
        "names -= set(sys.stdlib_module_names) | {'__main__'} | set(json.loads(sys.argv[1]))\n"
        "dists = m.packages_distributions()\n"
        "print(json.dumps({n: dists.get(n, []) for n in sorted(names) if not n.startswith('_')}))"
    )
    startup = subprocess.run(
        [sys.executable, "-c", "import sys, json; print(json.dumps(sorted(n.split('.')[0] for n in sys.modules)))"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    baseline = startup.stdout.strip()  # what the interpreter loads before any code (site, .pth hooks)
    result = subprocess.run(
        [sys.executable, "-c", probe, baseline], check=True, capture_output=True, text=True, timeout=300
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[_normalize(name)] = version
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_robot_image_packages_cover_what_the_robot_nodes_import() -> None:
    robot = _pins(REPO / "requirements" / "robot.txt")
    lock = _pins(REPO / "requirements" / "lock.txt")
    assert {name: lock.get(name) for name in robot} == robot, "robot.txt must pin the lock's versions"
    modules = _imported_distributions(
        "import openpi_ros.policy_node, openpi_ros.chunk_executor_node, openpi_ros.recorder_node,"
        " openpi_ros.synthetic_robot_node, openpi_core.serving.client\n"
        "openpi_ros.recorder_node._typestore()"  # rosbags' type store, as the recorder builds it
    )
    assert "jax" not in modules, "the robot side must not need JAX"
    assert "torch" not in modules
    missing = {}
    for module, dists in modules.items():
        if module in APT_MODULES | OWN or any(_normalize(d).startswith("ros-") for d in dists):
            continue  # Ubuntu's packages, this project, the distro's ROS 2
        if not any(_normalize(d) in robot for d in dists):
            missing[module] = dists
    assert not missing, f"imported by the robot nodes but not in requirements/robot.txt: {missing}"


def _closure(roots: list[str]) -> set[str]:
    """Installed distributions that `pip install <roots>` pulls in (extras and markers evaluated)."""
    from importlib import metadata  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415

    seen: set[str] = set()
    todo = [Requirement(root) for root in roots]
    while todo:
        req = todo.pop()
        name = _normalize(req.name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue  # e.g. jax-cuda12-plugin: not on this CPU machine
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for text in requires:
            dep = Requirement(text)
            envs = [{"extra": extra} for extra in req.extras or {""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in envs):
                todo.append(dep)
    return {key.split("[")[0] for key in seen}


def test_server_image_install_covers_what_serving_a_checkpoint_imports(tmp_path: Path) -> None:
    dockerfile = (DOCKER / "server.Dockerfile").read_text()
    install = re.search(r'RUN pip install -c requirements/lock.txt "(jax\[cuda12\]==[\d.]+)" "\.\[(.+)\]"', dockerfile)
    assert install, "server.Dockerfile's install line changed: update this test"
    extras = install.group(2)
    closure = _closure(["jax", f"openpi-core[{extras}]"])
    checkpoint = _debug_aloha_checkpoint(tmp_path)
    modules = _imported_distributions(
        f"import os; os.environ['OPENPI_DATA_HOME'] = {str(tmp_path / 'cache')!r}\n"
        "from openpi_core.serving import cli\n"
        f"args = cli._parser().parse_args(['--config', 'debug_aloha', '--checkpoint', {str(checkpoint)!r}])\n"
        "policy = cli._policy(args)\n"
        "from openpi_core.robots.aloha import make_aloha_example; policy.infer(make_aloha_example())\n"
        "from openpi_core.serving.server import PolicyServer"
    )
    for heavy in ("torch", "lerobot", "rclpy"):
        assert heavy not in modules, f"serving imports {heavy}, which the server image does not install"
    missing = {
        module: dists
        for module, dists in modules.items()
        if module not in OWN | OPTIONAL_FOR_JAX and not any(_normalize(d) in closure for d in dists)
    }
    assert not missing, f"imported when serving but not installed by server.Dockerfile: {missing}"


def _debug_aloha_checkpoint(tmp: Path) -> Path:
    """A random-weight `debug_aloha` checkpoint (its small built-in tokenizer is made offline on first use)."""
    from helpers.policies import write_random_checkpoint  # noqa: PLC0415

    from openpi_core import normalize  # noqa: PLC0415
    from openpi_core.training import configs as _configs  # noqa: PLC0415

    config = _configs.get_config("debug_aloha")
    checkpoint = tmp / "checkpoint"
    if not checkpoint.exists():
        stats = {key: normalize.NormStats(mean=np.zeros(14), std=np.ones(14)) for key in ("state", "actions")}
        write_random_checkpoint(config, checkpoint, config.data.repo_id, stats)
    return checkpoint


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} / ${VAR:?error} / ${VAR} substitution."""

    def sub(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        return value or (arg if op == ":-" else "")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, text)


def test_compose_file_matches_the_images_and_the_launch_arguments() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"server", "robot"}
    for service in services.values():
        assert (REPO / service["build"]["dockerfile"]).is_file()
        assert service["build"]["context"] == ".."
    serve_script = (DOCKER / "serve.sh").read_text()
    for variable in services["server"]["environment"]:
        assert variable == "OPENPI_SERVER_API_KEY" or f"${{{variable}" in serve_script, variable
    with pytest.raises(KeyError, match="OPENPI_CONFIG"):
        _interpolate(services["server"]["environment"]["OPENPI_CONFIG"], {})
    command = [_interpolate(part, {}) for part in services["robot"]["command"]]
    assert command[:4] == ["ros2", "launch", "openpi_ros", "aloha.launch.py"]
    assert (REPO / "launch" / command[3]).is_file()
    from openpi_ros.graphs import RobotGraphConfig  # noqa: PLC0415

    config = RobotGraphConfig.from_strings(dict(arg.split(":=", 1) for arg in command[4:]))
    assert config.policy == "remote"
    assert config.server_url == "ws://127.0.0.1:8000"
    assert not config.synthetic


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_compose_commands_run_outside_docker(tmp_path: Path, ros_context: object, spawn: object) -> None:
    """The server as the image starts it (docker/serve.sh with compose's environment), the robot graph from the
    compose command (split-host variables, synthetic robot): chunks from the served checkpoint reach the executor."""

    from openpi_msgs.msg import ActionChunk, ExecutorStatus  # noqa: PLC0415
    from openpi_ros.graphs import RobotGraphConfig, robot_graph  # noqa: PLC0415

    checkpoint = _debug_aloha_checkpoint(tmp_path)
    port = _free_port()
    services = _compose()["services"]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OPENPI_DATA_HOME": str(tmp_path / "cache"),
        "OPENPI_SERVER_API_KEY": "s3cret",
    }
    server_env = {
        k: _interpolate(str(v), {"OPENPI_CONFIG": "debug_aloha"}) for k, v in services["server"]["environment"].items()
    }
    server_env |= {"OPENPI_CHECKPOINT": str(checkpoint), "OPENPI_PORT": str(port), "OPENPI_HOST": "127.0.0.1"}
    server_env["OPENPI_SERVER_API_KEY"] = "s3cret"
    server = spawn([str(DOCKER / "serve.sh"), "--num-steps", "2"], env={**env, **server_env})
    deadline = time.monotonic() + 300
    lines = []
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        lines.append(line)
        if "listening on ws://127.0.0.1:" in line or server.poll() is not None:
            break
    assert f"listening on ws://127.0.0.1:{port}" in lines[-1], "".join(lines)

    robot_vars = {"OPENPI_SERVER_URL": f"ws://127.0.0.1:{port}", "OPENPI_SYNTHETIC": "true", "OPENPI_PROMPT": "wave"}
    command = [_interpolate(part, robot_vars) for part in services["robot"]["command"]]
    arguments = dict(arg.split(":=", 1) for arg in command[4:])
    # A CPU under load can take over a second per chunk: the executor's 1 s freshness bound would refuse them all.
    config = RobotGraphConfig.from_strings({**arguments, "namespace": "compose", "rate": "5", "max_chunk_age": "10"})
    for spec in robot_graph(config):
        spawn(spec.command(), env=env)
    probe = Probe(ros_context, "compose")
    try:
        chunks = probe.listen(ActionChunk, "action_chunk")
        statuses = probe.listen(ExecutorStatus, "executor_status")

        def accepted() -> int:
            return statuses[-1].chunks_received - statuses[-1].chunks_rejected if statuses else 0

        # Accepted by the executor is the wiring; whether it then moves depends on the inference latency (the debug
        # model's 10 rows last 0.2 s: a loaded CPU answers later than that), which other tests cover.
        probe.wait(lambda: len(chunks) >= 2 and accepted() >= 2, "chunks from the served checkpoint", 120)
    finally:
        probe.close()
    chunk = chunks[-1]
    assert chunk.config_name == "debug_aloha"
    assert chunk.prompt == "wave"
    assert (chunk.horizon, chunk.action_dim) == (10, 14)
    assert statuses[-1].state != ExecutorStatus.STATE_FAULT, statuses[-1].message
