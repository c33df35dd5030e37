"""Model-independent pieces: observations, configs, preprocessing and checkpoint restore.

The observation keys, the image conventions (float32 in [-1, 1], 224x224) and the orbax `params` layout are openpi's,
so official checkpoints and openpi clients work unchanged.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import logging
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from openpi_core.errors import InvalidObservationError
from openpi_core.models import image_tools

logger = logging.getLogger(__name__)

ArrayT = TypeVar("ArrayT", jax.Array, np.ndarray)
Actions = Any  # float32 [*batch, action_horizon, action_dim]
Params = dict[str, Any]

# The π₀/π₀.₅ camera names, in the order their tokens enter the prefix (also sorted order).
IMAGE_KEYS: tuple[str, ...] = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
IMAGE_RESOLUTION: tuple[int, int] = (224, 224)


class ModelType(enum.StrEnum):
    PI0 = "pi0"
    PI0_FAST = "pi0_fast"
    PI05 = "pi05"


@flax.struct.dataclass
class Observation(Generic[ArrayT]):
    """One (batched) model input. Field names follow openpi; `from_dict`/`to_dict` use openpi's dict keys."""

    images: dict[str, ArrayT]  # float32 [*b, h, w, 3] in [-1, 1]
    image_masks: dict[str, ArrayT]  # bool [*b]
    state: ArrayT  # float32 [*b, s]
    tokenized_prompt: ArrayT | None = None  # int32 [*b, l]
    tokenized_prompt_mask: ArrayT | None = None  # bool [*b, l]
    token_ar_mask: ArrayT | None = None  # int32 [*b, l] (π₀-FAST)
    token_loss_mask: ArrayT | None = None  # bool [*b, l] (π₀-FAST)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observation[ArrayT]:
        """Build from openpi's dict layout; uint8 images become float32 in [-1, 1] (`u8 / 255 * 2 - 1`)."""
        for key in ("image", "image_mask", "state"):
            if key not in data:
                raise InvalidObservationError(key, "missing")
        if ("tokenized_prompt" in data) != ("tokenized_prompt_mask" in data):
            raise InvalidObservationError("tokenized_prompt_mask", "tokenized_prompt and its mask must come together")
        images = {}
        for name, raw in data["image"].items():
            if raw.dtype == np.uint8:
                images[name] = raw.astype(np.float32) / 255.0 * 2.0 - 1.0
            elif jnp.issubdtype(raw.dtype, jnp.floating):
                images[name] = raw
            else:
                raise InvalidObservationError(f"image/{name}", f"dtype {raw.dtype} is neither uint8 nor float")
        return cls(
            images=images,
            image_masks=dict(data["image_mask"]),
            state=data["state"],
            tokenized_prompt=data.get("tokenized_prompt"),
            tokenized_prompt_mask=data.get("tokenized_prompt_mask"),
            token_ar_mask=data.get("token_ar_mask"),
            token_loss_mask=data.get("token_loss_mask"),
        )

    def to_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result["image"] = result.pop("images")
        result["image_mask"] = result.pop("image_masks")
        return result


def make_attn_mask(input_mask: jax.Array, mask_ar: jax.Array) -> jax.Array:
    """[B, N, N] mask: i attends to j iff both are valid and cumsum(ar)[j] <= cumsum(ar)[i] (openpi/big_vision)."""
    mask_ar = jnp.broadcast_to(mask_ar, input_mask.shape)
    cumsum = jnp.cumsum(mask_ar, axis=1)
    attn_mask = cumsum[:, None, :] <= cumsum[:, :, None]
    valid_mask = input_mask[:, None, :] * input_mask[:, :, None]
    return jnp.logical_and(attn_mask, valid_mask)


def preprocess_observation(
    rng: jax.Array | None,
    observation: Observation,
    *,
    train: bool = False,
    image_keys: Sequence[str] = IMAGE_KEYS,
    image_resolution: tuple[int, int] = IMAGE_RESOLUTION,
) -> Observation:
    """Resize (with padding) to the model resolution, augment at train time, and fill missing image masks."""
    missing = [key for key in image_keys if key not in observation.images]
    if missing:
        raise InvalidObservationError(
            f"image/{missing[0]}",
            f"required camera missing (have {sorted(observation.images)}, need {list(image_keys)})",
        )
    batch_shape = observation.state.shape[:-1]
    if train and rng is None:
        raise ValueError("preprocess_observation(train=True) needs an rng for augmentation")
    rngs = jax.random.split(rng, len(image_keys)) if train else [None] * len(image_keys)
    images = {}
    for key, key_rng in zip(image_keys, rngs, strict=True):
        image = observation.images[key]
        if tuple(image.shape[-3:-1]) != tuple(image_resolution):
            logger.info("Resizing image %s from %s to %s", key, image.shape[-3:-1], image_resolution)
            image = image_tools.resize_with_pad(image, *image_resolution)
        if train:
            image = image_tools.augment(key_rng, image, crop_and_rotate="wrist" not in key)
        images[key] = image
    masks = {
        key: jnp.asarray(observation.image_masks[key])
        if key in observation.image_masks
        else jnp.ones(batch_shape, bool)
        for key in images
    }
    return dataclasses.replace(observation, images=images, image_masks=masks)


