"""ament_python package `openpi_ros` (builds with colcon, or `pip install ./openpi_ros`)."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "openpi_ros"
HERE = Path(__file__).resolve().parent
# Launch files live in the repository's top-level `launch/` folder; `openpi_ros/launch` links to it so that
# colcon and pip (which only see this folder) both install them into share/openpi_ros/launch.
LAUNCH_FILES = sorted(str(p.relative_to(HERE)) for p in (HERE / "launch").glob("*.launch.py"))

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    package_data={PACKAGE: ["fastdds_large_data.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", LAUNCH_FILES),
        (f"share/{PACKAGE}/config", [f"{PACKAGE}/fastdds_large_data.xml"]),
    ],
    install_requires=["setuptools", "numpy"],
    zip_safe=True,
    maintainer="openpi-ros maintainers",
    maintainer_email="maintainers@openpi-ros.dev",
    description="ROS 2 nodes that run openpi vision-language-action policies.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "synthetic_robot = openpi_ros.synthetic_robot_node:main",
            "policy_node = openpi_ros.policy_node:main",
            "sim_bridge = openpi_ros.sim_bridge_node:main",
            "chunk_executor = openpi_ros.chunk_executor_node:main",
            "recorder = openpi_ros.recorder_node:main",
            "openpi_ros_demo = openpi_ros.demo:main",
            "openpi-record = openpi_ros.record_cli:main",
            "loop_demo = openpi_ros.loop_demo:main",
        ],
    },
)
