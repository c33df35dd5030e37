"""The README and docs/ stay true: every make target, console script, `python -m` module, script path, CLI flag,
launch argument and link they mention exists, and the README's layout table matches the tree."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from openpi_core.training.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Files at the top of the tree that need no row in the layout table.
UNLISTED = {"README.md", "Makefile", "pyproject.toml", ".gitignore", ".dockerignore"}
# Package names that look like commands.
PACKAGES = {"openpi-core", "openpi-client", "openpi-ur5e-lift"}


def _text(page: Path) -> str:
    return page.read_text()


def _code(page: Path) -> list[str]:
    """Command lines: fenced code blocks and inline code spans (continuation lines joined)."""
    text = _text(page)
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def _console_scripts() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    setup = (REPO / "openpi_ros" / "setup.py").read_text()
    ros = dict(re.findall(r'"([\w-]+) = ([\w.]+):main"', setup))
    return {**{k: v.split(":")[0] for k, v in project.items()}, **ros}


def _make_targets() -> set[str]:
    return set(re.findall(r"(?m)^([\w-]+):", (REPO / "Makefile").read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_in_the_docs_exist(page: Path) -> None:
    scripts, targets = _console_scripts(), _make_targets()
    problems = []
    for line in _code(page):
        for target in re.findall(r"\bmake ([a-z][\w-]*)", line):
            if target not in targets:
                problems.append(f"make {target}")
        modules = re.findall(r"python3? -m ([\w.]+)", line)
        for module in modules:
            if importlib.util.find_spec(module) is None:
                problems.append(f"python -m {module}")
        sources = [importlib.util.find_spec(m) for m in modules]
        files = [Path(s.origin) for s in sources if s is not None and s.origin]
        files += [REPO / p for p in re.findall(r"\b(training/\w+\.py)", line)]
        command = re.sub(r"^\s*(?:\$ )?(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?", "", line)
        for script in re.findall(r"^(openpi-[\w-]+)(?=\s|$)", command):
            if script in PACKAGES:
                continue
            if script not in scripts:
                problems.append(f"console script {script}")
            else:
                spec = importlib.util.find_spec(scripts[script])
                files += [Path(spec.origin)] if spec and spec.origin else []
        paths = r"(?<![\w/.])((?:training|examples|docs|launch|scripts|docker|requirements)/[\w./-]+\.\w+)"
        for path in re.findall(paths, line):
            if "your_" not in path and not (REPO / path).exists():
                problems.append(f"path {path}")
        # Flags (before any --ros-args) must be ones the command's own source declares.
        own = line.split("--ros-args")[0]
        if files and "ros2 " not in own:
            source = "".join(f.read_text() for f in files if f.is_file())
            if "training/" in own:  # train.py and compute_norm_stats.py take TrainConfig's fields (tyro)
                source += " ".join(f'"--{f.name.replace("_", "-")}' for f in dataclasses.fields(TrainConfig))
            if "DEMO_ARGS" in own:
                source += (REPO / "openpi_ros/openpi_ros/sim_eval.py").read_text()
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", own):
                if (
                    flag not in ("--help", "--")
                    and f'"{flag}' not in source
                    and flag.replace("-", "_")[2:] not in source
                ):
                    problems.append(f"flag {flag} in `{line.strip()[:80]}`")
    assert not problems, f"{page.name} mentions what does not exist: {problems}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_launch_arguments_and_links_exist(page: Path) -> None:
    from openpi_ros.graphs import RobotGraphConfig  # noqa: PLC0415

    fields = set(RobotGraphConfig.arguments())
    problems = []
    for line in _code(page):
        if "ros2 launch openpi_ros" in line:
            problems += [f"launch argument {a}" for a in re.findall(r"(\w+):=", line) if a not in fields]
    for target in re.findall(r"\]\(([^)#]+)\)", _text(page)):
        if not target.startswith("http") and not (page.parent / target).exists():
            problems.append(f"link {target}")
    assert not problems, f"{page.name}: {problems}"


def test_the_layout_table_matches_the_tree() -> None:
    readme = _text(REPO / "README.md")
    table = readme[readme.index("## Layout") :].split("\n\n")[1]
    listed = {m.rstrip("/") for m in re.findall(r"^\| `([^`]+)` \|", table, re.M)}
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    top = {line.split("/")[0] for line in tracked.splitlines() if line}
    assert listed - {p for p in listed if (REPO / p).exists()} == set(), "the table lists paths that do not exist"
    assert top - UNLISTED - listed == set(), "top-level entries missing from the README's layout table"
