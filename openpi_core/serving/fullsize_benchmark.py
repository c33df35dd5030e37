"""The full-size path on this machine: a π₀.₅ checkpoint written in openpi's layout, served by `openpi-serve`.

    python -m openpi_core.serving.fullsize_benchmark              # full size, bf16, random weights (CPU: long)
    python -m openpi_core.serving.fullsize_benchmark --size tiny  # the same path with the debug configs (~20 s)

For each robot (ALOHA through `pi05_aloha`, DROID through `pi05_droid`; `debug_aloha` / `debug_droid` with
`--size tiny`): random weights are made leaf by leaf in bf16 (never a float32 copy of the whole model) and written
as `<dir>/params` (orbax, openpi's layout) with identity norm stats under `<dir>/assets/<asset_id>`; then
`openpi-serve` restores it through `create_trained_policy`, compiles it with one warm-up inference and listens;
openpi's wire protocol (`WebsocketPolicyClient`) sends one observation of the robot's layout and checks the
chunk's shape. Printed per robot: write, restore, compile (warm-up) and inference wall times and the server's peak
memory (VmHWM). Random weights and a small tokenizer (no download): the figures are about the machinery, not
the policy's behaviour. Exit status 0 when every chunk had the expected shape and every server exited 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from openpi_core import normalize
from openpi_core.models import model as _model
from openpi_core.models import tokenizer_sources
from openpi_core.robots import registry
from openpi_core.serving.client import WebsocketPolicyClient
from openpi_core.serving.spec import example_for
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs

CONFIGS = {"full": ("pi05_aloha", "pi05_droid"), "tiny": ("debug_aloha", "debug_droid")}
SERVER_START_TIMEOUT_S = 3600


@dataclasses.dataclass
class Result:
    robot: str
    config: str
    parameters: int
    write_s: float
    restore_s: float
    compile_s: float
    infer_s: float
    server_peak_gib: float
    chunk_shape: tuple[int, ...]
    ok: bool


def write_checkpoint(config: _config.TrainConfig, folder: Path, seed: int = 0) -> int:
    """Random bf16 weights in openpi's layout (one leaf at a time), identity norm stats; returns the parameter count."""
    abstract = nnx.state(config.model.abstract_model(), nnx.Param)
    leaves, treedef = jax.tree.flatten(nnx.to_pure_dict(abstract))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    dtype = jnp.dtype(config.model.dtype)
    arrays = []
    for key, leaf in zip(keys, leaves, strict=True):
        kind = dtype if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf.dtype
        arrays.append(np.asarray(0.02 * jax.random.normal(key, leaf.shape, jnp.float32).astype(kind)))
    count = sum(a.size for a in arrays)
    _model.save_params(folder / "params", jax.tree.unflatten(treedef, arrays))
    del arrays
    data = config.data.create(folder / "assets", config.model)
    dim = config.model.action_dim
    identity = normalize.NormStats(mean=np.zeros(dim), std=np.ones(dim), q01=-np.ones(dim), q99=np.ones(dim))
    stats = {"state": identity, "actions": identity}
    normalize.save(folder / "assets" / data.asset_id, stats)
    gc.collect()
    return int(count)


def _peak_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def serve_and_query(robot: str, name: str, folder: Path, log: Path) -> tuple[float, float, float, float, tuple]:
    """(restore s, compile s, inference s, server peak GiB, chunk shape) through `openpi-serve`."""
    cmd = [
        sys.executable, "-m", "openpi_core.serving", "--config", name, "--checkpoint", str(folder), "--port", "0",
        "--robot", robot, "--paligemma-tokenizer", tokenizer_sources.SMALL_PALIGEMMA, "--inference-timeout", "3600",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, text=True)
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"openpi-serve did not start: {log.read_text()[-2000:]}")
        url = line.split("listening on ")[1].strip()
        text = log.read_text()
        restore = float(re.search(r"policy restored in ([\d.]+) s", text).group(1))
        compile_s = float(re.search(r"warm-up inference \(compilation included\) took ([\d.]+) s", text).group(1))
        with WebsocketPolicyClient(url, timeout_s=SERVER_START_TIMEOUT_S) as client:
            start = time.perf_counter()
            actions = client.infer(example_for(robot))["actions"]
            infer = time.perf_counter() - start
        peak = _peak_gib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=60) != 0:
            raise RuntimeError(f"openpi-serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        return restore, compile_s, infer, peak, tuple(np.shape(actions))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(CONFIGS), default="full")
    parser.add_argument("--workdir", type=Path, help="where the checkpoints go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="openpi_fullsize_"))
    os.environ.setdefault("OPENPI_DATA_HOME", str(workdir / "cache"))  # the small tokenizer is made there
    results = []
    for name in CONFIGS[args.size]:
        config = _configs.get_config(name)
        robot = config.data.robot_name()
        folder = workdir / name
        print(f"{name}: writing random {config.model.dtype} weights to {folder} ...", flush=True)
        start = time.perf_counter()
        count = write_checkpoint(config, folder)
        write = time.perf_counter() - start
        print(f"{name}: {count / 1e6:,.1f} M parameters written in {write:.1f} s; serving ...", flush=True)
        restore, compile_s, infer, peak, shape = serve_and_query(robot, name, folder, workdir / f"{name}.log")
        expected = (config.model.action_horizon, registry.get(robot).action_dim)
        results.append(Result(robot, name, count, write, restore, compile_s, infer, peak, shape, shape == expected))
        print(f"{name}: chunk {shape} (expected {expected})", flush=True)
    print(f"\n{'robot':6} {'config':12} {'params M':>9} {'write s':>8} {'restore s':>9} {'compile s':>9} "
          f"{'infer s':>8} {'server peak GiB':>15}  chunk")  # fmt: skip
    for r in results:
        print(
            f"{r.robot:6} {r.config:12} {r.parameters / 1e6:9,.1f} {r.write_s:8.1f} {r.restore_s:9.1f} "
            f"{r.compile_s:9.1f} {r.infer_s:8.2f} {r.server_peak_gib:15.2f}  {r.chunk_shape}{'' if r.ok else ' WRONG'}"
        )
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
