"""π₀ and π₀.₅: PaliGemma (SigLIP + Gemma) prefix, a flow-matching action expert, Euler sampling.

Convention (openpi's): t = 1 is pure noise, t = 0 is data; `x_t = t * noise + (1 - t) * actions`, the expert
predicts the velocity `u_t = noise - actions`, and sampling integrates from t = 1 to 0 with `num_steps` Euler steps.

The two differ only in how the suffix (action expert input) is built, so π₀.₅ is a subclass that overrides it:
π₀ prepends a state token and mixes the time embedding into each action token with an MLP; π₀.₅ has no state
token (the state is in the prompt) and conditions every action-expert norm on the time (adaRMS).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from openpi_core.models import gemma, model, rtc, siglip

if TYPE_CHECKING:  # the config builds the model (`Pi0Config.create`); the model only reads the config's fields
    from openpi_core.models.pi0_config import Pi0Config

logger = logging.getLogger(__name__)


def posemb_sincos(pos: jax.Array, embedding_dim: int, min_period: float, max_period: float) -> jax.Array:
    """Sine-cosine embedding of scalar positions (openpi's operation order matters at float32: docs/models.md)."""
    if embedding_dim % 2:
        raise ValueError(f"embedding_dim ({embedding_dim}) must be even")
    fraction = jnp.linspace(0.0, 1.0, embedding_dim // 2)
    period = min_period * (max_period / min_period) ** fraction
    sinusoid_input = jnp.einsum(
        "i,j->ij", pos, gemma.divide(1.0, period) * 2 * jnp.pi, precision=jax.lax.Precision.HIGHEST
    )
    return jnp.concatenate([jnp.sin(sinusoid_input), jnp.cos(sinusoid_input)], axis=-1)


def flow_matching_targets(actions: jax.Array, noise: jax.Array, time: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x_t, u_t): the noisy actions at time `time` [B] and the velocity the expert should predict."""
    time_expanded = time[..., None, None]
    return time_expanded * noise + (1 - time_expanded) * actions, noise - actions


class Pi0(model.BaseModel):
    """π₀. Parameters: `PaliGemma/{img,llm}`, `action_in_proj`, `action_out_proj`, `state_proj`,
    `action_time_mlp_in`, `action_time_mlp_out`."""

    def __init__(self, config: Pi0Config, *, rngs: nnx.Rngs) -> None:
        super().__init__(config.action_dim, config.action_horizon, config.max_token_len)
        self.training_rtc_max_delay = config.training_rtc_max_delay
        paligemma_config = gemma.get_config(config.paligemma_variant)
        expert_config = gemma.get_config(config.action_expert_variant)
        llm = gemma.Gemma(
            [paligemma_config, expert_config],
            vocab_size=config.vocab_size,
            embed_dtype=config.dtype,
            use_adarms=[False, self._adaptive_expert_norms()],
            rngs=rngs,
        )
        img = siglip.Siglip(
            num_classes=paligemma_config.width, variant=config.vision_variant, dtype_mm=config.dtype, rngs=rngs
        )
        self.PaliGemma = nnx.Dict(llm=llm, img=img)
        width = expert_config.width
        self.action_in_proj = nnx.Linear(config.action_dim, width, rngs=rngs)
        self._init_time_conditioning(config.action_dim, width, rngs)
        self.action_out_proj = nnx.Linear(width, config.action_dim, rngs=rngs)

    # --- the π₀-specific part (overridden by Pi05) ---

    def _adaptive_expert_norms(self) -> bool:
        return False

    def _init_time_conditioning(self, action_dim: int, width: int, rngs: nnx.Rngs) -> None:
        self.state_proj = nnx.Linear(action_dim, width, rngs=rngs)
        self.action_time_mlp_in = nnx.Linear(2 * width, width, rngs=rngs)
        self.action_time_mlp_out = nnx.Linear(width, width, rngs=rngs)

    def _suffix_tokens(
        self, observation: model.Observation, action_tokens: jax.Array, time_emb: jax.Array
    ) -> tuple[list[jax.Array], list[jax.Array], list[bool], jax.Array | None]:
        """π₀: a state token, then action tokens mixed with the time embedding; no adaRMS conditioning."""
        state_token = self.state_proj(observation.state)[:, None, :]
        if time_emb.ndim == 2:  # one time per sample; [B, H, D] (per row, training-time RTC) as it is
            time_tokens = einops.repeat(time_emb, "b emb -> b s emb", s=self.action_horizon)
        else:
            time_tokens = time_emb
        mixed = self.action_time_mlp_in(jnp.concatenate([action_tokens, time_tokens], axis=-1))
        mixed = self.action_time_mlp_out(nnx.swish(mixed))
        batch = observation.state.shape[0]
        masks = [jnp.ones((batch, 1), jnp.bool_), jnp.ones(mixed.shape[:2], jnp.bool_)]
        ar_mask = [True] + [True] + [False] * (self.action_horizon - 1)
        return [state_token, mixed], masks, ar_mask, None

    # --- shared ---

    def embed_prefix(self, observation: model.Observation) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Image tokens of every camera, then the prompt tokens: (tokens [B,S,D], mask [B,S], ar_mask [S])."""
        tokens, input_mask, ar_mask = [], [], []
        for name in observation.images:
            image_tokens = self.PaliGemma["img"](observation.images[name])
            tokens.append(image_tokens)
            input_mask.append(einops.repeat(observation.image_masks[name], "b -> b s", s=image_tokens.shape[1]))
            ar_mask += [False] * image_tokens.shape[1]
        if observation.tokenized_prompt is not None:
            text_tokens = self.PaliGemma["llm"].embed(observation.tokenized_prompt)
            tokens.append(text_tokens)
            input_mask.append(observation.tokenized_prompt_mask)
            ar_mask += [False] * text_tokens.shape[1]
        return jnp.concatenate(tokens, axis=1), jnp.concatenate(input_mask, axis=1), jnp.asarray(ar_mask)

    def embed_suffix(
        self, observation: model.Observation, noisy_actions: jax.Array, timestep: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
        """Action-expert input for `x_t` at time `timestep` ([B], or [B, H]: one per row): (tokens, mask, ar_mask,
        adaRMS conditioning or None)."""
        action_tokens = self.action_in_proj(noisy_actions)
        width = self.action_in_proj.out_features
        time_emb = posemb_sincos(timestep.reshape(-1), width, min_period=4e-3, max_period=4.0)
        time_emb = time_emb.reshape(*timestep.shape, width)
        tokens, masks, ar_mask, adarms_cond = self._suffix_tokens(observation, action_tokens, time_emb)
        return jnp.concatenate(tokens, axis=1), jnp.concatenate(masks, axis=1), jnp.asarray(ar_mask), adarms_cond

    def forward_velocity(
        self, observation: model.Observation, x_t: jax.Array, time: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """One joint pass over prefix + suffix (training form): (v_t [B,H,A], action-expert output [B,S_suffix,D])."""
        prefix_tokens, prefix_mask, prefix_ar_mask = self.embed_prefix(observation)
        suffix_tokens, suffix_mask, suffix_ar_mask, adarms_cond = self.embed_suffix(observation, x_t, time)
        input_mask = jnp.concatenate([prefix_mask, suffix_mask], axis=1)
        ar_mask = jnp.concatenate([prefix_ar_mask, suffix_ar_mask], axis=0)
        attn_mask = model.make_attn_mask(input_mask, ar_mask)
        positions = jnp.cumsum(input_mask, axis=1) - 1
        (_, suffix_out), _ = self.PaliGemma["llm"](
            [prefix_tokens, suffix_tokens], positions, attn_mask, adarms_cond=[None, adarms_cond]
        )
        v_t = self.action_out_proj(suffix_out[:, -self.action_horizon :])
        return v_t, suffix_out

    def compute_loss(
        self,
        rng: jax.Array,
        observation: model.Observation,
        actions: model.Actions,
        *,
        train: bool = False,
        noise: jax.Array | None = None,
        time: jax.Array | None = None,
        delay: jax.Array | None = None,
    ) -> jax.Array:
        """Flow-matching loss per sample and action step, [B, H]. `noise`/`time`/`delay` replace the random draws.

        With training-time RTC (`training_rtc_max_delay` > 0) each sample draws a delay d in [0, max]; its first d
        rows enter clean at flow time 0 and carry no loss (the other rows' losses are scaled by H / (H - d), so the
        mean over the chunk is the mean over the rows that are learnt).
        """
        preprocess_rng, noise_rng, time_rng = jax.random.split(rng, 3)
        observation = model.preprocess_observation(preprocess_rng, observation, train=train)
        batch_shape = actions.shape[:-2]
        if noise is None:
            noise = jax.random.normal(noise_rng, actions.shape)
        if time is None:
            time = jax.random.beta(time_rng, 1.5, 1, batch_shape) * 0.999 + 0.001
        x_t, u_t = flow_matching_targets(actions, noise, time)
        if not self.training_rtc_max_delay:
            v_t, _ = self.forward_velocity(observation, x_t, time)
            return jnp.mean(jnp.square(v_t - u_t), axis=-1)
        if delay is None:
            delay = jax.random.randint(jax.random.fold_in(time_rng, 1), batch_shape, 0, self.training_rtc_max_delay + 1)
        given = jnp.arange(self.action_horizon) < delay[..., None]
        x_t = jnp.where(given[..., None], actions, x_t)
        v_t, _ = self.forward_velocity(observation, x_t, jnp.where(given, 0.0, time[..., None]))
        learnt = jnp.logical_not(given)
        scale = self.action_horizon / jnp.sum(learnt, axis=-1, keepdims=True)
        return jnp.mean(jnp.square(v_t - u_t), axis=-1) * learnt * scale

    def prefill(self, observation: model.Observation) -> tuple[gemma.KVCache, jax.Array]:
        """Run the prefix once: (KV cache [depth, B, S, K, H] for k and v, prefix mask [B, S])."""
        prefix_tokens, prefix_mask, prefix_ar_mask = self.embed_prefix(observation)
        attn_mask = model.make_attn_mask(prefix_mask, prefix_ar_mask)
        positions = jnp.cumsum(prefix_mask, axis=1) - 1
        _, kv_cache = self.PaliGemma["llm"]([prefix_tokens, None], positions, attn_mask)
        return kv_cache, prefix_mask

    def denoise_velocity(
        self,
        observation: model.Observation,
        kv_cache: gemma.KVCache,
        prefix_mask: jax.Array,
        x_t: jax.Array,
        time: jax.Array,
    ) -> jax.Array:
        """The velocity at `x_t`, time `time` [B], reusing the prefix KV cache."""
        suffix_tokens, suffix_mask, suffix_ar_mask, adarms_cond = self.embed_suffix(observation, x_t, time)
        suffix_attn_mask = model.make_attn_mask(suffix_mask, suffix_ar_mask)
        prefix_attn_mask = einops.repeat(prefix_mask, "b p -> b s p", s=suffix_tokens.shape[1])
        full_attn_mask = jnp.concatenate([prefix_attn_mask, suffix_attn_mask], axis=-1)
        positions = jnp.sum(prefix_mask, axis=-1)[:, None] + jnp.cumsum(suffix_mask, axis=-1) - 1
        (_, suffix_out), _ = self.PaliGemma["llm"](
            [None, suffix_tokens], positions, full_attn_mask, adarms_cond=[None, adarms_cond], kv_cache=kv_cache
        )
        return self.action_out_proj(suffix_out[:, -self.action_horizon :])

    def sample_actions(
        self,
        rng: jax.Array,
        observation: model.Observation,
        *,
        num_steps: int = 10,
        noise: jax.Array | None = None,
        prefix: rtc.ActionPrefix | None = None,
        guidance: rtc.Guidance = rtc.DEFAULT_GUIDANCE,
    ) -> model.Actions:
        """An action chunk [B, H, A]: Euler integration of the predicted velocity from noise (t=1) to t=0.

        `prefix` (real-time chunking, `openpi_core.models.rtc`): the chunk continues the given actions: by guided
        steps (`guidance`), or, for a model trained with training-time RTC, by taking the prefix's first `delay`
        rows as given (flow time 0) and returning them unchanged. Without a prefix the sampler is unchanged.
        """
        observation = model.preprocess_observation(None, observation, train=False)
        dt = -1.0 / num_steps
        batch_size = observation.state.shape[0]
        if noise is None:
            noise = jax.random.normal(rng, (batch_size, self.action_horizon, self.action_dim))
        kv_cache, prefix_mask = self.prefill(observation)

        def velocity(x_t: jax.Array, time: jax.Array) -> jax.Array:
            return self.denoise_velocity(observation, kv_cache, prefix_mask, x_t, time)

        if prefix is None:

            def step_velocity(x_t: jax.Array, time: jax.Array) -> jax.Array:
                return velocity(x_t, jnp.broadcast_to(time, batch_size))

        elif self.training_rtc_max_delay:
            given = rtc.conditioned_rows(prefix, self.action_horizon)
            noise = jnp.where(given[..., None], prefix.actions, noise)

            def step_velocity(x_t: jax.Array, time: jax.Array) -> jax.Array:
                row_time = jnp.where(given, 0.0, time)
                return jnp.where(given[..., None], 0.0, velocity(x_t, row_time))

        else:
            weights = rtc.prefix_weights(prefix, self.action_horizon, guidance.schedule)

            def step_velocity(x_t: jax.Array, time: jax.Array) -> jax.Array:
                return rtc.guided_velocity(
                    lambda x: velocity(x, jnp.broadcast_to(time, batch_size)),
                    x_t,
                    time,
                    target=prefix.actions,
                    weights=weights,
                    guidance=guidance,
                )

        def step(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            x_t, time = carry
            return x_t + dt * step_velocity(x_t, time), time + dt

        def cond(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
            return carry[1] >= -dt / 2

        x_0, _ = jax.lax.while_loop(cond, step, (noise, 1.0))
        return x_0


class Pi05(Pi0):
    """π₀.₅. Parameters as π₀ but `time_mlp_in`/`time_mlp_out` instead of the state and action-time MLPs, and
    adaRMS expert norms (`..._1/Dense_0`)."""

    def _adaptive_expert_norms(self) -> bool:
        return True

    def _init_time_conditioning(self, action_dim: int, width: int, rngs: nnx.Rngs) -> None:
        del action_dim
        self.time_mlp_in = nnx.Linear(width, width, rngs=rngs)
        self.time_mlp_out = nnx.Linear(width, width, rngs=rngs)

    def _suffix_tokens(
        self, observation: model.Observation, action_tokens: jax.Array, time_emb: jax.Array
    ) -> tuple[list[jax.Array], list[jax.Array], list[bool], jax.Array | None]:
        """π₀.₅: the action tokens alone; the time drives adaRMS through `swish(mlp_out(swish(mlp_in(t))))`."""
        cond = nnx.swish(self.time_mlp_out(nnx.swish(self.time_mlp_in(time_emb))))
        mask = jnp.ones(action_tokens.shape[:2], jnp.bool_)
        return [action_tokens], [mask], [True] + [False] * (self.action_horizon - 1), cond
