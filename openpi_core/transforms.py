"""Composable data transforms with openpi's semantics.

A transform maps one sample (a nested dict of numpy arrays) to another. Pipelines are built from `Group`s: a group
has input transforms (robot data -> model inputs) and output transforms (model outputs -> robot actions), and
pushing groups together runs inputs in order and outputs in reverse order, so each group undoes its own work.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from openpi_core.images import resize_with_pad
from openpi_core.normalize import NormStats

DataDict = dict[str, Any]


class DataTransformFn(Protocol):
    def __call__(self, data: DataDict) -> DataDict: ...


@dataclasses.dataclass(frozen=True)
class Group:
    inputs: Sequence[DataTransformFn] = ()
    outputs: Sequence[DataTransformFn] = ()

    def push(self, *, inputs: Sequence[DataTransformFn] = (), outputs: Sequence[DataTransformFn] = ()) -> Group:
        """Append input transforms and prepend output transforms (outputs undo in reverse order)."""
        return Group(inputs=(*self.inputs, *inputs), outputs=(*outputs, *self.outputs))


@dataclasses.dataclass(frozen=True)
class CompositeTransform:
    transforms: Sequence[DataTransformFn]

    def __call__(self, data: DataDict) -> DataDict:
        for transform in self.transforms:
            data = transform(data)
        return data


def compose(transforms: Sequence[DataTransformFn]) -> CompositeTransform:
    return CompositeTransform(tuple(transforms))


def invert_actions(transforms: Sequence[DataTransformFn], data: DataDict, actions: np.ndarray) -> np.ndarray:
    """The model-side actions that the output `transforms` (in the order they run) map to `actions`.

    `data` is what enters the first transform: the model-side ``state`` and ``actions`` of the model's shape (their
    values do not matter). Each transform's ``invert_actions(actions, data_in)`` (the actions it was given, from its
    output actions and the data it was given) runs in reverse order, each seeing the data as it entered that
    transform (e.g. `AbsoluteActions` the unnormalized state, a slicing adapter the model's width). A ValueError
    names a transform without an inverse, or `actions` of another width than the transforms put out.
    """
    for transform in transforms:
        if not hasattr(transform, "invert_actions"):
            raise ValueError(
                f"output transform {type(transform).__name__} has no invert_actions: a prefix of robot actions "
                "cannot be mapped to model space (real-time chunking needs every output transform invertible)"
            )
    entered = []
    for transform in transforms:
        entered.append(data)
        data = transform(dict(data))
    width = np.shape(data["actions"])[-1]
    if np.shape(actions)[-1] != width:
        raise ValueError(f"expected {width} action columns (the policy's output), got shape {np.shape(actions)}")
    for transform, data_in in zip(reversed(transforms), reversed(entered), strict=True):
        actions = transform.invert_actions(np.asarray(actions, np.float32), data_in)
    return actions


def flatten_dict(tree: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= {f"{key}{sep}{k}": v for k, v in flatten_dict(value, sep).items()}
        else:
            out[key] = value
    return out


def unflatten_dict(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(sep)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


@dataclasses.dataclass(frozen=True)
class RepackTransform:
    """Rename keys: `structure` is the output tree whose leaves are '/'-joined paths into the input.

    `RepackTransform({"images": {"cam_high": "observation.images.top"}, "state": "observation.state"})`
    """

    structure: Mapping[str, Any]

    def __call__(self, data: DataDict) -> DataDict:
        flat = flatten_dict(data)

        def pick(path: str) -> Any:
            if path not in flat:
                raise KeyError(f"repack: input has no key {path!r} (has {sorted(flat)})")
            return flat[path]

        def build(node: Any) -> Any:
            return {k: build(v) for k, v in node.items()} if isinstance(node, Mapping) else pick(node)

        return build(self.structure)


@dataclasses.dataclass(frozen=True)
class SplitVector:
    """Split the vector at `key` into consecutive parts: `SplitVector("state", {"joints": 7, "gripper": 1})`
    (a converted dataset's concatenated state -> an adapter's separate keys)."""

    key: str
    parts: Mapping[str, int]

    def __call__(self, data: DataDict) -> DataDict:
        vector = np.asarray(data[self.key])
        if vector.shape[-1] != sum(self.parts.values()):
            raise ValueError(f"{self.key}: {vector.shape[-1]} values, expected {sum(self.parts.values())} to split")
        out = {k: v for k, v in data.items() if k != self.key}
        start = 0
        for name, size in self.parts.items():
            out[name] = vector[..., start : start + size]
            start += size
        return out


@dataclasses.dataclass(frozen=True)
class InjectDefaultPrompt:
    prompt: str | None

    def __call__(self, data: DataDict) -> DataDict:
        if self.prompt is not None and "prompt" not in data:
            return {**data, "prompt": np.asarray(self.prompt)}
        return data


@dataclasses.dataclass(frozen=True)
class PromptFromLeRobotTask:
    """The prompt is the sample's task: LeRobot v3 items carry it as `task`; otherwise `task_index` is looked up."""

    tasks: Mapping[int, str] = dataclasses.field(default_factory=dict)

    def __call__(self, data: DataDict) -> DataDict:
        if "task" in data:
            return {**data, "prompt": str(data["task"])}
        if "task_index" not in data:
            raise ValueError('cannot set the prompt from the task: the sample has neither "task" nor "task_index"')
        index = int(np.asarray(data["task_index"]).item())
        if index not in self.tasks:
            raise ValueError(f"task_index {index} not in the dataset's task table ({len(self.tasks)} tasks)")
        return {**data, "prompt": self.tasks[index]}


def pad_to_dim(x: np.ndarray, target_dim: int, axis: int = -1, value: float = 0.0) -> np.ndarray:
    """Pad `axis` up to `target_dim` with `value` (no-op if already that long or longer)."""
    x = np.asarray(x)
    current = x.shape[axis]
    if current >= target_dim:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, target_dim - current)
    return np.pad(x, pad, constant_values=value)


