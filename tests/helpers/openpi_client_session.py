"""Run by the interpreter of `.venv-client` (openpi's published `openpi-client`, numpy<2), not by the test process.

    python openpi_client_session.py <url> <api_key or ""> <out.npz>

Connects with `openpi_client.websocket_client_policy.WebsocketClientPolicy`, sends a LIBERO observation, a
malformed one (wrong state size), and the first again, and saves what came back for the test to check.
"""

import json
import sys

import numpy as np
from openpi_client import websocket_client_policy


def main() -> None:
    url, api_key, out = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    client = websocket_client_policy.WebsocketClientPolicy(url, api_key=api_key)
    rng = np.random.default_rng(0)
    obs = {
        "observation/image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.uniform(-1, 1, 8).astype(np.float32),
        "prompt": "open the drawer",
    }
    first = client.infer(obs)
    try:
        client.infer({**obs, "observation/state": np.zeros(5, np.float32)})
        error = ""
    except RuntimeError as e:  # openpi's client raises the server's text frame as RuntimeError
        error = str(e)
    second = client.infer(obs)
    np.savez(
        out,
        state=obs["observation/state"],
        first=first["actions"],
        second=second["actions"],
        error=np.array(error),
        metadata=np.array(json.dumps(client.get_server_metadata(), default=str)),
        server_timing=np.array(json.dumps(second["server_timing"])),
    )


if __name__ == "__main__":
    main()
