"""Image resizing and train-time augmentation in JAX (images are float32 in [-1, 1] unless uint8)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def resize_with_pad(
    images: jax.Array, height: int, width: int, method: jax.image.ResizeMethod = jax.image.ResizeMethod.LINEAR
) -> jax.Array:
    """Resize keeping the aspect ratio, then pad to [height, width] (black: 0 for uint8, -1 for float).

    Works on [h, w, c] or [*b, h, w, c].
    """
    batch_shape = images.shape[:-3]
    images = images.reshape((-1, *images.shape[-3:]))
    cur_height, cur_width = images.shape[1:3]
    ratio = max(cur_width / width, cur_height / height)
    resized_height, resized_width = int(cur_height / ratio), int(cur_width / ratio)
    resized = jax.image.resize(
        images.astype(jnp.float32), (images.shape[0], resized_height, resized_width, images.shape[3]), method=method
    )
    if images.dtype == jnp.uint8:
        resized = jnp.round(resized).clip(0, 255).astype(jnp.uint8)
        fill = 0
    else:
        resized = resized.clip(-1.0, 1.0).astype(images.dtype)
        fill = -1.0
    pad_h0, rem_h = divmod(height - resized_height, 2)
    pad_w0, rem_w = divmod(width - resized_width, 2)
    padded = jnp.pad(
        resized, ((0, 0), (pad_h0, pad_h0 + rem_h), (pad_w0, pad_w0 + rem_w), (0, 0)), constant_values=fill
    )
    return padded.reshape((*batch_shape, height, width, images.shape[3]))


def _crop_resize_rotate(rng: jax.Array, image: jax.Array, crop_scale: float, max_degrees: float) -> jax.Array:
    """Random crop of `crop_scale` of each side, resized back, then a random rotation (image in [0, 1])."""
    height, width = image.shape[:2]
    crop_h, crop_w = int(height * crop_scale), int(width * crop_scale)
    rng_y, rng_x, rng_angle = jax.random.split(rng, 3)
    y0 = jax.random.randint(rng_y, (), 0, height - crop_h + 1)
    x0 = jax.random.randint(rng_x, (), 0, width - crop_w + 1)
    crop = jax.lax.dynamic_slice(image, (y0, x0, 0), (crop_h, crop_w, image.shape[2]))
    image = jax.image.resize(crop, image.shape, method="linear")
    angle = jax.random.uniform(rng_angle, (), minval=-max_degrees, maxval=max_degrees) * (math.pi / 180.0)
    yy, xx = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_y = cos * (yy - cy) - sin * (xx - cx) + cy
    src_x = sin * (yy - cy) + cos * (xx - cx) + cx
    channels = [
        jax.scipy.ndimage.map_coordinates(image[..., c], [src_y, src_x], order=1, mode="constant", cval=0.0)
        for c in range(image.shape[2])
    ]
    return jnp.stack(channels, axis=-1)


def _color_jitter(rng: jax.Array, image: jax.Array, brightness: float, contrast: float, saturation: float) -> jax.Array:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x] (image in [0, 1])."""
    rng_b, rng_c, rng_s = jax.random.split(rng, 3)
    image = image * jax.random.uniform(rng_b, (), minval=1 - brightness, maxval=1 + brightness)
    gray = image @ jnp.asarray([0.299, 0.587, 0.114], image.dtype)
    factor = jax.random.uniform(rng_c, (), minval=1 - contrast, maxval=1 + contrast)
    image = (image - gray.mean()) * factor + gray.mean()
    gray = (image @ jnp.asarray([0.299, 0.587, 0.114], image.dtype))[..., None]
    factor = jax.random.uniform(rng_s, (), minval=1 - saturation, maxval=1 + saturation)
    return jnp.clip(gray + (image - gray) * factor, 0.0, 1.0)


def augment(rng: jax.Array, images: jax.Array, *, crop_and_rotate: bool = True) -> jax.Array:
    """openpi's train-time augmentation for [b, h, w, 3] float images in [-1, 1].

    Base cameras: random 95% crop resized back and a rotation in [-5, 5] degrees; every camera: colour jitter
    (brightness 0.3, contrast 0.4, saturation 0.5). Returns float images in [-1, 1].
    """

    def one(key: jax.Array, image: jax.Array) -> jax.Array:
        geometry_key, color_key = jax.random.split(key)
        image = image.astype(jnp.float32) / 2.0 + 0.5
        if crop_and_rotate:
            image = _crop_resize_rotate(geometry_key, image, crop_scale=0.95, max_degrees=5.0)
        return _color_jitter(color_key, image, brightness=0.3, contrast=0.4, saturation=0.5) * 2.0 - 1.0

    return jax.vmap(one)(jax.random.split(rng, images.shape[0]), images)
