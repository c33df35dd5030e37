"""Low-rank adapters (LoRA) for Gemma's einsum and feed-forward weights, with openpi's parameter names.

An adapted weight `w` gains `<name>_lora_a` / `<name>_lora_b` (or `lora_a` / `lora_b` inside an `Einsum`), and the
layer computes `x @ w + (x @ a @ b) * alpha / rank` (`alpha / sqrt(rank)` with rsLoRA).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]
_DEFAULT_INIT = nnx.initializers.normal(stddev=0.01)


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int
    alpha: float = 1.0
    init_fn: Initializer = _DEFAULT_INIT
    rslora: bool = False
    # The two weight axes the adapter factorises (input, output).
    axes: tuple[int, int] = (-2, -1)
    # Einsum label used for the rank axis (must not occur in the layer's own equations).
    label: str = "L"

    @property
    def scaling_value(self) -> float:
        return self.alpha / math.sqrt(self.rank) if self.rslora else self.alpha / self.rank


def _lora_eqns(eqn: str, config: LoRAConfig) -> tuple[str, str]:
    if config.label in eqn:
        raise ValueError(f"LoRA label {config.label!r} already used in einsum {eqn!r}")
    inputs, out = eqn.split("->")
    lhs, rhs = inputs.split(",")
    a_label, b_label = (rhs[axis] for axis in config.axes)
    a_rhs, a_out = rhs.replace(b_label, config.label), out.replace(b_label, config.label)
    b_rhs = rhs.replace(a_label, config.label)
    return f"{lhs},{a_rhs}->{a_out}", f"{a_out},{b_rhs}->{out}"


class Einsum(nnx.Module):
    """A weight `w` applied with an einsum equation, optionally with a LoRA adapter (`lora_a`, `lora_b`)."""

    def __init__(
        self, shape: tuple[int, ...], init_fn: Initializer, *, lora_config: LoRAConfig | None = None, rngs: nnx.Rngs
    ) -> None:
        self.w = nnx.Param(init_fn(rngs.params(), shape))
        self.lora_config = lora_config
        if lora_config is not None:
            shape_a, shape_b = list(shape), list(shape)
            shape_a[lora_config.axes[1]] = lora_config.rank
            shape_b[lora_config.axes[0]] = lora_config.rank
            self.lora_a = nnx.Param(lora_config.init_fn(rngs.params(), tuple(shape_a)))
            self.lora_b = nnx.Param(lora_config.init_fn(rngs.params(), tuple(shape_b)))

    def __call__(self, eqn: str, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        result = jnp.einsum(eqn, x, self.w[...].astype(dtype))
        if (config := self.lora_config) is not None:
            eqn_a, eqn_b = _lora_eqns(eqn, config)
            lora = jnp.einsum(eqn_a, x, self.lora_a[...].astype(dtype))
            lora = jnp.einsum(eqn_b, lora, self.lora_b[...].astype(dtype))
            result = result + lora * config.scaling_value
        return result


class FeedForward(nnx.Module):
    """Gemma's gated MLP: `gelu_tanh(x W0) * (x W1)` then `linear`; weights `gating_einsum` [2, d, f], `linear`."""

    def __init__(self, features: int, hidden_dim: int, *, lora_config: LoRAConfig | None = None, rngs: nnx.Rngs):
        gating_init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        linear_init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1)
        self.gating_einsum = nnx.Param(gating_init(rngs.params(), (2, features, hidden_dim)))
        self.linear = nnx.Param(linear_init(rngs.params(), (hidden_dim, features)))
        self.lora_config = lora_config
        if lora_config is not None:
            rank, init = lora_config.rank, lora_config.init_fn
            self.gating_einsum_lora_a = nnx.Param(init(rngs.params(), (2, features, rank)))
            self.gating_einsum_lora_b = nnx.Param(init(rngs.params(), (2, rank, hidden_dim)))
            self.linear_lora_a = nnx.Param(init(rngs.params(), (hidden_dim, rank)))
            self.linear_lora_b = nnx.Param(init(rngs.params(), (rank, features)))

    def _dot(self, x: jax.Array, w: jax.Array, lora: tuple[jax.Array, jax.Array] | None) -> jax.Array:
        out = jnp.dot(x, w.astype(x.dtype))
        if lora is None or self.lora_config is None:
            return out
        low_rank = jnp.dot(jnp.dot(x, lora[0].astype(x.dtype)), lora[1].astype(x.dtype))
        return out + low_rank * self.lora_config.scaling_value

    def __call__(self, x: jax.Array) -> jax.Array:
        gating = self.gating_einsum[...]
        if self.lora_config is not None:
            lora_a, lora_b = self.gating_einsum_lora_a[...], self.gating_einsum_lora_b[...]
            gate_lora, up_lora = (lora_a[0], lora_b[0]), (lora_a[1], lora_b[1])
            linear_lora = (self.linear_lora_a[...], self.linear_lora_b[...])
        else:
            gate_lora = up_lora = linear_lora = None
        gate = jax.nn.gelu(self._dot(x, gating[0], gate_lora), approximate=True)
        up = self._dot(x, gating[1], up_lora)
        return self._dot(gate * up, self.linear[...], linear_lora)