def apply_tree(
    tree: DataDict, selector: Mapping[str, Any], fn: Callable[[Any, Any], Any], *, strict: bool = False
) -> DataDict:
    """Apply `fn(value, selector[key])` to the leaves of `tree` whose '/'-path is a key of `selector`."""
    flat, flat_selector = flatten_dict(tree), flatten_dict(selector)
    if strict:
        missing = [key for key in flat_selector if key not in flat]
        if missing:
            raise ValueError(f"keys {missing} have norm stats but are not in the data (has {sorted(flat)})")
    return unflatten_dict({k: fn(v, flat_selector[k]) if k in flat_selector else v for k, v in flat.items()})


def _check_quantiles(norm_stats: Mapping[str, NormStats] | None, use_quantiles: bool) -> None:
    if norm_stats is None or not use_quantiles:
        return
    missing = [key for key, stats in flatten_dict(dict(norm_stats)).items() if stats.q01 is None or stats.q99 is None]
    if missing:
        raise ValueError(f"quantile normalization needs q01/q99, missing for {missing}: recompute the norm stats")


def _rescale_leading(x: np.ndarray, stats: NormStats, *, quantile: bool, inverse: bool) -> np.ndarray:
    """Normalize (or, `inverse`, unnormalize) the leading dimensions covered by `stats`; the rest pass through."""
    x = np.asarray(x, np.float32).copy()
    dim = min(x.shape[-1], (stats.q01 if quantile else stats.mean).shape[-1])
    v = x[..., :dim]
    if quantile:
        q01, q99 = stats.q01[:dim], stats.q99[:dim]
        v = (v + 1.0) / 2.0 * (q99 - q01 + 1e-6) + q01 if inverse else (v - q01) / (q99 - q01 + 1e-6) * 2.0 - 1.0
    else:
        mean, std = stats.mean[:dim], stats.std[:dim]
        v = v * (std + 1e-6) + mean if inverse else (v - mean) / (std + 1e-6)
    x[..., :dim] = v
    return x


