"""sensor_msgs/Image <-> numpy without cv_bridge.

Works on anything with the fields of sensor_msgs/Image (rclpy messages, rosbags messages, plain objects).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from openpi_core.errors import OpenpiError

__all__ = ["SUPPORTED_ENCODINGS", "ImageDecodeError", "compressed_to_rgb", "image_to_rgb", "rgb_to_image_fields"]

# encoding -> (channels, conversion to RGB)
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
SUPPORTED_ENCODINGS = tuple(_CHANNELS)


class ImageDecodeError(OpenpiError, ValueError):
    """An Image message cannot be turned into an RGB array; the message names the field."""


def _bytes_view(data: Any) -> np.ndarray:
    """A message's byte field as uint8, without a copy where it has the buffer protocol (bytes, array.array as
    rclpy gives `uint8[]`, numpy as rosbags gives it)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints
        return np.frombuffer(bytes(data), dtype=np.uint8)


def image_to_rgb(msg: Any, *, topic: str = "image", copy: bool = True) -> np.ndarray:
    """Return a uint8 array [height, width, 3] in RGB order: owned, or with ``copy=False`` a read-only view of the
    message's buffer where the encoding allows (rgb8, bgr8, rgba8, bgra8; the message stays alive with it).

    Honours `step` (row padding) and rejects anything inconsistent instead of guessing.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in _CHANNELS:
        raise ImageDecodeError(
            f"{topic}: field 'encoding' is {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    channels = _CHANNELS[encoding]
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{topic}: fields 'height'/'width' must be positive, got {height}x{width}")
    if step < width * channels:
        raise ImageDecodeError(f"{topic}: field 'step' is {step}, less than width*channels = {width * channels}")
    buf = _bytes_view(msg.data)
    if buf.size != step * height:
        raise ImageDecodeError(f"{topic}: field 'data' has {buf.size} bytes, expected step*height = {step * height}")
    rows = buf.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(rows, 3, axis=2)
    rgb = {"rgb8": rows, "bgr8": rows[..., ::-1], "rgba8": rows[..., :3], "bgra8": rows[..., 2::-1]}[encoding]
    if copy:
        return rgb.copy()
    rgb.flags.writeable = False
    return rgb


def compressed_to_rgb(msg: Any, *, topic: str = "image/compressed") -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG; colour or mono) -> owned uint8 [height, width, 3] RGB."""
    buf = _bytes_view(msg.data)
    if buf.size == 0:
        raise ImageDecodeError(f"{topic}: field 'data' is empty")
    fmt = str(msg.format).lower()
    if fmt and not any(kind in fmt for kind in ("jpeg", "jpg", "png")):
        raise ImageDecodeError(f"{topic}: field 'format' is {msg.format!r}; supported: jpeg, png")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"{topic}: field 'data' ({buf.size} bytes) is not a decodable JPEG or PNG image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """Encode an RGB uint8 array [H, W, 3] as the Image fields height, width, encoding, is_bigendian, step, data."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    encoding = encoding.lower()
    if encoding == "rgb8":
        out = rgb
    elif encoding == "bgr8":
        out = rgb[..., ::-1]
    elif encoding == "rgba8":
        out = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    elif encoding == "bgra8":
        out = np.concatenate([rgb[..., ::-1], np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    elif encoding == "mono8":
        # ITU-R BT.601 luma, as OpenCV's RGB2GRAY.
        out = np.round(rgb @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)[..., None]
    else:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    out = np.ascontiguousarray(out)
    return {
        "height": out.shape[0],
        "width": out.shape[1],
        "encoding": encoding,
        "is_bigendian": 0,
        "step": out.shape[1] * out.shape[2],
        "data": out.tobytes(),
    }
