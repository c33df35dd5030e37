"""A policy server whose policy takes `delay` seconds per request, in a process of its own (for memory checks).

python tests/helpers/slow_server.py DELAY MAX_QUEUE   -> prints "listening on ws://127.0.0.1:PORT", serves until SIGINT
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import numpy as np

from openpi_core.serving.server import PolicyServer, ServerConfig


class SlowPolicy:
    metadata: dict = {}  # noqa: RUF012

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        time.sleep(self.delay)
        return {"actions": np.zeros((2, 3), np.float32)}


def main() -> None:
    delay, max_queue = float(sys.argv[1]), int(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with PolicyServer(SlowPolicy(delay), ServerConfig(port=0, max_queue=max_queue)) as server:
        print(f"listening on ws://127.0.0.1:{server.port}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