@dataclasses.dataclass(frozen=True)
class Normalize:
    """z-score `(x - mean) / (std + 1e-6)` or quantile `2 (x - q01) / (q99 - q01 + 1e-6) - 1`.

    Stats may be shorter than the data (a padded model dimension): only the leading dimensions are used.
    """

    norm_stats: Mapping[str, NormStats] | None
    use_quantiles: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        _check_quantiles(self.norm_stats, self.use_quantiles)

    def __call__(self, data: DataDict) -> DataDict:
        if self.norm_stats is None:
            return data
        fn = functools.partial(_rescale_leading, quantile=self.use_quantiles, inverse=False)
        return apply_tree(data, self.norm_stats, fn, strict=self.strict)


@dataclasses.dataclass(frozen=True)
class Unnormalize:
    """Inverse of `Normalize`; dimensions beyond the stats are passed through."""

    norm_stats: Mapping[str, NormStats] | None
    use_quantiles: bool = False

    def __post_init__(self) -> None:
        _check_quantiles(self.norm_stats, self.use_quantiles)

    def __call__(self, data: DataDict) -> DataDict:
        if self.norm_stats is None:
            return data
        fn = functools.partial(_rescale_leading, quantile=self.use_quantiles, inverse=True)
        return apply_tree(data, self.norm_stats, fn, strict=True)

    def invert_actions(self, actions: np.ndarray, data: DataDict) -> np.ndarray:
        stats = (self.norm_stats or {}).get("actions")
        return (
            actions if stats is None else _rescale_leading(actions, stats, quantile=self.use_quantiles, inverse=False)
        )


@dataclasses.dataclass(frozen=True)
class ResizeImages:
    """openpi's ResizeImages: every camera through `openpi_core.images.resize_with_pad` (Pillow BILINEAR)."""

    height: int
    width: int

    def __call__(self, data: DataDict) -> DataDict:
        images = {k: resize_with_pad(v, self.height, self.width) for k, v in data["image"].items()}
        return {**data, "image": images}


def make_bool_mask(*dims: int) -> tuple[bool, ...]:
    """`make_bool_mask(6, -1, 6, -1)` -> 6 True, 1 False, 6 True, 1 False (positive: True, negative: False)."""
    out: list[bool] = []
    for dim in dims:
        out += [dim > 0] * abs(dim)
    return tuple(out)


def _shift_actions(data: DataDict, mask: Sequence[bool] | None, sign: float) -> DataDict:
    """actions[..., i] += sign * state[i] where mask[i] (the leading len(mask) dimensions)."""
    if "actions" not in data or mask is None:
        return data
    mask = np.asarray(mask)
    dims = mask.shape[-1]
    actions = np.asarray(data["actions"], np.float32).copy()
    state = np.asarray(data["state"])
    actions[..., :dims] += sign * np.expand_dims(np.where(mask, state[..., :dims], 0), axis=-2)
    return {**data, "actions": actions}


@dataclasses.dataclass(frozen=True)
class DeltaActions:
    """Actions where `mask` is True become relative to the current state (joints); others stay absolute."""

    mask: Sequence[bool] | None

    def __call__(self, data: DataDict) -> DataDict:
        return _shift_actions(data, self.mask, -1.0)


@dataclasses.dataclass(frozen=True)
class AbsoluteActions:
    """Inverse of `DeltaActions`."""

    mask: Sequence[bool] | None

    def __call__(self, data: DataDict) -> DataDict:
        return _shift_actions(data, self.mask, 1.0)

    def invert_actions(self, actions: np.ndarray, data: DataDict) -> np.ndarray:
        return _shift_actions({"actions": actions, "state": data["state"]}, self.mask, -1.0)["actions"]


def pad_to_input_width(actions: np.ndarray, data: DataDict) -> np.ndarray:
    """The inverse of taking the leading action dimensions: zero-pad back to the width the transform was given."""
    return pad_to_dim(actions, np.shape(data["actions"])[-1])


