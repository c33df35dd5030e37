"""π₀-FAST: PaliGemma generating FAST action tokens autoregressively.

Inference reproduces openpi's decoding exactly, quirks included (they are facts of the released models):
the prefix is right-aligned (`left_to_right_align`) before prefill, decoding gives the i-th generated token the
position `prefill_len + i + 1` (position `prefill_len` is skipped), and each step attends to the contiguous cache
window `[S - prefill_len, S + i]` even when a masked camera makes the valid prefix non-contiguous. Generated ids
are returned as float32, as openpi does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import einops
import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from openpi_core.models import gemma, model, siglip
from openpi_core.models.nnx_utils import PathRegex

FAST_IMAGE_KEYS: tuple[str, ...] = ("base_0_rgb", "base_1_rgb", "wrist_0_rgb")


@dataclasses.dataclass(frozen=True)
class Pi0FASTConfig(model.BaseModelConfig):
    dtype: str = "bfloat16"
    paligemma_variant: str = "gemma_2b"
    action_dim: int = 32
    action_horizon: int = 32
    max_token_len: int = 250
    # FAST action tokenizer to use in the policy transforms (None: the official pretrained one).
    fast_model_tokenizer: Any = None
    fast_model_tokenizer_kwargs: dict[str, Any] | None = None
    vision_variant: str = "So400m/14"
    vocab_size: int = gemma.PALIGEMMA_VOCAB_SIZE

    def __post_init__(self) -> None:
        gemma.get_config(self.paligemma_variant)

    @property
    def model_type(self) -> model.ModelType:
        return model.ModelType.PI0_FAST

    def create(self, rng: jax.Array) -> model.BaseModel:
        return Pi0FAST(self, rngs=nnx.Rngs(rng))

    def inputs_spec(self, *, batch_size: int = 1) -> tuple[model.Observation, Any]:
        image_spec = jax.ShapeDtypeStruct([batch_size, *model.IMAGE_RESOLUTION, 3], jnp.float32)
        mask_spec = jax.ShapeDtypeStruct([batch_size], jnp.bool_)
        tokens = [batch_size, self.max_token_len]
        observation_spec = model.Observation(
            images=dict.fromkeys(FAST_IMAGE_KEYS, image_spec),
            image_masks=dict.fromkeys(FAST_IMAGE_KEYS, mask_spec),
            state=jax.ShapeDtypeStruct([batch_size, self.action_dim], jnp.float32),
            tokenized_prompt=jax.ShapeDtypeStruct(tokens, jnp.int32),
            tokenized_prompt_mask=jax.ShapeDtypeStruct(tokens, jnp.bool_),
            token_ar_mask=jax.ShapeDtypeStruct(tokens, jnp.int32),
            token_loss_mask=jax.ShapeDtypeStruct(tokens, jnp.bool_),
        )
        action_spec = jax.ShapeDtypeStruct([batch_size, self.action_horizon, self.action_dim], jnp.float32)
        return observation_spec, action_spec

    def get_freeze_filter(self) -> nnx.filterlib.Filter:
        if "lora" in self.paligemma_variant:
            return nnx.All(PathRegex(".*llm.*"), nnx.Not(PathRegex(".*lora.*")))
        return nnx.Nothing


def left_to_right_align(
    x: jax.Array, input_mask: jax.Array, attn_mask: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Roll each sample so its last valid token sits at the last index (padding moves to the front)."""

    def one(x: jax.Array, input_mask: jax.Array, attn_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        seqlen = jnp.max(input_mask * jnp.arange(input_mask.shape[0])) + 1
        return (
            jnp.roll(x, -seqlen, axis=0),
            jnp.roll(input_mask, -seqlen, axis=0),
            jnp.roll(attn_mask, -seqlen, axis=(0, 1)),
        )

    return jax.vmap(one)(x, input_mask, attn_mask)


def put_along_last_axis(arr: jax.Array, indices: jax.Array, values: jax.Array) -> jax.Array:
    one_hot = jax.nn.one_hot(indices, arr.shape[-1], dtype=values.dtype)
    put_mask = jnp.einsum("...i,...in->...n", jnp.ones(values.shape, jnp.int32), one_hot)
    put_values = jnp.einsum("...i,...in->...n", values, one_hot)
    return jnp.where(put_mask, put_values, arr)


@flax.struct.dataclass
class Prefill:
    """The state after the prefix pass, from which decoding starts."""

    last_logits: jax.Array  # [B, 1, V] logits at the last (aligned) prefix position
    pre_logits: jax.Array  # [B, S, D] final-normed hidden states, aligned order
    kv_cache: gemma.KVCache  # [depth, B, S + max_decoding_steps, K, H]
    prefill_len: jax.Array  # [B] valid prefix tokens
    shift: jax.Array  # [B] how far each sample was rolled left by the alignment


class Pi0FAST(model.BaseModel):
    """Parameters: `PaliGemma/img` (SigLIP) and `PaliGemma/llm` (one Gemma expert)."""

    def __init__(self, config: Pi0FASTConfig, *, rngs: nnx.Rngs) -> None:
        super().__init__(config.action_dim, config.action_horizon, config.max_token_len)
        llm_config = gemma.get_config(config.paligemma_variant)
        llm = gemma.Gemma([llm_config], vocab_size=config.vocab_size, embed_dtype=config.dtype, rngs=rngs)
        img = siglip.Siglip(
            num_classes=llm_config.width, variant=config.vision_variant, dtype_mm=config.dtype, rngs=rngs
        )
        self.PaliGemma = nnx.Dict(llm=llm, img=img)

    def embed_inputs(self, observation: model.Observation) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Image tokens, then the text tokens: (embeddings [B,S,D], mask [B,S], ar_mask [B,S] int32)."""
        if observation.tokenized_prompt is None or observation.token_ar_mask is None:
            raise ValueError("π₀-FAST needs tokenized_prompt, tokenized_prompt_mask and token_ar_mask")
        embeddings, input_mask, ar_mask = [], [], []
        for name in observation.images:
            image_tokens = self.PaliGemma["img"](observation.images[name])
            embeddings.append(image_tokens)
            input_mask.append(einops.repeat(observation.image_masks[name], "b -> b s", s=image_tokens.shape[1]))
            ar_mask.append(jnp.zeros_like(input_mask[-1], dtype=jnp.int32))
        embeddings.append(self.PaliGemma["llm"].embed(observation.tokenized_prompt))
        input_mask.append(observation.tokenized_prompt_mask)
        ar_mask.append(jnp.asarray(observation.token_ar_mask, jnp.int32))
        return jnp.concatenate(embeddings, axis=1), jnp.concatenate(input_mask, axis=1), jnp.concatenate(ar_mask, 1)

    def compute_loss(
        self, rng: jax.Array, observation: model.Observation, actions: model.Actions, *, train: bool = False
    ) -> jax.Array:
        """Next-token cross entropy on the loss-masked (action) tokens, per sample [B]. `actions` is unused:
        the targets are already in the tokenized prompt."""
        del actions
        observation = model.preprocess_observation(
            rng, observation, train=train, image_keys=list(observation.images.keys())
        )
        if observation.token_loss_mask is None:
            raise ValueError("π₀-FAST compute_loss needs token_loss_mask")
        embeddings, input_mask, ar_mask = self.embed_inputs(observation)
        attn_mask = model.make_attn_mask(input_mask, ar_mask)
        llm = self.PaliGemma["llm"]
        targets = jax.nn.one_hot(observation.tokenized_prompt[:, 1:], llm.vocab_size)
        positions = jnp.arange(embeddings.shape[1] - 1)[None, :]
        (pre_logits,), _ = llm([embeddings[:, :-1]], positions, attn_mask[:, :-1, :-1])
        logits = llm.decode(pre_logits[:, -targets.shape[1] :])
        logp = jax.nn.log_softmax(logits, axis=-1)
        loss_mask = observation.token_loss_mask[:, 1:]
        token_pplx = jnp.sum(targets * logp, axis=-1)
        return -jnp.sum(token_pplx * loss_mask, axis=-1) / jnp.clip(jnp.sum(loss_mask, -1), 1)

    def prefill(self, observation: model.Observation, *, max_decoding_steps: int) -> Prefill:
        """Right-align the prefix and run it once into a KV cache with room for `max_decoding_steps` tokens."""
        embeddings, prefix_mask, prefix_ar_mask = self.embed_inputs(observation)
        attn_mask = model.make_attn_mask(prefix_mask, prefix_ar_mask)
        shift = jnp.max(prefix_mask * jnp.arange(prefix_mask.shape[1]), axis=1) + 1
        embeddings, prefix_mask, attn_mask = left_to_right_align(embeddings, prefix_mask, attn_mask)
        prefill_len = jnp.sum(prefix_mask, axis=-1)
        attn_mask = jnp.pad(attn_mask, ((0, 0), (0, 0), (0, max_decoding_steps)))
        positions = jnp.cumsum(prefix_mask, axis=-1) - 1
        llm = self.PaliGemma["llm"]
        (pre_logits,), kv_cache = llm([embeddings], positions, attn_mask)
        last_logits = llm.decode(pre_logits[:, -1:])
        return Prefill(last_logits, pre_logits, kv_cache, prefill_len, shift)

    def decode_step(
        self, prefill: Prefill, kv_cache: gemma.KVCache, token: jax.Array, step: jax.Array | int
    ) -> tuple[jax.Array, gemma.KVCache]:
        """Feed the token chosen at `step` ([B, 1] ids): (logits for the next token [B, 1, V], updated cache)."""
        llm = self.PaliGemma["llm"]
        prefill_size = prefill.pre_logits.shape[1]
        cache_size = kv_cache[0].shape[2]
        prefix_start = prefill_size - prefill.prefill_len
        positions = prefill.prefill_len[:, None] + step + 1
        columns = jnp.arange(cache_size)[None, None, :]
        mask = jnp.logical_and(
            columns >= prefix_start[:, None, None],
            columns < jnp.broadcast_to(prefill_size + step + 1, (prefix_start.shape[0], 1, 1)),
        )
        (hidden,), kv_cache = llm(
            [llm.embed(token)], positions, mask, kv_cache=kv_cache, cache_index=prefill_size + step
        )
        return llm.decode(hidden), kv_cache

    def sample_actions(
        self,
        rng: jax.Array,
        observation: model.Observation,
        *,
        max_decoding_steps: int = 256,
        temperature: float = 0.0,
    ) -> model.Actions:
        """Generated token ids [B, max_decoding_steps] as float32 (0 after the loop stops); greedy at temperature 0.

        Decoding stops once every sample has produced EOS. Turn the ids into actions with the FAST tokenizer.
        """
        observation = model.preprocess_observation(
            None, observation, train=False, image_keys=list(observation.images.keys())
        )
        prefill = self.prefill(observation, max_decoding_steps=max_decoding_steps)
        batch = prefill.last_logits.shape[0]
        output_tokens = jnp.zeros((batch, max_decoding_steps))

        def step(carry: tuple) -> tuple:
            rng, last_logits, output_tokens, cache, _, step = carry
            rng, rng_step = jax.random.split(rng)
            token = jax.lax.cond(
                temperature > 0.0,
                lambda _: jax.random.categorical(rng_step, last_logits / temperature, axis=-1),
                lambda _: jnp.argmax(last_logits, axis=-1),
                operand=None,
            )
            output_tokens = put_along_last_axis(output_tokens, jnp.broadcast_to(step, (token.shape[0], 1)), token)
            all_eos = jnp.all(jnp.any(token == gemma.PALIGEMMA_EOS_TOKEN, axis=-1))
            last_logits, cache = self.decode_step(prefill, cache, token, step)
            return rng, last_logits, output_tokens, cache, all_eos, step + 1

        def cond(carry: tuple) -> jax.Array:
            *_, all_eos, step = carry
            return (~all_eos) & (step < max_decoding_steps)

        if rng is None:
            rng = jax.random.key(0)
        init = (rng, prefill.last_logits, output_tokens, prefill.kv_cache, jnp.asarray(False), 0)
        _, _, output_tokens, _, _, _ = jax.lax.while_loop(cond, step, init)
        return output_tokens
