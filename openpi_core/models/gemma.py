"""Gemma as a mixture of experts with joint attention, in Flax NNX, with openpi's parameter names and shapes.

One `Gemma` holds one or more experts (π₀: the PaliGemma LLM and the action expert; π₀-FAST: the LLM alone). Each
expert has its own weights (expert i > 0 uses names with the suffix `_i`), takes its own token sequence, and all
tokens attend to each other through one attention over the concatenated sequence. Layers are stacked (leading
`depth` axis, `layers/...`) exactly like openpi's `nn.scan` checkpoints.

Two KV-cache forms are supported: append (the π₀ prefix cache: new keys are concatenated after the cached ones)
and fixed-slot (π₀-FAST decoding: a cache of fixed size, prefilled with zero padding, written at `cache_index`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import einops
import flax.core
import jax
import jax.numpy as jnp
from flax import nnx

from openpi_core.models import lora
from openpi_core.models.nnx_utils import create_stack, scan_stack

# The finite "minus infinity" openpi uses for masked logits: a row with no allowed key attends uniformly.
BIG_NEG = -2.3819763e38
PALIGEMMA_VOCAB_SIZE = 257_152
PALIGEMMA_EOS_TOKEN = 1

# Per-layer KV cache (k, v), each [batch, seq, num_kv_heads, head_dim]; stacked over layers inside `Gemma`.
KVCache = tuple[jax.Array, jax.Array]


@dataclasses.dataclass(frozen=True)
class Config:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    # "attn" and/or "ffn" -> LoRA adapter config.
    lora_configs: Mapping[str, lora.LoRAConfig] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.lora_configs) - {"attn", "ffn"}
        if unknown:
            raise ValueError(f"lora_configs keys must be 'attn' or 'ffn', got {sorted(unknown)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        # Hashable, so configs can live in a module's static graph.
        object.__setattr__(self, "lora_configs", flax.core.FrozenDict(self.lora_configs))


def _lora_variant(base: Config, rank: int) -> Config:
    adapter = lora.LoRAConfig(rank=rank, alpha=float(rank))
    return dataclasses.replace(base, lora_configs={"attn": adapter, "ffn": adapter})


_GEMMA_2B = Config(width=2048, depth=18, mlp_dim=16_384, num_heads=8, num_kv_heads=1, head_dim=256)
_GEMMA_300M = Config(width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256)
_VARIANTS: dict[str, Config] = {
    "dummy": Config(width=64, depth=4, mlp_dim=128, num_heads=8, num_kv_heads=1, head_dim=16),
    "gemma_300m": _GEMMA_300M,
    "gemma_2b": _GEMMA_2B,
    "gemma_2b_lora": _lora_variant(_GEMMA_2B, 16),
    "gemma_300m_lora": _lora_variant(_GEMMA_300M, 32),
}


def get_config(variant: str) -> Config:
    """The Gemma config of a named variant (openpi's names, plus any registered with `register_variant`)."""
    try:
        return _VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown Gemma variant {variant!r}; known: {sorted(_VARIANTS)}") from None


def register_variant(name: str, config: Config, *, overwrite: bool = False) -> None:
    """Make `config` available to model configs as `name` (e.g. a custom action expert width)."""
    if name in _VARIANTS and _VARIANTS[name] != config and not overwrite:
        raise ValueError(f"Gemma variant {name!r} is already registered with another config")
    _VARIANTS[name] = config


def variants() -> list[str]:
    return sorted(_VARIANTS)


def _name(base: str, expert: int) -> str:
    return base if expert == 0 else f"{base}_{expert}"


class RMSNorm(nnx.Module):
    """RMSNorm `x / sqrt(mean(x^2) + 1e-6) * (1 + scale)`; adaptive (adaRMS, π₀.₅) when built with `cond_dim`.

    The adaptive form has no `scale`: a zero-initialised `Dense_0` maps the conditioning vector to scale, shift and
    gate, and the norm returns the gate for the gated residual.
    """

    def __init__(self, width: int, *, cond_dim: int | None = None, rngs: nnx.Rngs) -> None:
        if cond_dim is None:
            self.scale = nnx.Param(jnp.zeros((width,)))
        else:
            self.Dense_0 = nnx.Linear(cond_dim, 3 * width, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, x: jax.Array, cond: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        dtype = x.dtype
        var = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
        normed = x * jnp.reciprocal(jnp.sqrt(var + 1e-6))
        if not hasattr(self, "Dense_0"):
            if cond is not None:
                raise ValueError("this norm was built without adaRMS but got a conditioning vector")
            return (normed * (1 + self.scale[...])).astype(dtype), None
        if cond is None:
            raise ValueError("an adaRMS norm needs a conditioning vector")
        modulation = self.Dense_0(cond.astype(dtype))
        if modulation.ndim == 2:  # one vector per sample; [B, S, 3W] (per token, training-time RTC) as it is
            modulation = modulation[:, None, :]
        scale, shift, gate = jnp.split(modulation, 3, axis=-1)
        return (normed * (1 + scale) + shift).astype(dtype), gate


class Embedder(nnx.Module):
    def __init__(self, vocab_size: int, width: int, *, rngs: nnx.Rngs) -> None:
        self.input_embedding = nnx.Param(nnx.initializers.normal()(rngs.params(), (vocab_size, width)))

    def encode(self, tokens: jax.Array) -> jax.Array:
        x = self.input_embedding[...][(tokens,)]
        return x * jnp.sqrt(x.shape[-1]).astype(x.dtype)

    def decode(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x, self.input_embedding[...].T.astype(x.dtype))


def _split_float32(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Veltkamp split of float32 values into two halves whose products are exact."""
    c = a * jnp.float32(4097.0)
    hi = c - (c - a)
    return hi, a - hi


def divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """Correctly rounded float32 division.

    XLA's CPU division is only faithfully rounded (off by one ulp for about a third of the inputs). At RoPE angles
    of several hundred radians one ulp is ~6e-5, which shows up in the keys; openpi's reference outputs were made
    with exact division. One correction step with an exactly computed remainder restores it.
    """
    numerator = jnp.asarray(numerator, jnp.float32)
    denominator = jnp.asarray(denominator, jnp.float32)
    q = numerator / denominator
    q_hi, q_lo = _split_float32(q)
    d_hi, d_lo = _split_float32(denominator)
    remainder = ((numerator - q_hi * d_hi) - q_hi * d_lo - q_lo * d_hi) - q_lo * d_lo
    return q + remainder / denominator


def apply_rope(x: jax.Array, *, positions: jax.Array, max_wavelength: int = 10_000) -> jax.Array:
    """Rotary embedding on [B, T, N, H]: the two halves of the head dim are rotated (not interleaved)."""
    freq_exponents = (2.0 / x.shape[-1]) * jnp.arange(x.shape[-1] // 2, dtype=jnp.float32)
    timescale = max_wavelength**freq_exponents
    radians = divide(positions[..., None], timescale[None, None, :])
    radians = radians[..., None, :]
    sin, cos = jnp.sin(radians), jnp.cos(radians)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Attention(nnx.Module):
    """Joint multi-query attention over the tokens of all experts."""

    def __init__(self, configs: Sequence[Config], *, rngs: nnx.Rngs) -> None:
        self.configs = tuple(configs)
        for i, config in enumerate(self.configs):
            lora_config = config.lora_configs.get("attn")
            n, k, d, h = config.num_heads, config.num_kv_heads, config.width, config.head_dim
            if k == n:
                init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0, 1))
                setattr(
                    self, _name("qkv_einsum", i), lora.Einsum((3, n, d, h), init, lora_config=lora_config, rngs=rngs)
                )
            else:
                q_init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
                kv_init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0, 1))
                setattr(self, _name("q_einsum", i), lora.Einsum((n, d, h), q_init, lora_config=lora_config, rngs=rngs))
                setattr(
                    self, _name("kv_einsum", i), lora.Einsum((2, k, d, h), kv_init, lora_config=lora_config, rngs=rngs)
                )
            out_init = nnx.initializers.lecun_normal(in_axis=(-3, -2), out_axis=-1)
            setattr(
                self, _name("attn_vec_einsum", i), lora.Einsum((n, h, d), out_init, lora_config=lora_config, rngs=rngs)
            )

    def __call__(
        self,
        xs: Sequence[jax.Array | None],
        positions: jax.Array,
        attn_mask: jax.Array,
        kv_cache: KVCache | None,
        cache_index: jax.Array | int | None,
    ) -> tuple[list[jax.Array | None], KVCache]:
        qs, ks, vs = [], [], []
        for i, x in enumerate(xs):
            if x is None:
                continue
            config = self.configs[i]
            if config.num_kv_heads == config.num_heads:
                q, k, v = getattr(self, _name("qkv_einsum", i))("BSD,3KDH->3BSKH", x)
            else:
                q = getattr(self, _name("q_einsum", i))("BTD,NDH->BTNH", x)
                k, v = getattr(self, _name("kv_einsum", i))("BSD,2KDH->2BSKH", x)
            qs.append(q)
            ks.append(k)
            vs.append(v)
        q, k, v = (jnp.concatenate(parts, axis=1) for parts in (qs, ks, vs))
        dtype = q.dtype
        head_dim = self.configs[0].head_dim
        q = apply_rope(q, positions=positions) * jnp.asarray(head_dim**-0.5, dtype)
        k = apply_rope(k, positions=positions)

        if kv_cache is not None:
            cache_k, cache_v = kv_cache
            if cache_index is None:  # append
                k, v = jnp.concatenate([cache_k, k], axis=1), jnp.concatenate([cache_v, v], axis=1)
            else:  # fixed slots
                index = (0, cache_index, 0, 0)
                k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), index)
                v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), index)
        elif attn_mask.shape[-1] > k.shape[1]:  # prefill of a fixed-size cache: zero slots for later tokens
            pad = ((0, 0), (0, attn_mask.shape[-1] - k.shape[1]), (0, 0), (0, 0))
            k, v = jnp.pad(k, pad), jnp.pad(v, pad)

        batch, length = q.shape[:2]
        if attn_mask.shape != (batch, 1, length, k.shape[1]):
            raise ValueError(f"attention mask shape {attn_mask.shape}, expected {(batch, 1, length, k.shape[1])}")
        q = einops.rearrange(q, "B T (K G) H -> B T K G H", K=self.configs[0].num_kv_heads)
        logits = jnp.einsum("BTKGH,BSKH->BKGTS", q, k.astype(dtype), preferred_element_type=jnp.float32)
        logits = jnp.where(attn_mask[:, :, None, :, :], logits, BIG_NEG)
        probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
        encoded = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v.astype(dtype))
        encoded = einops.rearrange(encoded, "B T K G H -> B T (K G) H")

        out: list[jax.Array | None] = []
        start = 0
        for i, x in enumerate(xs):
            if x is None:
                out.append(None)
                continue
            end = start + x.shape[1]
            out.append(getattr(self, _name("attn_vec_einsum", i))("BTNH,NHD->BTD", encoded[:, start:end]))
            start = end
        return out, (k, v)


def _gated_residual(x: jax.Array | None, y: jax.Array | None, gate: jax.Array | None) -> jax.Array | None:
    if x is None:
        return None
    return x + y if gate is None else x + y * gate


class Block(nnx.Module):
    """One pre-norm transformer layer for all experts."""

    def __init__(self, configs: Sequence[Config], use_adarms: Sequence[bool], *, rngs: nnx.Rngs) -> None:
        for i, (config, adaptive) in enumerate(zip(configs, use_adarms, strict=True)):
            cond_dim = config.width if adaptive else None
            setattr(self, _name("pre_attention_norm", i), RMSNorm(config.width, cond_dim=cond_dim, rngs=rngs))
            setattr(self, _name("pre_ffw_norm", i), RMSNorm(config.width, cond_dim=cond_dim, rngs=rngs))
            setattr(
                self,
                _name("mlp", i),
                lora.FeedForward(config.width, config.mlp_dim, lora_config=config.lora_configs.get("ffn"), rngs=rngs),
            )
        self.attn = Attention(configs, rngs=rngs)

    def __call__(
        self,
        xs: Sequence[jax.Array | None],
        kv_cache: KVCache | None,
        positions: jax.Array,
        attn_mask: jax.Array,
        *,
        adarms_cond: Sequence[jax.Array | None],
        cache_index: jax.Array | int | None,
    ) -> tuple[list[jax.Array | None], KVCache]:
        normed, gates = [], []
        for i, x in enumerate(xs):
            y, gate = (
                getattr(self, _name("pre_attention_norm", i))(x, adarms_cond[i]) if x is not None else (None, None)
            )
            normed.append(y)
            gates.append(gate)
        attended, kv_cache = self.attn(normed, positions, attn_mask, kv_cache, cache_index)
        xs = [_gated_residual(x, y, g) for x, y, g in zip(xs, attended, gates, strict=True)]
        out, gates = [], []
        for i, x in enumerate(xs):
            if x is None:
                out.append(None)
                gates.append(None)
                continue
            y, gate = getattr(self, _name("pre_ffw_norm", i))(x, adarms_cond[i])
            out.append(getattr(self, _name("mlp", i))(y))
            gates.append(gate)
        return [_gated_residual(x, y, g) for x, y, g in zip(xs, out, gates, strict=True)], kv_cache


class Gemma(nnx.Module):
    """The LLM: embedder, a stack of `depth` joint-attention layers, and one final norm per expert."""

    def __init__(
        self,
        configs: Sequence[Config],
        *,
        vocab_size: int = PALIGEMMA_VOCAB_SIZE,
        embed_dtype: Any = jnp.float32,
        use_adarms: Sequence[bool] | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        configs = tuple(configs)
        use_adarms = tuple(use_adarms) if use_adarms is not None else (False,) * len(configs)
        shared = {(c.depth, c.num_heads, c.num_kv_heads, c.head_dim) for c in configs}
        if len(shared) != 1:
            raise ValueError(f"experts must share depth, num_heads, num_kv_heads and head_dim; got {configs}")
        if len(use_adarms) != len(configs):
            raise ValueError("use_adarms needs one entry per expert")
        self.configs = configs
        self.use_adarms = use_adarms
        self.vocab_size = vocab_size
        self.embed_dtype = jnp.dtype(embed_dtype)
        self.embedder = Embedder(vocab_size, configs[0].width, rngs=rngs)
        self.layers = create_stack(lambda r: Block(configs, use_adarms, rngs=r), configs[0].depth, rngs)
        for i, (config, adaptive) in enumerate(zip(configs, use_adarms, strict=True)):
            cond_dim = config.width if adaptive else None
            setattr(self, _name("final_norm", i), RMSNorm(config.width, cond_dim=cond_dim, rngs=rngs))

    def embed(self, tokens: jax.Array) -> jax.Array:
        """Token ids -> embeddings scaled by sqrt(width), in the embedding dtype."""
        return self.embedder.encode(tokens).astype(self.embed_dtype)

    def decode(self, x: jax.Array) -> jax.Array:
        """Hidden states of the first expert -> vocabulary logits (tied embedding)."""
        return self.embedder.decode(x)

    def __call__(
        self,
        embedded: Sequence[jax.Array | None],
        positions: jax.Array,
        mask: jax.Array,
        adarms_cond: Sequence[jax.Array | None] | None = None,
        *,
        kv_cache: KVCache | None = None,
        cache_index: jax.Array | int | None = None,
    ) -> tuple[list[jax.Array | None], KVCache]:
        """Run the experts' token sequences (None to skip one) through all layers.

        `mask` is [B, T, S] (queries x keys, keys including the cache), `positions` [B, T]. Returns each expert's
        final-normed output and the KV cache stacked over layers ([depth, B, S, K, H] for k and v).
        """
        if len(embedded) != len(self.configs):
            raise ValueError(f"expected {len(self.configs)} token sequences (None to skip), got {len(embedded)}")
        embedded = [e.astype(self.embed_dtype) if e is not None else None for e in embedded]
        mask = jnp.asarray(mask)[:, None, :, :]
        if adarms_cond is None:
            adarms_cond = [None] * len(self.configs)

        def body(block: Block, xs: list, layer_cache: KVCache | None) -> tuple[list, KVCache]:
            return block(xs, layer_cache, positions, mask, adarms_cond=adarms_cond, cache_index=cache_index)

        outputs, kv_cache = scan_stack(self.layers, body, embedded, kv_cache)
        final = [
            getattr(self, _name("final_norm", i))(x, adarms_cond[i])[0] if x is not None else None
            for i, x in enumerate(outputs)
        ]
        return final, kv_cache
