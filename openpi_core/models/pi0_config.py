"""`Pi0Config`: π₀ and π₀.₅ (openpi's fields, plus the vision variant and vocabulary size)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from openpi_core.models import gemma, model
from openpi_core.models.nnx_utils import PathRegex


@dataclasses.dataclass(frozen=True)
class Pi0Config(model.BaseModelConfig):
    """π₀ (flow matching, state token in the action expert) or, with `pi05=True`, π₀.₅ (adaRMS time conditioning,
    discretised state in the prompt). Defaults are openpi's full-size models."""

    dtype: str = "bfloat16"
    paligemma_variant: str = "gemma_2b"
    action_expert_variant: str = "gemma_300m"
    action_dim: int = 32
    action_horizon: int = 50
    # None: 48 for π₀, 200 for π₀.₅ (whose prompt also carries the state).
    max_token_len: int = None  # type: ignore[assignment]
    pi05: bool = False
    # None: the same as `pi05` (π₀.₅ puts the discretised state into the prompt).
    discrete_state_input: bool = None  # type: ignore[assignment]
    vision_variant: str = "So400m/14"
    vocab_size: int = gemma.PALIGEMMA_VOCAB_SIZE
    # Training-time real-time chunking (arXiv 2512.05964): > 0 trains with the first d ~ U{0..max} rows of each chunk
    # given (flow time 0, no loss), and inference then takes a prefix as given instead of guiding towards it.
    training_rtc_max_delay: int = 0

    def __post_init__(self) -> None:
        if self.max_token_len is None:
            object.__setattr__(self, "max_token_len", 200 if self.pi05 else 48)
        if self.discrete_state_input is None:
            object.__setattr__(self, "discrete_state_input", self.pi05)
        if not 0 <= self.training_rtc_max_delay < self.action_horizon:
            raise ValueError(
                f"Pi0Config.training_rtc_max_delay must be in [0, action_horizon={self.action_horizon}), "
                f"got {self.training_rtc_max_delay}"
            )
        gemma.get_config(self.paligemma_variant)  # fail early on unknown names
        gemma.get_config(self.action_expert_variant)

    @property
    def model_type(self) -> model.ModelType:
        return model.ModelType.PI05 if self.pi05 else model.ModelType.PI0

    def create(self, rng: jax.Array) -> model.BaseModel:
        from openpi_core.models import pi0  # noqa: PLC0415 (pi0 imports this module)

        model_class = pi0.Pi05 if self.pi05 else pi0.Pi0
        return model_class(self, rngs=nnx.Rngs(rng))

    def inputs_spec(self, *, batch_size: int = 1) -> tuple[model.Observation, Any]:
        image_spec = jax.ShapeDtypeStruct([batch_size, *model.IMAGE_RESOLUTION, 3], jnp.float32)
        mask_spec = jax.ShapeDtypeStruct([batch_size], jnp.bool_)
        observation_spec = model.Observation(
            images=dict.fromkeys(model.IMAGE_KEYS, image_spec),
            image_masks=dict.fromkeys(model.IMAGE_KEYS, mask_spec),
            state=jax.ShapeDtypeStruct([batch_size, self.action_dim], jnp.float32),
            tokenized_prompt=jax.ShapeDtypeStruct([batch_size, self.max_token_len], jnp.int32),
            tokenized_prompt_mask=jax.ShapeDtypeStruct([batch_size, self.max_token_len], jnp.bool_),
        )
        action_spec = jax.ShapeDtypeStruct([batch_size, self.action_horizon, self.action_dim], jnp.float32)
        return observation_spec, action_spec

    def get_freeze_filter(self) -> nnx.filterlib.Filter:
        """LoRA fine-tuning: freeze the LLM weights of every LoRA expert, train the adapters and everything else."""
        llm = PathRegex(".*llm.*")
        action_expert = PathRegex(".*llm.*_1.*")
        filters: list[Any] = []
        if "lora" in self.paligemma_variant:
            filters.append(llm)
            if "lora" not in self.action_expert_variant:
                filters.append(nnx.Not(action_expert))
        elif "lora" in self.action_expert_variant:
            filters.append(action_expert)
        if not filters:
            return nnx.Nothing
        return nnx.All(*filters, nnx.Not(PathRegex(".*lora.*")))
