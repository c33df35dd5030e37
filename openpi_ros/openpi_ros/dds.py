"""Settings for large camera frames between processes: Fast DDS's shared-memory segment size, and glibc's
allocator kept from handing every frame buffer back to the kernel."""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

__all__ = ["BUFFER_REUSE_ENV", "LARGE_DATA_PROFILE", "apply_large_data_profile", "reuse_large_buffers"]

LARGE_DATA_PROFILE = Path(__file__).with_name("fastdds_large_data.xml")

_PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")

_MIN_SHM_FREE = 64 * 2**20


def apply_large_data_profile() -> bool:
    """Use `fastdds_large_data.xml` (4 MB shared-memory segments, so camera frames arrive) for this process's DDS
    participant, unless a profile is already configured, the middleware is not Fast DDS, or /dev/shm is too small.
    Call before `rclpy.init`. Returns whether the profile was applied."""
    if any(os.environ.get(var) for var in _PROFILE_VARS):
        return False
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") not in ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return False
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return False
    if stats.f_bavail * stats.f_frsize < _MIN_SHM_FREE:
        logging.getLogger(__name__).warning(
            "/dev/shm has under 64 MiB free: keeping Fast DDS's default transports (large images may be dropped)"
        )
        return False
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(LARGE_DATA_PROFILE)
    return True


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Buffers up to this size come from the heap (glibc's largest allowed threshold on 64-bit: 32 MiB).
_MMAP_THRESHOLD = 32 * 2**20
# Free memory the heap may keep instead of returning it to the kernel.
_TRIM_THRESHOLD = 128 * 2**20

BUFFER_REUSE_ENV = "OPENPI_ROS_REUSE_LARGE_BUFFERS"


def reuse_large_buffers() -> bool:
    """Keep frame-sized buffers (up to 32 MiB) inside the heap instead of mmap/munmap per allocation.

    glibc serves allocations above its mmap threshold (128 KiB, rising only to the largest size freed so far) with
    fresh mmaps and trims freed heap tops beyond twice that. Every received frame passes through several such
    buffers (the DDS history, the C message, the Python message), so each one paid ~650 page faults here: a node
    that only received 3 cameras of 480x640 rgb8 at 30 Hz spent 24.7% of a core, 58,000 minor faults/s; with these
    settings 7.1% and under 200 faults/s. The price is up to ~128 MiB of freed memory the process keeps for reuse.
    Off with ``OPENPI_ROS_REUSE_LARGE_BUFFERS=0``; glibc only (elsewhere nothing changes). Returns whether applied."""
    if os.environ.get(BUFFER_REUSE_ENV, "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
