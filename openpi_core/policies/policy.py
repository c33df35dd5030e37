"""`Policy`: a model behind input and output transforms, called with one raw robot observation at a time.

policy.infer({"observation/image": uint8[h, w, 3], ..., "prompt": "open the drawer"})
-> {"actions": float32[horizon, robot_action_dim], "state": ..., "policy_timing": {"infer_ms": ...}}

Real-time chunking (π₀, π₀.₅; `openpi_core.models.rtc`): three optional observation keys, which openpi's own
clients never send and openpi's servers ignore: ``rtc_prefix_actions`` (float [n, robot_action_dim], robot units:
the previous chunk's rows from this observation's time on), ``rtc_inference_delay`` (int rows executed before the
new chunk can arrive) and ``rtc_execution_horizon`` (int rows softly matched; default all n). The prefix is mapped
into model space by the inverse of the output transforms. `metadata["rtc"]` says how the model uses it
(``guidance``, or ``training`` for a model trained with training-time RTC); without it, the keys are refused.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from openpi_core import transforms as _transforms
from openpi_core.errors import InvalidObservationError
from openpi_core.models import model as _model
from openpi_core.models import rtc
from openpi_core.policies.protocol import DELAY_KEY, HORIZON_KEY, PREFIX_KEY, RTC_KEYS

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
        def sample(
            state: nnx.State, rng: jax.Array, observation: _model.Observation, prefix: rtc.ActionPrefix | None
        ) -> jax.Array:
            extra = {} if prefix is None else {"prefix": prefix}
            return nnx.merge(graphdef, state).sample_actions(rng, observation, **kwargs, **extra)

        self._sample = sample
        self._state = state
        self._input_transform = _transforms.compose(transforms)
        self._output_transform = _transforms.compose(output_transforms)
        self._action_shape = (model.action_horizon, model.action_dim)
        self._metadata = dict(metadata or {})
        if "prefix" in inspect.signature(model.sample_actions).parameters:
            self._metadata["rtc"] = "training" if getattr(model, "training_rtc_max_delay", 0) else "guidance"
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
        requests = [self._rtc_request(sample) for sample in samples]
        inputs = [self._input_transform(_copy({k: v for k, v in s.items() if k not in RTC_KEYS})) for s in samples]
        batch = jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *inputs)
        prefix = self._action_prefix(requests, np.asarray(batch["state"])) if any(requests) else None
        if rng is None:
            self._rng, rng = jax.random.split(self._rng)
        start = time.perf_counter()
        actions = self._sample(self._state, rng, _model.Observation.from_dict(batch), prefix)
        actions = np.asarray(jax.block_until_ready(actions))
        infer_ms = (time.perf_counter() - start) * 1e3
        outputs = []
        for i in range(actions.shape[0]):
            raw = {"state": np.asarray(batch["state"][i]), "actions": actions[i]}
            outputs.append(self._output_transform(raw))
        result = outputs[0] if not batched else {k: np.stack([o[k] for o in outputs]) for k in outputs[0]}
        return {**result, "policy_timing": {"infer_ms": infer_ms}}

    def _rtc_request(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The RTC keys of `sample`, checked ({} when there are none)."""
        request = {key: sample[key] for key in RTC_KEYS if key in sample}
        if not request:
            return request
        if "rtc" not in self._metadata:
            raise InvalidObservationError(PREFIX_KEY, "this policy's model has no real-time chunking (π₀/π₀.₅ only)")
        if PREFIX_KEY not in request:
            raise InvalidObservationError(PREFIX_KEY, f"missing (given {sorted(request)})")
        prefix = np.asarray(request[PREFIX_KEY])
        if prefix.ndim != 2 or prefix.shape[0] == 0 or prefix.dtype.kind not in "iuf":
            raise InvalidObservationError(PREFIX_KEY, f"expected numbers [rows, action_dim], got {prefix.shape}")
        if not np.all(np.isfinite(prefix)):
            raise InvalidObservationError(PREFIX_KEY, "contains NaN or Inf")
        request[PREFIX_KEY] = prefix[: self._action_shape[0]].astype(np.float32)
        for key, default in ((DELAY_KEY, 0), (HORIZON_KEY, len(request[PREFIX_KEY]))):
            value = np.asarray(request.get(key, default))
            if value.ndim != 0 or value.dtype.kind not in "iu" or value < 0:
                raise InvalidObservationError(key, f"expected an integer >= 0, got {request.get(key)!r}")
            request[key] = int(value)
        return request

    def _action_prefix(self, requests: list[dict[str, Any]], states: np.ndarray) -> rtc.ActionPrefix:
        """The requests' prefixes in model space (inverse output transforms), padded to the model's chunk."""
        horizon, width = self._action_shape
        actions = np.zeros((len(requests), horizon, width), np.float32)
        fields = np.zeros((3, len(requests)), np.int32)
        for i, request in enumerate(requests):
            if not request:
                continue  # no prefix for this sample: length 0 weighs nothing and conditions nothing
            model_side = {"state": states[i], "actions": np.zeros((horizon, width), np.float32)}
            try:
                model_actions = _transforms.invert_actions(
                    self._output_transform.transforms, model_side, request[PREFIX_KEY]
                )
            except ValueError as exc:
                raise InvalidObservationError(PREFIX_KEY, str(exc)) from exc
            rows = len(model_actions)
            actions[i, :rows] = model_actions
            fields[:, i] = (rows, request[DELAY_KEY], request[HORIZON_KEY])
        return rtc.ActionPrefix(
            actions=jnp.asarray(actions),
            length=jnp.asarray(fields[0]),
            delay=jnp.asarray(fields[1]),
            execution_horizon=jnp.asarray(fields[2]),
        )


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
