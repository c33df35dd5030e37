"""Real-time chunking (RTC): sample the next chunk so that it continues the one the robot is executing.

Black, Galliker, Levine 2025 ("Real-Time Execution of Action Chunking Flow Policies", arXiv 2506.07339). While the
robot executes the first `delay` rows of the previous chunk's remainder (the time inference takes), the new chunk is
sampled as inpainting: every Euler step's velocity is corrected so that the predicted clean chunk
``x_t - t * v_t`` moves towards that remainder, with full weight on the first `delay` rows, a decaying weight up to
the execution horizon, and none after it.

In the model's convention (openpi's: t = 1 noise, t = 0 data) one guided step is

    A_hat = x_t - t * v(x_t)
    e     = (prefix - A_hat) * W                        W: `prefix_weights` per row
    g     = e^T dA_hat/dx_t                             a vector-Jacobian product through the denoiser
    v'    = v - min(beta, (1 - tau) / (tau * r^2)) * g  tau = 1 - t, r^2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2)

Differences from LeRobot 0.4.4's `RTCProcessor.denoise_step` (the same formulas otherwise, the same time
convention; `tests/test_rtc.py` checks both against it step by step):

- `Guidance.through_denoiser` (default True, as in the paper): LeRobot computes `v(x_t)` before it marks `x_t` as
  requiring gradients, so its "vector-Jacobian product" is the error itself (the denoiser's Jacobian is dropped).
  `through_denoiser=False` reproduces that exactly and costs no backward pass.
- Defaults: the ``exp`` prefix schedule (the paper's soft mask; LeRobot defaults to ``linear``) and a guidance
  limit of 5.0 (LeRobot: 10.0).
- Delay, horizon and prefix length are arrays, one per sample, so one compiled sampler serves every delay.

Training-time RTC (Black et al. 2025, arXiv 2512.05964) needs no guidance: a model trained with prefix rows given
clean (flow time 0) and excluded from the loss takes the same rows as input at inference (`Pi0Config.
training_rtc_max_delay`; `pi0.Pi0.sample_actions`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp

__all__ = [
    "DEFAULT_GUIDANCE",
    "SCHEDULES",
    "ActionPrefix",
    "Guidance",
    "conditioned_rows",
    "guidance_weight",
    "guided_velocity",
    "prefix_weights",
]

SCHEDULES = ("zeros", "ones", "linear", "exp")
"""Prefix weights between the delay and the execution horizon: 0, 1, a linear or the paper's exponential decay."""


@dataclasses.dataclass(frozen=True)
class Guidance:
    """How inference-time RTC corrects each denoising step (static: part of the compiled sampler)."""

    max_guidance_weight: float = 5.0
    """beta: the guidance weight's upper bound (it diverges at t = 1)."""
    schedule: str = "exp"
    through_denoiser: bool = True
    """Back-propagate the error through the denoiser (the paper); False: LeRobot 0.4.4's identity Jacobian."""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Guidance.schedule: {self.schedule!r} is not one of {SCHEDULES}")
        if not (math.isfinite(self.max_guidance_weight) and self.max_guidance_weight > 0):
            raise ValueError(f"Guidance.max_guidance_weight must be > 0, got {self.max_guidance_weight}")


DEFAULT_GUIDANCE = Guidance()


@flax.struct.dataclass
class ActionPrefix:
    """What the next chunk must continue, in model space, per sample (arrays: any delay, one compilation)."""

    actions: jax.Array
    """float32 [B, H, A]: the previous chunk's rows from the observation time on, zero-padded to the horizon H."""
    length: jax.Array
    """int32 [B]: how many rows of `actions` are real (the rest is padding)."""
    delay: jax.Array
    """int32 [B]: rows that will have been executed when the new chunk arrives (matched exactly)."""
    execution_horizon: jax.Array
    """int32 [B]: rows up to which the prefix is matched softly (clipped to `length`)."""


def prefix_weights(prefix: ActionPrefix, total: int, schedule: str) -> jax.Array:
    """[B, total]: 1 before the delay, the schedule's decay up to the execution horizon, 0 after it.

    The decay is ``c_i = (end - i) / (end - start + 1)`` (``linear``) or ``c_i * expm1(c_i) / (e - 1)`` (``exp``),
    with ``end = min(horizon, length, total)`` and ``start = min(delay, end)``, as in LeRobot's `get_prefix_weights`.
    """
    i = jnp.arange(total)[None, :]
    end = jnp.minimum(jnp.minimum(prefix.execution_horizon, prefix.length), total)[:, None]
    start = jnp.minimum(prefix.delay[:, None], end)
    if schedule == "zeros":
        return (i < start).astype(jnp.float32)
    if schedule == "ones":
        return (i < end).astype(jnp.float32)
    decay = (end - i) / (end - start + 1)
    if schedule == "exp":
        decay = decay * jnp.expm1(decay) / (math.e - 1)
    return jnp.where(i < start, 1.0, jnp.where(i < end, decay, 0.0)).astype(jnp.float32)


def guidance_weight(time: jax.Array, max_guidance_weight: float) -> jax.Array:
    """``min(beta, (1 - tau) / tau * (tau^2 + (1 - tau)^2) / (1 - tau)^2)`` at model time `time` (tau = 1 - t)."""
    tau = 1.0 - time
    c = jnp.nan_to_num((1.0 - tau) / tau, posinf=max_guidance_weight)
    inv_r2 = ((1.0 - tau) ** 2 + tau**2) / (1.0 - tau) ** 2
    return jnp.minimum(jnp.nan_to_num(c * inv_r2, posinf=max_guidance_weight), max_guidance_weight)


def guided_velocity(
    velocity: Callable[[jax.Array], jax.Array],
    x_t: jax.Array,
    time: jax.Array,
    *,
    target: jax.Array,
    weights: jax.Array,
    guidance: Guidance = DEFAULT_GUIDANCE,
) -> jax.Array:
    """The RTC-corrected velocity at `x_t` [B, H, A], model time `time` (scalar), towards `target` [B, H, A] with
    row weights `weights` [B, H]."""
    if guidance.through_denoiser:

        def predicted_actions(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            v = velocity(x)
            return x - time * v, v

        predicted, vjp, v_t = jax.vjp(predicted_actions, x_t, has_aux=True)
        (correction,) = vjp((target - predicted) * weights[..., None])
    else:
        v_t = velocity(x_t)
        correction = (target - (x_t - time * v_t)) * weights[..., None]
    return v_t - guidance_weight(time, guidance.max_guidance_weight) * correction


def conditioned_rows(prefix: ActionPrefix, total: int) -> jax.Array:
    """bool [B, total]: the rows a training-time-RTC model takes as given (before the delay, within the prefix)."""
    i = jnp.arange(total)[None, :]
    return i < jnp.minimum(prefix.delay, prefix.length)[:, None]
