"""Camera images from datasets and robots -> uint8 [h, w, 3] as the models' input transforms expect."""

from __future__ import annotations

import numpy as np


def parse_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """uint8 or float in [0, 1], HWC or CHW (LeRobot decodes video to float CHW) -> uint8 HWC."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"{name}: expected an image [h, w, 3] or [3, h, w], got shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating):
        image = (255 * np.clip(image, 0.0, 1.0)).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{name}: dtype {image.dtype} is neither uint8 nor float")
    if image.shape[0] == 3 and image.shape[-1] != 3:
        image = np.transpose(image, (1, 2, 0))
    if image.shape[-1] != 3:
        raise ValueError(f"{name}: expected 3 colour channels, got shape {image.shape}")
    return image
