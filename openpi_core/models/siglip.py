"""SigLIP ViT image encoder in Flax NNX with big_vision/openpi parameter names (`PaliGemma/img/...`).

Patch embedding (`embedding`, a strided conv), learned `pos_embedding`, a stack of pre-norm encoder blocks
(`Transformer/encoderblock/...`, leading `depth` axis), `Transformer/encoder_norm`, and a `head` projecting every
patch token to the LLM width (no pooling: π₀ feeds all patch tokens to the LLM).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from openpi_core.models.nnx_utils import create_stack, scan_stack


@dataclasses.dataclass(frozen=True)
class Config:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: tuple[int, int]


_SIZES: dict[str, tuple[int, int, int, int]] = {
    # name: (width, depth, mlp_dim, num_heads), big_vision's ViT sizes
    "mu": (32, 1, 128, 2),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "So400m": (1152, 27, 4304, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "g-opt": (1536, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
    "G-opt": (1536, 48, 8192, 16),
    "e": (1792, 56, 15360, 16),
}
_REGISTERED: dict[str, Config] = {}


def get_config(variant: str) -> Config:
    """`"<size>/<patch>"` (e.g. `So400m/14`, `mu/14`, `S/14`) or a name given to `register_variant`."""
    if variant in _REGISTERED:
        return _REGISTERED[variant]
    size, _, patch = variant.partition("/")
    if size not in _SIZES or not patch.isdigit():
        raise ValueError(
            f"unknown SigLIP variant {variant!r}: use '<size>/<patch>' with size in {sorted(_SIZES)} "
            f"or one of {sorted(_REGISTERED)}"
        )
    width, depth, mlp_dim, num_heads = _SIZES[size]
    return Config(width, depth, mlp_dim, num_heads, (int(patch), int(patch)))


def register_variant(name: str, config: Config, *, overwrite: bool = False) -> None:
    if name in _REGISTERED and _REGISTERED[name] != config and not overwrite:
        raise ValueError(f"SigLIP variant {name!r} is already registered with another config")
    _REGISTERED[name] = config


_XAVIER = nnx.initializers.xavier_uniform()
_ZEROS = nnx.initializers.zeros_init()


class Dense(nnx.Module):
    """`x @ kernel + bias` over the last `len(in_shape)` axes, computed in `dtype`."""

    def __init__(
        self,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        *,
        dtype: Any = jnp.float32,
        kernel_init: Any = _XAVIER,
        bias_init: Any = _ZEROS,
        rngs: nnx.Rngs,
    ) -> None:
        fan_in, fan_out = int(np.prod(in_shape)), int(np.prod(out_shape))
        kernel = kernel_init(rngs.params(), (fan_in, fan_out)).reshape((*in_shape, *out_shape))
        self.kernel = nnx.Param(kernel)
        self.bias = nnx.Param(bias_init(rngs.params(), out_shape))
        self.n_in = len(in_shape)
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...].astype(self.dtype)
        axes = (tuple(range(x.ndim - self.n_in, x.ndim)), tuple(range(self.n_in)))
        y = jax.lax.dot_general(x.astype(self.dtype), kernel, (axes, ((), ())))
        return y + self.bias[...].astype(self.dtype)


class LayerNorm(nnx.Module):
    def __init__(self, width: int, *, dtype: Any = jnp.float32, eps: float = 1e-6) -> None:
        self.scale = nnx.Param(jnp.ones((width,)))
        self.bias = nnx.Param(jnp.zeros((width,)))
        self.eps = eps
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.maximum(0.0, jnp.mean(jnp.square(x32), axis=-1, keepdims=True) - jnp.square(mean))
        y = (x32 - mean) * (jax.lax.rsqrt(var + self.eps) * self.scale[...].astype(jnp.float32))
        return (y + self.bias[...].astype(jnp.float32)).astype(self.dtype)


class MultiHeadDotProductAttention(nnx.Module):
    def __init__(self, width: int, num_heads: int, *, dtype: Any, rngs: nnx.Rngs) -> None:
        head_dim = width // num_heads
        self.query = Dense((width,), (num_heads, head_dim), dtype=dtype, rngs=rngs)
        self.key = Dense((width,), (num_heads, head_dim), dtype=dtype, rngs=rngs)
        self.value = Dense((width,), (num_heads, head_dim), dtype=dtype, rngs=rngs)
        self.out = Dense((num_heads, head_dim), (width,), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        q, k, v = self.query(x), self.key(x), self.value(x)
        q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
        weights = jax.nn.softmax(jnp.einsum("...qhd,...khd->...hqk", q, k), axis=-1).astype(v.dtype)
        return self.out(jnp.einsum("...hqk,...khd->...qhd", weights, v))


class MlpBlock(nnx.Module):
    def __init__(self, width: int, mlp_dim: int, *, dtype: Any, rngs: nnx.Rngs) -> None:
        bias_init = nnx.initializers.normal(stddev=1e-6)
        self.Dense_0 = Dense((width,), (mlp_dim,), dtype=dtype, bias_init=bias_init, rngs=rngs)
        self.Dense_1 = Dense((mlp_dim,), (width,), dtype=dtype, bias_init=bias_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.Dense_1(jax.nn.gelu(self.Dense_0(x), approximate=True))


class Encoder1DBlock(nnx.Module):
    def __init__(self, config: Config, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.LayerNorm_0 = LayerNorm(config.width, dtype=dtype)
        self.MultiHeadDotProductAttention_0 = MultiHeadDotProductAttention(
            config.width, config.num_heads, dtype=dtype, rngs=rngs
        )
        self.LayerNorm_1 = LayerNorm(config.width, dtype=dtype)
        self.MlpBlock_0 = MlpBlock(config.width, config.mlp_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.MultiHeadDotProductAttention_0(self.LayerNorm_0(x))
        return x + self.MlpBlock_0(self.LayerNorm_1(x))


class Encoder(nnx.Module):
    def __init__(self, config: Config, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.encoderblock = create_stack(lambda r: Encoder1DBlock(config, dtype=dtype, rngs=r), config.depth, rngs)
        self.encoder_norm = LayerNorm(config.width, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, _ = scan_stack(self.encoderblock, lambda block, carry, _: (block(carry), None), x)
        return self.encoder_norm(x)


class Siglip(nnx.Module):
    """Images [B, H, W, 3] (float in [-1, 1]) -> tokens [B, (H/p)*(W/p), num_classes]."""

    def __init__(
        self,
        *,
        num_classes: int,
        variant: str = "So400m/14",
        image_size: tuple[int, int] = (224, 224),
        dtype_mm: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        config = get_config(variant)
        ph, pw = config.patch_size
        if image_size[0] % ph or image_size[1] % pw:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {config.patch_size}")
        num_patches = (image_size[0] // ph) * (image_size[1] // pw)
        self.config = config
        self.dtype_mm = jnp.dtype(dtype_mm)
        conv_init = nnx.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=-1)
        self.embedding = nnx.Dict(
            kernel=nnx.Param(conv_init(rngs.params(), (ph, pw, 3, config.width))),
            bias=nnx.Param(jnp.zeros((config.width,))),
        )
        posemb_init = nnx.initializers.normal(stddev=1 / np.sqrt(config.width))
        self.pos_embedding = nnx.Param(posemb_init(rngs.params(), (1, num_patches, config.width)))
        self.Transformer = Encoder(config, dtype=dtype_mm, rngs=rngs)
        self.head = Dense(
            (config.width,), (num_classes,), dtype=dtype_mm, kernel_init=nnx.initializers.zeros_init(), rngs=rngs
        )

    def __call__(self, image: jax.Array) -> jax.Array:
        image = jnp.asarray(image, jnp.float32)
        x = jax.lax.conv_general_dilated(
            image,
            self.embedding["kernel"][...].astype(jnp.float32),
            window_strides=self.config.patch_size,
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        x = x + self.embedding["bias"][...].astype(jnp.float32)
        n, h, w, c = x.shape
        x = jnp.reshape(x, (n, h * w, c)) + self.pos_embedding[...].astype(jnp.float32)
        x = self.Transformer(x.astype(self.dtype_mm))
        return self.head(x)
