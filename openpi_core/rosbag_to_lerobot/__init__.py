"""Recorded demonstrations (rosbag2 sqlite3/mcap folders, ROS 1 `.bag` files) -> a LeRobot v3.0 dataset.

`mapping` (the YAML mapping of topics to features) -> `bag_index` (finding and indexing bags) -> `frame_grid`
(resampling, checks, episodes) -> `lerobot_writer` (LeRobot's writer, read-back) -> `convert` (many bags, workers,
the `openpi-convert-rosbag` command line); `report` is the validation report, `metadata_keys` the keys the recorder
writes into bags. No ROS import: bags are read with `rosbags`.
"""
