"""Node `recorder`: records demonstrations as rosbag2 bags, one bag folder per episode (no `ros2 bag` needed).

Subscribes raw (serialized bytes, no conversion) to every topic in ``topics`` as soon as it appears on the graph,
with the publishers' reliability (best effort where any publisher is best effort, else reliable), and writes the
messages through `rosbags` with the receive time as the log time. ``storage`` picks ``mcap`` (default) or
``sqlite3``. ``~/start_episode`` (openpi_msgs/StartEpisode, with the task text) opens
``<output_dir>/episode_NNNNNN``; ``~/stop_episode`` (openpi_msgs/StopEpisode, optionally discarding the episode)
closes it. The task and episode facts are stored in the bag's metadata (``custom_data``: ``openpi.task``,
``openpi.end``), where `openpi-convert-rosbag` reads them. SIGINT/SIGTERM close an open episode cleanly
(``openpi.end: shutdown``), so a bag is never left without its metadata; a bag of a process killed with SIGKILL has
no metadata.yaml and the converter names it as unreadable.
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from openpi_core.rosbag_to_lerobot.metadata_keys import END_DISCARDED, END_KEY, END_SHUTDOWN, END_STOPPED, TASK_KEY
from openpi_msgs.srv import StartEpisode, StopEpisode
from openpi_ros.node_main import optional_list, run_node

STORAGES = ("mcap", "sqlite3")
_EPISODE_RE = re.compile(r"^episode_(\d{6})$")
# Queue per subscription: a recorder should not lose a message to a slow disk for a moment.
_QUEUE_DEPTH = 100


def _typestore():
    from rosbags.typesys import Stores, get_typestore  # noqa: PLC0415

    return get_typestore(Stores.ROS2_KILTED)


def register_package_types(typestore, msgtype: str) -> None:
    """Teach `typestore` every message of `msgtype`'s package from its installed .msg files (ament index), for
    types rosbags does not ship (e.g. openpi_msgs). Raises LookupError naming the type when none are found."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory  # noqa: PLC0415
    from rosbags.typesys import get_types_from_msg  # noqa: PLC0415

    package = msgtype.split("/", maxsplit=1)[0]
    try:
        share = Path(get_package_share_directory(package))
    except PackageNotFoundError:
        raise LookupError(f"{msgtype}: package {package!r} is not installed, so its definition is unknown") from None
    types: dict = {}
    for path in sorted((share / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    if msgtype not in types:
        raise LookupError(f"{msgtype}: no {msgtype.rsplit('/', maxsplit=1)[-1]}.msg in {share / 'msg'}")
    typestore.register(types)


class EpisodeBag:
    """One episode's rosbag2 folder: connections added as topics are recorded, custom data, a clean close."""

    def __init__(self, path: Path, storage: str, typestore, task: str) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415

        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self.path = path
        self.messages = 0
        self._typestore = typestore
        self._writer = Writer(path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._writer.set_custom_data(TASK_KEY, task)
        self._writer.set_custom_data("openpi.recorder", "openpi_ros recorder")
        self._connections: dict[str, object] = {}

    def write(self, topic: str, msgtype: str, stamp_ns: int, raw: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            if msgtype not in self._typestore.fielddefs:
                register_package_types(self._typestore, msgtype)
            connection = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
            self._connections[topic] = connection
        self._writer.write(connection, stamp_ns, raw)
        self.messages += 1

    def close(self, end: str) -> None:
        self._writer.set_custom_data(END_KEY, end)
        self._writer.close()


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder")
        p = self.declare_parameter
        p("topics", Parameter.Type.STRING_ARRAY)
        self._topics = [t if t.startswith("/") else f"/{t}" for t in optional_list(self, "topics")]
        if not self._topics:
            raise ValueError("parameter 'topics': list the topics to record, e.g. topics:=[/joint_states]")
        self._output = Path(str(p("output_dir", "demos").value)).expanduser().resolve()
        self._storage = str(p("storage", "mcap").value)
        if self._storage not in STORAGES:
            raise ValueError(f"parameter 'storage': {self._storage!r}; expected one of {STORAGES}")
        self._default_task = str(p("task", "").value)
        self._output.mkdir(parents=True, exist_ok=True)
        self._typestore = _typestore()
        self._types: dict[str, str] = {}  # topic -> msgtype once subscribed
        self._subscriptions_by_topic: dict[str, object] = {}
        self._bag: EpisodeBag | None = None
        self._episode_index = self._next_index()
        self.create_service(StartEpisode, "~/start_episode", self._on_start)
        self.create_service(StopEpisode, "~/stop_episode", self._on_stop)
        self._discovery_timer = self.create_timer(0.5, self._discover)
        self._discover()
        self.get_logger().info(f"recording {self._topics} into {self._output} ({self._storage}); waiting for start")

    def _next_index(self) -> int:
        found = [int(m.group(1)) for d in self._output.iterdir() if (m := _EPISODE_RE.match(d.name))]
        return max(found, default=-1) + 1

    def _discover(self) -> None:
        graph = dict(self.get_topic_names_and_types())
        for topic in self._topics:
            if topic in self._types or topic not in graph:
                continue
            ros_type = graph[topic][0]
            if len(graph[topic]) > 1:
                self.get_logger().warning(f"{topic}: several types {graph[topic]}; recording {ros_type}")
            try:
                package, kind, name = ros_type.split("/")
                msg_class = getattr(importlib.import_module(f"{package}.{kind}"), name)
            except (ValueError, ImportError, AttributeError) as error:
                self.get_logger().error(f"{topic}: cannot import its type {ros_type} ({error}); not recorded")
                self._types[topic] = ""
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            best_effort = any(info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for info in publishers)
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=_QUEUE_DEPTH,
                reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE,
            )
            self._types[topic] = ros_type
            self._subscriptions_by_topic[topic] = self.create_subscription(
                msg_class, topic, lambda raw, t=topic, m=ros_type: self._on_message(t, m, raw), qos, raw=True
            )
            self.get_logger().info(
                f"subscribed to {topic} ({ros_type}, {'best effort' if best_effort else 'reliable'})"
            )
        if all(topic in self._types for topic in self._topics):
            self._discovery_timer.cancel()

    def _on_message(self, topic: str, msgtype: str, raw: bytes) -> None:
        if self._bag is None:
            return
        try:
            self._bag.write(topic, msgtype, self.get_clock().now().nanoseconds, raw)
        except LookupError as error:
            self.get_logger().error(f"{topic}: {error}; unsubscribing")
            self.destroy_subscription(self._subscriptions_by_topic.pop(topic))

    def _on_start(self, request: StartEpisode.Request, response: StartEpisode.Response) -> StartEpisode.Response:
        if self._bag is not None:
            response.success, response.message = False, f"episode {self._bag.path.name} is already recording"
            return response
        task = request.task or self._default_task
        path = self._output / f"episode_{self._episode_index:06d}"
        try:
            self._bag = EpisodeBag(path, self._storage, self._typestore, task)
        except Exception as error:
            response.success, response.message = False, f"cannot open {path}: {error}"
            return response
        self._episode_index += 1
        missing = [t for t in self._topics if not self._types.get(t)]
        response.success, response.bag_path = True, str(path)
        response.message = f"recording {path.name}" + (f"; not yet on the graph: {missing}" if missing else "")
        self.get_logger().info(f"{response.message} (task {task!r})")
        return response

    def _on_stop(self, request: StopEpisode.Request, response: StopEpisode.Response) -> StopEpisode.Response:
        if self._bag is None:
            response.success, response.message = False, "no episode is recording"
            return response
        bag, self._bag = self._bag, None
        bag.close(END_DISCARDED if request.discard else END_STOPPED)
        response.success, response.messages = True, bag.messages
        if request.discard:
            shutil.rmtree(bag.path)
            response.message = f"discarded {bag.path.name} ({bag.messages} messages)"
        else:
            response.bag_path = str(bag.path)
            response.message = f"saved {bag.path.name} ({bag.messages} messages)"
        self.get_logger().info(response.message)
        return response

    def destroy_node(self) -> None:
        if self._bag is not None:
            bag, self._bag = self._bag, None
            bag.close(END_SHUTDOWN)
            self.get_logger().info(f"closed {bag.path.name} on shutdown ({bag.messages} messages)")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    sys.exit(main())