@dataclasses.dataclass(frozen=True)
class BaseModelConfig(abc.ABC):
    """Shared model config. Subclasses are frozen dataclasses that know how to build their model."""

    action_dim: int
    action_horizon: int
    max_token_len: int

    @property
    @abc.abstractmethod
    def model_type(self) -> ModelType: ...

    @abc.abstractmethod
    def create(self, rng: jax.Array) -> BaseModel:
        """A new model with randomly initialised parameters."""

    @abc.abstractmethod
    def inputs_spec(self, *, batch_size: int = 1) -> tuple[Observation, Actions]:
        """`jax.ShapeDtypeStruct` trees of one observation batch and its action chunk."""

    def get_freeze_filter(self) -> nnx.filterlib.Filter:
        """Parameters that fine-tuning keeps fixed (LoRA variants freeze the base weights)."""
        return nnx.Nothing

    def abstract_model(self) -> BaseModel:
        """The model's structure (shapes and dtypes) without allocating any weights."""
        return nnx.eval_shape(lambda: self.create(jax.random.key(0)))

    def load(self, params: Params, *, remove_extra_params: bool = True) -> BaseModel:
        """Build the model from a pure-dict parameter tree (e.g. `restore_params`), checking every name and shape."""
        graphdef, state = nnx.split(self.abstract_model())
        expected = nnx.to_pure_dict(state)
        if remove_extra_params:
            params = intersect_trees(expected, params)
        check_params_match(expected, params)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
        return nnx.merge(graphdef, state)

    def fake_obs(self, batch_size: int = 1) -> Observation:
        observation_spec, _ = self.inputs_spec(batch_size=batch_size)
        return jax.tree.map(lambda x: jnp.ones(x.shape, x.dtype), observation_spec)

    def fake_act(self, batch_size: int = 1) -> Actions:
        _, action_spec = self.inputs_spec(batch_size=batch_size)
        return jax.tree.map(lambda x: jnp.ones(x.shape, x.dtype), action_spec)


class BaseModel(nnx.Module, abc.ABC):
    """A model maps an observation to an action chunk (`sample_actions`) and trains with `compute_loss`."""

    def __init__(self, action_dim: int, action_horizon: int, max_token_len: int) -> None:
        self.action_dim = action_dim
        self.action_horizon = action_horizon
        self.max_token_len = max_token_len

    @abc.abstractmethod
    def compute_loss(
        self, rng: jax.Array, observation: Observation, actions: Actions, *, train: bool = False
    ) -> jax.Array: ...

    @abc.abstractmethod
    def sample_actions(self, rng: jax.Array, observation: Observation, **kwargs: Any) -> Actions: ...


def intersect_trees(reference: Params, tree: Params) -> Params:
    """The leaves of `tree` whose paths also exist in `reference` (drops extra parameters of a checkpoint)."""
    flat_ref = flax.traverse_util.flatten_dict(reference)
    flat = flax.traverse_util.flatten_dict(tree)
    return flax.traverse_util.unflatten_dict({k: v for k, v in flat.items() if k in flat_ref})


def check_params_match(expected: Params, got: Params, *, max_listed: int = 8) -> None:
    """Raise a ValueError listing missing, unexpected and wrongly shaped parameters (names as '/'-paths)."""
    flat_expected = flax.traverse_util.flatten_dict(expected, sep="/")
    flat_got = flax.traverse_util.flatten_dict(got, sep="/")
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in flat_expected.items() if k not in flat_got]
    problems += [f"unexpected {k}" for k in flat_got if k not in flat_expected]
    problems += [
        f"{k}: shape {tuple(np.shape(v))}, expected {tuple(flat_expected[k].shape)}"
        for k, v in flat_got.items()
        if k in flat_expected and tuple(np.shape(v)) != tuple(flat_expected[k].shape)
    ]
    if problems:
        more = f" (and {len(problems) - max_listed} more)" if len(problems) > max_listed else ""
        raise ValueError(f"parameters do not match the model: {'; '.join(problems[:max_listed])}{more}")


def restore_params(
    params_path: str | pathlib.Path,
    *,
    restore_type: type = np.ndarray,
    dtype: Any = None,
    sharding: jax.sharding.Sharding | None = None,
) -> Params:
    """Read an openpi orbax `params` item (as released, or a training checkpoint's with a trailing `value` level).

    `params_path` is the item directory (e.g. `.../pi05_droid/params`), local or any fsspec URL orbax understands.
    Returns the pure-dict tree without the leading `params` key, as numpy arrays (or `jax.Array` with
    `restore_type=jax.Array`), optionally cast to `dtype`.
    """
    import orbax.checkpoint as ocp  # noqa: PLC0415 (heavy import, only needed here)

    if isinstance(params_path, pathlib.Path) or "://" not in str(params_path):
        params_path = pathlib.Path(params_path).expanduser().resolve()
        if not params_path.is_dir():
            raise FileNotFoundError(f"checkpoint params directory not found: {params_path}")
    if restore_type is jax.Array and sharding is None:
        mesh = jax.sharding.Mesh(jax.devices(), ("x",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    with ocp.PyTreeCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(params_path)
        tree = getattr(metadata, "item_metadata", metadata)
        if "params" not in tree:
            raise ValueError(f"{params_path} is not an openpi params item: top-level keys {list(tree)}, need 'params'")
        item = {"params": tree["params"]}
        restore_args = jax.tree.map(
            lambda _: ocp.ArrayRestoreArgs(sharding=sharding, restore_type=restore_type, dtype=dtype), item
        )
        params = checkpointer.restore(params_path, ocp.args.PyTreeRestore(item=item, restore_args=restore_args))
    flat = flax.traverse_util.flatten_dict(params["params"])
    if flat and all(path[-1] == "value" for path in flat):
        flat = {path[:-1]: value for path, value in flat.items()}
    return flax.traverse_util.unflatten_dict(flat)


def save_params(params_path: str | pathlib.Path, params: Params) -> None:
    """Write `params` as an openpi orbax `params` item (the layout `restore_params` and openpi read)."""
    import orbax.checkpoint as ocp  # noqa: PLC0415

    params_path = pathlib.Path(params_path).expanduser().resolve()
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(params_path, {"params": params})
