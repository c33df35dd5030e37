"""Time training steps of a named config on this machine.

    python -m openpi_core.training.benchmark debug --steps 20 --batch-size 2

Prints the compile time of the train step, then the median / p90 of the step time (device work, measured with
`block_until_ready`) and of the batch time (data loading and transforms), and samples per second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np

from openpi_core.training import config as _config
from openpi_core.training import configs as _configs
from openpi_core.training import data_loader, sharding, trainer


def run(config: _config.TrainConfig, *, steps: int, warmup: int) -> dict[str, float]:
    mesh = sharding.make_mesh(config.fsdp_devices)
    train = trainer.Trainer(config, mesh)
    state = train.init(jax.random.key(config.seed), {})
    data_config = config.data.create(config.assets_dirs, config.model)
    dataset = data_loader.create_dataset(config, data_config)
    loader = iter(data_loader.DataLoader(dataset, batch_size=config.batch_size, mesh=mesh, seed=config.seed))
    step = train.jit_train_step()
    rng = jax.random.key(0)
    batch = next(loader)
    start = time.perf_counter()
    compiled = step.lower(rng, state, batch).compile()
    compile_s = time.perf_counter() - start
    step_times, data_times = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(loader)
        jax.block_until_ready(batch)
        t1 = time.perf_counter()
        state, info = compiled(rng, state, batch)
        jax.block_until_ready(info)
        t2 = time.perf_counter()
        if i >= warmup:
            data_times.append(t1 - t0)
            step_times.append(t2 - t1)
    step_ms, data_ms = np.asarray(step_times) * 1e3, np.asarray(data_times) * 1e3
    total = float(np.median(step_ms + data_ms))
    return {
        "config": config.name,
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()}",
        "batch_size": config.batch_size,
        "compile_s": compile_s,
        "step_ms_median": float(np.median(step_ms)),
        "step_ms_p90": float(np.percentile(step_ms, 90)),
        "data_ms_median": float(np.median(data_ms)),
        "samples_per_s": config.batch_size / (total / 1e3),
        "final_loss": float(info["loss"]),
        "steps": steps,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="debug")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = _configs.get_config(args.config)
    if args.batch_size:
        config = dataclasses.replace(config, batch_size=args.batch_size)
    result = run(config, steps=args.steps, warmup=args.warmup)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"config        {result['config']} (batch {result['batch_size']}) on {result['device']}")
    print(f"compile       {result['compile_s']:.2f} s")
    step = f"median {result['step_ms_median']:.1f} ms, p90 {result['step_ms_p90']:.1f} ms"
    print(f"train step    {step} ({args.steps} steps)")
    print(f"batch         median {result['data_ms_median']:.1f} ms (loading + transforms)")
    print(f"throughput    {result['samples_per_s']:.2f} samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
