"""Recorded bags → a LeRobot v3.0 dataset: `python training/convert_rosbag.py BAG... --mapping M.yaml --output DIR`.

The same as the `openpi-convert-rosbag` command; the code is `openpi_core.rosbag_to_lerobot.convert`.
"""

from __future__ import annotations

import sys

from openpi_core.rosbag_to_lerobot.convert import main

if __name__ == "__main__":
    sys.exit(main())
