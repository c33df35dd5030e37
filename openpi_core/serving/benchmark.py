"""Policy server overhead over loopback: `python -m openpi_core.serving.benchmark [--requests 500] [--clients 8]`.

Serves the hold-position policy (≈0.02 ms of "model" time) behind the ALOHA observation spec and sends ALOHA
observations with 3 cameras of 3×224×224 uint8 and a 14-D state, the way a robot does: one request at a time per
client. Per request it records the client round trip and the policy's own time (``policy_timing.infer_ms``); the
difference is what serving costs (msgpack, websocket framing, validation, the executor hop, TCP over loopback).
Then the same with `--clients` concurrent clients (throughput and per-request latency under contention).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

from openpi_core.policies.hold import HoldPositionPolicy
from openpi_core.serving.client import WebsocketPolicyClient
from openpi_core.serving.server import PolicyServer, ServerConfig
from openpi_core.serving.spec import spec_for


def _observation(rng: np.random.Generator) -> dict:
    cams = ("cam_high", "cam_left_wrist", "cam_right_wrist")
    return {
        "state": rng.uniform(-1, 1, 14).astype(np.float32),
        "images": {cam: rng.integers(0, 256, (3, 224, 224), dtype=np.uint8) for cam in cams},
        "prompt": "fold the towel",
    }


def _run_client(url: str, requests: int, seed: int, out: list[tuple[float, float]]) -> None:
    rng = np.random.default_rng(seed)
    observations = [_observation(rng) for _ in range(8)]
    with WebsocketPolicyClient(url) as client:
        for i in range(requests):
            start = time.perf_counter()
            result = client.infer(observations[i % len(observations)])
            rtt = (time.perf_counter() - start) * 1e3
            out.append((rtt, result["policy_timing"]["infer_ms"]))


def _stats(samples: list[tuple[float, float]], wall: float) -> dict[str, float]:
    rtt = np.array([s[0] for s in samples])
    overhead = rtt - np.array([s[1] for s in samples])
    return {
        "requests": len(samples),
        "round_trip_ms_p50": float(np.median(rtt)),
        "round_trip_ms_p99": float(np.percentile(rtt, 99)),
        "overhead_ms_p50": float(np.median(overhead)),
        "overhead_ms_p99": float(np.percentile(overhead, 99)),
        "requests_per_s": len(samples) / wall,
    }


def _line(name: str, r: dict[str, float]) -> str:
    return (
        f"{name:<22} n={r['requests']:5d}  round trip p50 {r['round_trip_ms_p50']:6.2f} ms"
        f"  p99 {r['round_trip_ms_p99']:6.2f} ms  | overhead beyond model p50 {r['overhead_ms_p50']:6.2f} ms"
        f"  p99 {r['overhead_ms_p99']:6.2f} ms  | {r['requests_per_s']:6.0f} req/s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="requests per client (default 500)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the second run (default 8)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)

    policy = HoldPositionPolicy(horizon=50, action_dim=14)
    size_mb = 3 * 3 * 224 * 224 / 1e6
    if not args.json:
        print(f"request: 3 cameras 3x224x224 uint8 + 14-D state (~{size_mb:.2f} MB); reply: 50x14 float32 actions")
    with PolicyServer(policy, ServerConfig(port=0), spec=spec_for("aloha")) as server:
        url = f"ws://127.0.0.1:{server.port}"
        _run_client(url, args.warmup, 0, [])
        samples: list[tuple[float, float]] = []
        start = time.perf_counter()
        _run_client(url, args.requests, 1, samples)
        single = _stats(samples, time.perf_counter() - start)

        per_client: list[list[tuple[float, float]]] = [[] for _ in range(args.clients)]
        threads = [
            threading.Thread(target=_run_client, args=(url, args.requests, 10 + i, per_client[i]))
            for i in range(args.clients)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        concurrent = _stats([s for c in per_client for s in c], time.perf_counter() - start)
        stats = server.stats
    result = {
        "request_mb": size_mb,
        "one_client": single,
        "clients": args.clients,
        "concurrent": concurrent,
        "served": stats.served,
        "refused": stats.refused,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(_line("1 client", single))
        print(_line(f"{args.clients} clients concurrent", concurrent))
        print(f"server: {stats.served} served, {stats.refused} refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