def prompt_text(prompt: Any) -> str:
    """A prompt as text: str, bytes (RLDS/TF data; UTF-8) or a numpy scalar / 0-d array of either."""
    if isinstance(prompt, np.ndarray):
        if prompt.size != 1:
            raise ValueError(f"prompt: expected one string, got an array of shape {prompt.shape}")
        prompt = prompt.item()
    if isinstance(prompt, bytes):
        try:
            return prompt.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"prompt: bytes that are not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(prompt, str):
        raise ValueError(f"prompt: expected text, got {type(prompt).__name__}")
    return str(prompt)


def _prompt_text(data: DataDict) -> str:
    prompt = data.get("prompt")
    if prompt is None:
        raise ValueError('a prompt is required: set "prompt" in the data, a default_prompt, or prompt_from_task')
    return prompt_text(prompt)


@dataclasses.dataclass(frozen=True)
class TokenizePrompt:
    """`prompt` (+ the state for π₀.₅) -> `tokenized_prompt`, `tokenized_prompt_mask`."""

    tokenizer: Any  # models.tokenizer.PaligemmaTokenizer
    discrete_state_input: bool = False

    def __call__(self, data: DataDict) -> DataDict:
        prompt = _prompt_text(data)
        if self.discrete_state_input and "state" not in data:
            raise ValueError('"state" is required: this model puts the discretised state into the prompt')
        state = np.asarray(data["state"]) if self.discrete_state_input else None
        tokens, mask = self.tokenizer.tokenize(prompt, state)
        out = {k: v for k, v in data.items() if k != "prompt"}
        return {**out, "tokenized_prompt": tokens, "tokenized_prompt_mask": mask}


@dataclasses.dataclass(frozen=True)
class TokenizeFASTInputs:
    """`prompt`, `state` (+ `actions` when training) -> π₀-FAST's token sequence and its masks."""

    tokenizer: Any  # models.tokenizer.FASTTokenizer

    def __call__(self, data: DataDict) -> DataDict:
        prompt = _prompt_text(data)
        if "state" not in data:
            raise ValueError('"state" is required for π₀-FAST tokenization')
        tokens, mask, ar_mask, loss_mask = self.tokenizer.tokenize(
            prompt, np.asarray(data["state"]), data.get("actions")
        )
        out = {k: v for k, v in data.items() if k != "prompt"}
        return out | {
            "tokenized_prompt": tokens,
            "tokenized_prompt_mask": mask,
            "token_ar_mask": ar_mask,
            "token_loss_mask": loss_mask,
        }


@dataclasses.dataclass(frozen=True)
class ExtractFASTActions:
    """Generated token ids in `actions` -> the decoded action chunk [action_horizon, action_dim]."""

    tokenizer: Any  # models.tokenizer.FASTTokenizer
    action_horizon: int
    action_dim: int

    def __call__(self, data: DataDict) -> DataDict:
        if "actions" not in data:
            return data
        tokens = np.asarray(data["actions"]).astype(np.int32)
        actions = self.tokenizer.extract_actions(tokens, self.action_horizon, self.action_dim)
        return {**data, "actions": actions}


@dataclasses.dataclass(frozen=True)
class PadStatesAndActions:
    """Zero-pad `state` and `actions` to the model's action dimension."""

    model_action_dim: int

    def __call__(self, data: DataDict) -> DataDict:
        if "state" not in data:
            raise ValueError('"state" is missing from the sample')
        state = np.asarray(data["state"])
        if state.shape[-1] > self.model_action_dim:
            raise ValueError(f"state has {state.shape[-1]} dims, more than the model's {self.model_action_dim}")
        out = {**data, "state": pad_to_dim(state, self.model_action_dim)}
        if "actions" in data:
            actions = np.asarray(data["actions"])
            if actions.shape[-1] > self.model_action_dim:
                raise ValueError(
                    f"actions have {actions.shape[-1]} dims, more than the model's {self.model_action_dim}"
                )
            out["actions"] = pad_to_dim(actions, self.model_action_dim)
        return out
