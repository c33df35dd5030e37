"""Tiny LeRobot v3.0 datasets written with the real `lerobot` library (video cameras, several episodes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def make_libero_like_dataset(root: Path, *, episodes: int = 2, frames: int = 16, size: int = 64, seed: int = 0) -> Path:
    """LIBERO's LeRobot layout: `image`, `wrist_image` (video), `state` [8], `actions` [7], a task per episode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: PLC0415

    video = {"dtype": "video", "shape": (size, size, 3), "names": ["height", "width", "channel"]}
    features = {
        "image": video,
        "wrist_image": video,
        "state": {"dtype": "float32", "shape": (8,), "names": None},
        "actions": {"dtype": "float32", "shape": (7,), "names": None},
    }
    dataset = LeRobotDataset.create("local/libero_tiny", fps=10, root=root, features=features, use_videos=True)
    rng = np.random.default_rng(seed)
    for episode in range(episodes):
        for frame in range(frames):
            t = frame / frames
            dataset.add_frame(
                {
                    "image": np.full((size, size, 3), int(255 * t), np.uint8),
                    "wrist_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                    "state": (np.sin(t + np.arange(8)) + rng.normal(0, 0.01, 8)).astype(np.float32),
                    "actions": (np.cos(t + np.arange(7)) + rng.normal(0, 0.01, 7)).astype(np.float32),
                    "task": ["pick up the bowl", "open the drawer"][episode % 2],
                }
            )
        dataset.save_episode()
    dataset.finalize()
    return root
