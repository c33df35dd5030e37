"""Camera frames converted only when used (no ROS types here).

A camera at 30 Hz into a 10 Hz policy delivers three frames per inference, and decoding and resizing each one as
it arrives spends two thirds of that work on frames nobody reads. The policy node therefore keeps the newest
message of each camera as a `PendingFrame` (the message and how to convert it) and converts it at most once: when
an inference takes it (`FrameConverter.convert`, all cameras in parallel), or ahead of time when an inference is
due before the next frame can arrive (`FrameConverter.prefetch`), so the conversion is mostly off the path from
observation to chunk. The conversion itself is unchanged (openpi's resize, bit for bit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["FrameConverter", "PendingFrame"]


class PendingFrame:
    """One message and its conversion, run at most once (on whichever thread asks first); thread-safe.

    The converted image, or the error the conversion raised, is kept and returned (raised) to every later caller;
    the message itself is released once converted."""

    __slots__ = ("_convert", "_error", "_image", "_lock")

    def __init__(self, convert: Callable[[], np.ndarray]) -> None:
        self._convert: Callable[[], np.ndarray] | None = convert
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._error: Exception | None = None

    @property
    def converted(self) -> bool:
        return self._convert is None

    @property
    def error(self) -> Exception | None:
        """The conversion's error once it failed (None before it ran, or when it succeeded)."""
        return self._error

    def get(self) -> np.ndarray:
        with self._lock:
            if self._convert is not None:
                try:
                    self._image = self._convert()
                except Exception as exc:  # kept: a frame that cannot be converted fails every observation using it
                    self._error = exc
                self._convert = None
        if self._error is not None:
            raise self._error
        assert self._image is not None
        return self._image


class FrameConverter:
    """Converts pending frames on `workers` threads (0: on the calling thread)."""

    def __init__(self, workers: int = 0) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="frame-convert") if workers > 0 else None

    def prefetch(self, frame: PendingFrame) -> None:
        """Start converting `frame` in the background (an error is kept in the frame for its user)."""
        if self._pool is not None and not frame.converted:
            self._pool.submit(frame.get)

    def convert(self, images: Mapping[str, np.ndarray | PendingFrame]) -> dict[str, np.ndarray]:
        """Every image as an array; pending frames are converted in parallel (a frame already being converted is
        waited for, not converted twice). Raises the first camera's conversion error."""
        pending = [image for image in images.values() if isinstance(image, PendingFrame) and not image.converted]
        if self._pool is not None and len(pending) > 1:
            for frame in pending[1:]:  # this thread takes the first one itself
                self._pool.submit(frame.get)
        return {name: image.get() if isinstance(image, PendingFrame) else image for name, image in images.items()}

    def close(self) -> None:
        """Drop queued conversions and wait for running ones (tens of milliseconds at most)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
