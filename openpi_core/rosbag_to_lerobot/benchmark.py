"""Conversion throughput: `python -m openpi_core.rosbag_to_lerobot.benchmark [--seconds 60] [--busy-cores 1]`.

Writes demo bag(s) like a real ALOHA recording (three raw rgb8 cameras, 480x640 at 30 fps, a textured scene that
moves so the video encoder has real work; two 7-joint arms and their commands at 50 Hz), converts them with
`openpi-convert-rosbag` once per codec (`--vcodecs`), in one run, and prints per codec: frames/s, the multiple of
real time, CPU seconds per frame and the peak memory of the conversion's largest process, the video size and how
fast a training loader decodes it. `--busy-cores N` keeps N busy-loop processes running meanwhile. Everything is
written under --workdir (default: a temporary folder, removed afterwards).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from openpi_core.rosbag_to_lerobot.metadata_keys import TASK_KEY

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random scene (low-frequency noise, upsampled), wide enough to pan across."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    fine = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:height, :width]
    return np.clip(fine + rng.normal(0, 6, fine.shape), 0, 255).astype(np.uint8)


def write_bag(path: Path, seconds: float, *, height: int = 480, width: int = 640, storage: str = "mcap") -> int:
    """One recording; returns the number of messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415
    from rosbags.typesys import Stores, get_typestore  # noqa: PLC0415

    store = get_typestore(Stores.ROS2_KILTED)
    t = store.types
    scenes = [_texture(height, width * 2, seed) for seed in range(len(CAMERAS))]

    def header(stamp: int, frame: str) -> object:
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS), frame_id=frame
        )

    events: list[tuple[int, int, str, int]] = []  # (time, order, topic, index)
    for c, camera in enumerate(CAMERAS):
        events += [(T0 + round(i * NS / 30), c, f"/{camera}/image_raw", i) for i in range(int(seconds * 30))]
    for a, side in enumerate(("left", "right")):
        for kind in ("joint_states", "commands"):
            topic = f"/{side}/{kind}"
            events += [(T0 + round(i * NS / 50), 10 + a, topic, i) for i in range(int(seconds * 50))]
    events.sort()
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        writer.set_custom_data(TASK_KEY, "transfer the cube")
        connections = {}
        for stamp, _, topic, i in events:
            if topic.endswith("image_raw"):
                c = CAMERAS.index(topic.split("/")[1])
                shift = (i * 4) % width
                pixels = np.ascontiguousarray(scenes[c][:, shift : shift + width])
                msgtype = "sensor_msgs/msg/Image"
                msg = t[msgtype](
                    header=header(stamp, f"{CAMERAS[c]}_optical_frame"), height=height, width=width,
                    encoding="rgb8", is_bigendian=0, step=width * 3, data=pixels.reshape(-1),
                )  # fmt: skip
            else:
                side = topic.split("/")[1]
                names = [f"{side}_{j}" for j in ARM]
                sign = -1.0 if topic.endswith("commands") else 1.0
                msgtype = "sensor_msgs/msg/JointState"
                msg = t[msgtype](
                    header=header(stamp, ""), name=names, position=sign * np.sin(i / 50 + np.arange(7)),
                    velocity=np.zeros(0), effort=np.zeros(0),
                )  # fmt: skip
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], stamp + 1_000_000, store.serialize_cdr(msg, msgtype))
    return len(events)


ARMS = ("left", "right")
MAPPING = {
    "repo_id": "local/benchmark",
    "fps": 30,
    "robot_type": "aloha",
    "cameras": {"top": "/cam_high/image_raw", "left_wrist": "/cam_left_wrist/image_raw",
                "right_wrist": "/cam_right_wrist/image_raw"},
    "state": [{"topic": f"/{arm}/joint_states", "joints": [f"{arm}_{j}" for j in ARM]} for arm in ARMS],
    "action": {"topics": [{"topic": f"/{arm}/commands", "joints": [f"{arm}_{j}" for j in ARM]} for arm in ARMS]},
}  # fmt: skip


