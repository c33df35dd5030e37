# openpi-ros on the robot: the distro's ROS 2 (Jazzy on Ubuntu 24.04, amd64 and arm64, so Jetson Orin/Thor too),
# ros2_ws built with colcon, and the ROS-side part of openpi_core (remote policy client; recorder). The model runs
# in the policy server (docker/server.Dockerfile) on this host's GPU or another machine's.
#
#   docker build -f docker/robot.Dockerfile -t openpi-ros/robot .
#   docker run --rm -it --network host --ipc host -e OPENPI_SERVER_API_KEY openpi-ros/robot \
#     ros2 launch openpi_ros aloha.launch.py policy:=remote server_url:=ws://gpu-box:8000
#   docker run --rm --network host --ipc host openpi-ros/robot bash -c \
#     "cd ros2_ws && colcon test --packages-select openpi_ros && colcon test-result --verbose"   # launch_testing
ARG ROS_DISTRO=jazzy
FROM ros:${ROS_DISTRO}-ros-base
ARG ROS_DISTRO
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# Unpinned on purpose: the ROS 2 apt repository replaces package versions with every sync, so pins break builds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       python3-pip python3-opencv python3-yaml python3-typing-extensions python3-pytest \
       python3-colcon-common-extensions \
       ros-${ROS_DISTRO}-launch-testing-ros ros-${ROS_DISTRO}-ros2bag ros-${ROS_DISTRO}-rosbag2-storage-mcap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/openpi-ros
COPY requirements/robot.txt requirements/robot.txt
RUN pip3 install --no-deps -r requirements/robot.txt

COPY . .
# openpi_core's base install is the robot side (no JAX, numpy 1.26 from apt satisfies it); requirements/robot.txt
# pins what it and the recorder need first. tests/test_docker.py checks both against the robot nodes' imports.
# hadolint ignore=DL3013
RUN pip3 install -c requirements/robot.txt .
WORKDIR /opt/openpi-ros/ros2_ws
RUN . /opt/ros/${ROS_DISTRO}/setup.bash && colcon build --event-handlers console_direct-
WORKDIR /opt/openpi-ros

COPY docker/robot_entrypoint.sh /usr/local/bin/openpi-ros-entrypoint
ENTRYPOINT ["/usr/local/bin/openpi-ros-entrypoint"]
CMD ["ros2", "launch", "openpi_ros", "aloha.launch.py", "--show-args"]
