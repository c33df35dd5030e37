"""Fast DDS settings for large camera frames between processes (the shared-memory segment size)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["LARGE_DATA_PROFILE", "apply_large_data_profile"]

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