def _busy_loop() -> None:
    while True:
        pass


def _video_figures(dataset: Path) -> tuple[float, float]:
    """(MiB of video, decode frames/s of one camera's first video file through PyAV, as a training loader reads)."""
    import av  # noqa: PLC0415

    videos = sorted(dataset.glob("videos/**/*.mp4"))
    size = sum(v.stat().st_size for v in videos) / 2**20
    if not videos:
        return 0.0, 0.0
    start, frames = time.perf_counter(), 0
    with av.open(str(videos[0])) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            frames += 1
    return size, frames / (time.perf_counter() - start)


def _convert_in_child(bags: list[Path], mapping: Path, output: Path, workers: int) -> tuple[float, float, float]:
    """(wall s, CPU s of the conversion's processes, peak RSS MiB of its largest process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [sys.executable, "-m", "openpi_core.rosbag_to_lerobot.convert", *map(str, bags), "--mapping", str(mapping)]
    cmd += ["--output", str(output), "--workers", str(workers), "--quiet", "--overwrite"]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"conversion failed: {result.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each bag")
    parser.add_argument("--bags", type=int, default=1)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--vcodecs", default="h264,libsvtav1", help="LeRobot video codecs to compare, in one run")
    parser.add_argument("--busy-cores", type=int, default=0, help="busy-loop processes running meanwhile (load)")
    parser.add_argument("--workdir", help="keep the bags and the datasets here")
    args = parser.parse_args(argv)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="rosbag_benchmark_"))
    work.mkdir(parents=True, exist_ok=True)
    busy = [multiprocessing.Process(target=_busy_loop, daemon=True) for _ in range(args.busy_cores)]
    try:
        begin = time.perf_counter()
        bags = []
        for i in range(args.bags):
            bags.append(work / f"bag_{i}")
            if not bags[-1].exists():
                write_bag(bags[-1], args.seconds, height=args.height, width=args.width, storage=args.storage)
        size = sum(f.stat().st_size for bag in bags for f in bag.iterdir()) / 2**30
        print(
            f"wrote {args.bags} bag(s) of {args.seconds:.0f} s ({size:.2f} GiB) in {time.perf_counter() - begin:.1f} s"
        )
        for process in busy:
            process.start()
        recorded = args.seconds * args.bags
        frames = round(recorded * MAPPING["fps"])
        rows = []
        for vcodec in args.vcodecs.split(","):
            mapping_file = work / f"mapping_{vcodec}.yaml"
            mapping_file.write_text(yaml.safe_dump(MAPPING | {"vcodec": vcodec}))
            output = work / f"dataset_{vcodec}"
            wall, cpu, peak = _convert_in_child(bags, mapping_file, output, args.workers)
            video_mib, decode_fps = _video_figures(output)
            rows.append((vcodec, wall, cpu, peak, video_mib, decode_fps))
            print(f"{vcodec}: {wall:.1f} s", flush=True)
        print(
            f"\n{recorded:.0f} s recorded: 3 cameras {args.height}x{args.width} rgb8 at 30 fps, {frames} frames; "
            f"{args.workers} worker(s), {os.cpu_count()} CPUs, {args.busy_cores} busy core(s)"
        )
        print(f"{'codec':10} {'frames/s':>9} {'x real time':>11} {'CPU s/frame':>11} {'peak MiB':>9} "
              f"{'video MiB':>9} {'decode fps':>10}")  # fmt: skip
        for vcodec, wall, cpu, peak, video_mib, decode_fps in rows:
            print(
                f"{vcodec:10} {frames / wall:9.1f} {recorded / wall:11.2f} {cpu / frames:11.3f} {peak:9.0f} "
                f"{video_mib:9.1f} {decode_fps:10.0f}"
            )
    finally:
        for process in busy:
            process.terminate()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
