"""Camera images as openpi's robot-side code handles them (numpy; the model's own JAX resize is `models.image_tools`).

`resize_with_pad` is openpi_client's `image_tools.resize_with_pad` (what openpi's clients run on the robot and what
openpi's `ResizeImages` transform runs in training and serving): Pillow's BILINEAR resample, which antialiases (a
triangle filter whose support grows with the downscale factor), keeping the aspect ratio and padding with zeros.
It is computed by Pillow itself, so it is equal to openpi's bit for bit; OpenCV's INTER_LINEAR, which does not
antialias, leaves ~43% of a 480x640 frame's pixels more than one level off at 224x224.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["parse_image", "resize_with_pad"]

_RGB_CHANNELS = (3, 4)


def parse_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """uint8 or float in [0, 1], HWC or CHW (LeRobot decodes video to float CHW) -> uint8 HWC, as openpi's adapters
    do (``(255 * image).astype(uint8)``; here out-of-range floats are clipped first instead of wrapping around)."""
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


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize [..., h, w, c] images to [..., height, width, c] keeping the aspect ratio, zero padding (openpi_client's
    `resize_with_pad`). uint8 RGB/RGBA go through Pillow as openpi's do; other channel counts and float images
    are resized channel by channel with Pillow's 8-bit ('L') or 32-bit float ('F') resample."""
    image = np.asarray(image)
    if image.ndim < 3:
        raise ValueError(f"image: expected [..., height, width, channels], got shape {image.shape}")
    if image.shape[-3:-1] == (height, width):
        return image
    if height <= 0 or width <= 0:
        raise ValueError(f"resize_with_pad: target size must be positive, got {height}x{width}")
    flat = image.reshape(-1, *image.shape[-3:])
    out = np.stack([_resize_one(im, height, width) for im in flat])
    return out.reshape(*image.shape[:-3], height, width, image.shape[-1])


def _resize_one(image: np.ndarray, height: int, width: int) -> np.ndarray:
    cur_height, cur_width, channels = image.shape
    ratio = max(cur_width / width, cur_height / height)
    new_height, new_width = int(cur_height / ratio), int(cur_width / ratio)
    if image.dtype == np.uint8 and channels in _RGB_CHANNELS:  # Image.fromarray makes these RGB / RGBA
        resized = np.asarray(_resample(Image.fromarray(image), new_width, new_height))
    elif image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating):
        kind = np.uint8 if image.dtype == np.uint8 else np.float32  # Pillow's 'L' or 'F' images
        planes = [Image.fromarray(np.ascontiguousarray(image[..., c], dtype=kind)) for c in range(channels)]
        resized = np.stack([np.asarray(_resample(plane, new_width, new_height)) for plane in planes], axis=-1)
    else:
        raise ValueError(f"image: dtype {image.dtype} is neither uint8 nor float")
    resized = resized.astype(image.dtype, copy=False)
    out = np.zeros((height, width, channels), dtype=image.dtype)
    top, left = max(0, (height - new_height) // 2), max(0, (width - new_width) // 2)
    out[top : top + new_height, left : left + new_width] = resized
    return out


def _resample(image: Image.Image, width: int, height: int) -> Image.Image:
    return image.resize((width, height), resample=Image.Resampling.BILINEAR)
