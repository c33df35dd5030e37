"""Time `sample_actions` for a model config on this machine (CPU or GPU).

    python -m openpi_core.models.benchmark --model pi0 --size tiny
    python -m openpi_core.models.benchmark --model pi05 --size full --dtype bfloat16     # on a GPU
    python -m openpi_core.models.benchmark --model pi0_fast --size full --max-decoding-steps 64 --params .../params

Prints the compile time, then the median / p90 / min of `--iters` jitted calls after `--warmup` calls, the time of
the prefix pass alone and what it implies per flow step (π₀, π₀.₅) or per decoded token (π₀-FAST), the model's
parameter memory, and the peak memory (GPU: the allocator's peak; CPU: the process's max RSS).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import resource
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from openpi_core.models import model, pi0_config, pi0_fast

logger = logging.getLogger(__name__)

TINY = {"paligemma_variant": "dummy", "vision_variant": "mu/14", "vocab_size": 1024}


def build_config(args: argparse.Namespace) -> model.BaseModelConfig:
    overrides: dict[str, Any] = dict(TINY) if args.size == "tiny" else {}
    if args.size == "tiny" and args.model != "pi0_fast":
        overrides["action_expert_variant"] = "dummy"
    for field in ("paligemma_variant", "action_expert_variant", "vision_variant", "vocab_size", "dtype"):
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    if args.model == "pi0_fast":
        overrides.pop("action_expert_variant", None)
        return pi0_fast.Pi0FASTConfig(**overrides)
    return pi0_config.Pi0Config(pi05=args.model == "pi05", **overrides)


def fake_observation(config: model.BaseModelConfig, batch: int, prompt_len: int, seed: int) -> model.Observation:
    """Random images, all cameras valid, a prompt of `prompt_len` valid tokens, a random state."""
    spec, _ = config.inputs_spec(batch_size=batch)
    rng = np.random.default_rng(seed)
    length = spec.tokenized_prompt.shape[1]
    if not 0 < prompt_len <= length:
        raise SystemExit(f"--prompt-len must be in [1, {length}] for this config (max_token_len)")
    vocab = getattr(config, "vocab_size", 1024)
    tokens = np.zeros((batch, length), np.int32)
    tokens[:, :prompt_len] = rng.integers(3, min(vocab, 30_000), (batch, prompt_len))
    mask = np.zeros((batch, length), bool)
    mask[:, :prompt_len] = True
    fields: dict[str, Any] = {
        "images": {k: rng.uniform(-1, 1, v.shape).astype(np.float32) for k, v in spec.images.items()},
        "image_masks": {k: np.ones(v.shape, bool) for k, v in spec.image_masks.items()},
        "state": rng.uniform(-1, 1, spec.state.shape).astype(np.float32),
        "tokenized_prompt": tokens,
        "tokenized_prompt_mask": mask,
    }
    if spec.token_ar_mask is not None:
        fields["token_ar_mask"] = np.zeros((batch, length), np.int32)
        fields["token_loss_mask"] = np.zeros((batch, length), bool)
    return jax.tree.map(jnp.asarray, model.Observation(**fields))


def _create_state(config: model.BaseModelConfig, params_path: str | None, seed: int) -> tuple[nnx.GraphDef, Any]:
    dtype = jnp.dtype(config.dtype)
    if params_path:
        loaded = config.load(model.restore_params(params_path, restore_type=jax.Array, dtype=dtype))
        return nnx.split(loaded)
    graphdef, _ = nnx.split(config.abstract_model())

    @jax.jit
    def init(key: jax.Array) -> Any:
        state = nnx.split(config.create(key))[1]
        # Inference in bf16 runs on bf16 weights, as openpi's restore_params(dtype=bfloat16) gives them.
        return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, state)

    return graphdef, init(jax.random.key(seed))


def _peak_memory_bytes() -> tuple[str, int]:
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return f"{device.platform} peak_bytes_in_use", int(stats["peak_bytes_in_use"])
    scale = 1 if sys.platform == "darwin" else 1024
    return "process max RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _time_calls(fn: Any, args: tuple, warmup: int, iters: int) -> np.ndarray:
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.matmul_precision:
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    config = build_config(args)
    is_fast = config.model_type == model.ModelType.PI0_FAST
    prompt_len = args.prompt_len or min(config.max_token_len, 20 if not is_fast else 40)
    obs = fake_observation(config, args.batch, prompt_len, args.seed)

    start = time.perf_counter()
    graphdef, state = _create_state(config, args.params, args.seed)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    param_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(nnx.merge(graphdef, state), nnx.Param)))
    param_count = sum(x.size for x in jax.tree.leaves(nnx.state(nnx.merge(graphdef, state), nnx.Param)))

    if is_fast:
        steps = args.max_decoding_steps

        def sample(state: Any, rng: jax.Array, obs: model.Observation) -> jax.Array:
            return nnx.merge(graphdef, state).sample_actions(rng, obs, max_decoding_steps=steps, temperature=0.0)

        def prefix(state: Any, obs: model.Observation) -> jax.Array:
            return nnx.merge(graphdef, state).prefill(obs, max_decoding_steps=steps).last_logits
    else:
        steps = args.num_steps

        def sample(state: Any, rng: jax.Array, obs: model.Observation) -> jax.Array:
            return nnx.merge(graphdef, state).sample_actions(rng, obs, num_steps=steps)

        def prefix(state: Any, obs: model.Observation) -> jax.Array:
            return nnx.merge(graphdef, state).prefill(obs)[0]

    rng = jax.random.key(args.seed)
    start = time.perf_counter()
    compiled = jax.jit(sample).lower(state, rng, obs).compile()
    compile_s = time.perf_counter() - start
    compiled_prefix = jax.jit(prefix).lower(state, obs).compile()

    times = _time_calls(compiled, (state, rng, obs), args.warmup, args.iters)
    prefix_times = _time_calls(compiled_prefix, (state, obs), args.warmup, args.iters)
    output = np.asarray(compiled(state, rng, obs))
    # π₀-FAST stops early when every sample emitted EOS; count the steps actually decoded.
    decoded = int((output != 0).any(axis=0).nonzero()[0].max() + 1) if is_fast and output.any() else steps
    memory_label, memory = _peak_memory_bytes()
    median, prefix_median = float(np.median(times)), float(np.median(prefix_times))
    return {
        "model": config.model_type.value,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if not k.startswith("fast_model")},
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()}, {platform.machine()})",
        "batch": args.batch,
        "cameras": len(obs.images),
        "prompt_tokens": prompt_len,
        "parameters": int(param_count),
        "parameter_memory_mb": param_bytes / 2**20,
        "init_s": init_s,
        "compile_s": compile_s,
        "sample_actions_ms": {
            "median": median,
            "p90": float(np.percentile(times, 90)),
            "min": float(times.min()),
            "iters": args.iters,
        },
        "prefix_ms_median": prefix_median,
        ("ms_per_decoded_token" if is_fast else "ms_per_flow_step"): (median - prefix_median) / max(decoded, 1),
        ("decoded_tokens" if is_fast else "flow_steps"): decoded,
        "peak_memory_mb": memory / 2**20,
        "peak_memory_kind": memory_label,
        "jax": jax.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["pi0", "pi05", "pi0_fast"], default="pi0")
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny", help="tiny: dummy Gemma + mu/14 SigLIP")
    parser.add_argument("--paligemma-variant")
    parser.add_argument("--action-expert-variant")
    parser.add_argument("--vision-variant")
    parser.add_argument("--vocab-size", type=int)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], help="default: the config's (bfloat16 for full)")
    parser.add_argument("--params", help="an openpi params directory to load instead of random weights")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, help="valid prompt tokens (default 20; 40 for pi0_fast)")
    parser.add_argument("--num-steps", type=int, default=10, help="flow-matching steps (pi0, pi05)")
    parser.add_argument("--max-decoding-steps", type=int, default=256, help="decoded tokens (pi0_fast)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--matmul-precision", choices=["default", "high", "highest"])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.size == "tiny" and args.dtype is None:
        args.dtype = "float32"
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    timing = result["sample_actions_ms"]
    per_key = "ms_per_decoded_token" if "ms_per_decoded_token" in result else "ms_per_flow_step"
    print(f"model            {result['model']} ({args.size}, {result['config']['dtype']}) on {result['device']}")
    inputs = f"batch {result['batch']}, {result['cameras']} cameras, {result['prompt_tokens']} prompt tokens"
    print(f"inputs           {inputs}")
    print(f"parameters       {result['parameters']:,} ({result['parameter_memory_mb']:.1f} MiB)")
    print(f"init / compile   {result['init_s']:.2f} s / {result['compile_s']:.2f} s")
    print(
        f"sample_actions   median {timing['median']:.2f} ms, p90 {timing['p90']:.2f} ms, min {timing['min']:.2f} ms "
        f"({timing['iters']} calls after {args.warmup} warm-up)"
    )
    print(f"prefix pass      median {result['prefix_ms_median']:.2f} ms")
    print(f"{per_key:<16} {result[per_key]:.3f} ms")
    print(f"peak memory      {result['peak_memory_mb']:.0f} MiB ({result['peak_memory_kind']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
