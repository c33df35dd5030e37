"""The keys the recorder writes into a bag's metadata (rosbag2 `custom_data`) and the converter reads back."""

from __future__ import annotations

__all__ = ["END_DISCARDED", "END_KEY", "END_SHUTDOWN", "END_STOPPED", "TASK_KEY"]

TASK_KEY = "openpi.task"
"""The episode's task text (the prompt a policy is trained with)."""
END_KEY = "openpi.end"
"""How the episode ended: one of the END_* values."""
END_STOPPED = "stopped"
END_SHUTDOWN = "shutdown"
END_DISCARDED = "discarded"
