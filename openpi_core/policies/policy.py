"""`Policy`: a model behind input and output transforms, called with one raw robot observation at a time.

policy.infer({"observation/image": uint8[h, w, 3], ..., "prompt": "open the drawer"})
-> {"actions": float32[horizon, robot_action_dim], "state": ..., "policy_timing": {"infer_ms": ...}}
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from openpi_core import transforms as _transforms
from openpi_core.models import model as _model

__all__ = ["Policy"]


class Policy:
    """Input transforms -> jitted `sample_actions` -> output transforms (implements `PolicyClient`).

    Observations may be unbatched (one sample, the usual robot call) or batched (leading batch axis on every
    array, `batched=True`). The rng advances on every call from `seed`; `reset()` rewinds it, and `infer(...,
    rng=key)` uses a given key for one call.
    """

    def __init__(
        self,
        model: _model.BaseModel,
        *,
        transforms: Sequence[_transforms.DataTransformFn] = (),
        output_transforms: Sequence[_transforms.DataTransformFn] = (),
        sample_kwargs: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        graphdef, state = nnx.split(model)
        kwargs = dict(sample_kwargs or {})

        @jax.jit
        def sample(state: nnx.State, rng: jax.Array, observation: _model.Observation) -> jax.Array:
            return nnx.merge(graphdef, state).sample_actions(rng, observation, **kwargs)

        self._sample = sample
        self._state = state
        self._input_transform = _transforms.compose(transforms)
        self._output_transform = _transforms.compose(output_transforms)
        self._metadata = dict(metadata or {})
        self._seed = seed
        self._rng = jax.random.key(seed)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def reset(self) -> None:
        """Rewind the rng stream (each episode then samples the same noise sequence)."""
        self._rng = jax.random.key(self._seed)

    def infer(self, obs: dict[str, Any], *, batched: bool = False, rng: jax.Array | None = None) -> dict[str, Any]:
        samples = _split_batch(obs) if batched else [obs]
        inputs = [self._input_transform(_copy(sample)) for sample in samples]
        batch = jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *inputs)
        if rng is None:
            self._rng, rng = jax.random.split(self._rng)
        start = time.perf_counter()
        actions = self._sample(self._state, rng, _model.Observation.from_dict(batch))
        actions = np.asarray(jax.block_until_ready(actions))
        infer_ms = (time.perf_counter() - start) * 1e3
        outputs = []
        for i in range(actions.shape[0]):
            raw = {"state": np.asarray(batch["state"][i]), "actions": actions[i]}
            outputs.append(self._output_transform(raw))
        result = outputs[0] if not batched else {k: np.stack([o[k] for o in outputs]) for k in outputs[0]}
        return {**result, "policy_timing": {"infer_ms": infer_ms}}


def _copy(tree: Any) -> Any:
    return {k: _copy(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def _leaves(tree: Any) -> list[Any]:
    return [leaf for v in tree.values() for leaf in _leaves(v)] if isinstance(tree, dict) else [tree]


def _index(tree: Any, i: int) -> Any:
    if isinstance(tree, dict):
        return {k: _index(v, i) for k, v in tree.items()}
    return tree[i] if isinstance(tree, np.ndarray | list) and np.ndim(tree) > 0 else tree


def _split_batch(obs: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per sample; strings (a shared prompt) apply to every sample. Keys may contain '/'."""
    sizes = {len(v) for v in _leaves(obs) if isinstance(v, np.ndarray | list) and np.ndim(v) > 0}
    if len(sizes) != 1:
        raise ValueError(f"batched observation: arrays disagree on the batch size ({sorted(sizes)})")
    return [_index(obs, i) for i in range(sizes.pop())]
