"""What a policy server accepts: the keys, dtypes and shapes of one robot's observation.

Built from a registered robot's `make_example()` (`openpi_core.robots`): every array in the example must be present
(unless the adapter treats it as optional, like ALOHA's wrist and low cameras). Camera images follow the adapters'
`parse_image`: uint8 or float in [0, 1], HWC or CHW with 3 channels, any height and width (the policy resizes them).
Other arrays must match the example's shape exactly and be finite. A ``prompt`` must be a string when given. Errors
name the field, e.g. ``images.cam_high``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import numpy as np

from openpi_core.errors import InvalidObservationError
from openpi_core.robots import registry

__all__ = ["ArraySpec", "ObservationSpec", "example_for", "spec_for"]


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    path: tuple[str, ...]
    shape: tuple[int, ...]  # images: ignored (any HWC/CHW 3-channel image)
    image: bool
    optional: bool = False

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def describe(self) -> dict[str, Any]:
        if self.image:
            return {
                "kind": "image",
                "shape": "[h, w, 3] or [3, h, w]",
                "dtype": "uint8 or float in [0, 1]",
                "optional": self.optional,
            }
        return {"kind": "numeric", "shape": list(self.shape), "optional": self.optional}

    def check(self, value: Any) -> None:
        if not isinstance(value, np.ndarray):
            raise InvalidObservationError(self.name, f"expected a numpy array, got {type(value).__name__}")
        if self.image:
            if value.ndim != 3 or 3 not in (value.shape[0], value.shape[-1]) or value.size == 0:
                raise InvalidObservationError(self.name, f"expected an image [h, w, 3] or [3, h, w], got {value.shape}")
            if value.dtype != np.uint8 and value.dtype.kind != "f":
                raise InvalidObservationError(self.name, f"expected a uint8 or float image, got dtype {value.dtype}")
        else:
            if value.shape != self.shape:
                raise InvalidObservationError(self.name, f"expected shape {self.shape}, got {value.shape}")
            if value.dtype.kind not in "biuf":
                raise InvalidObservationError(self.name, f"expected numbers, got dtype {value.dtype}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise InvalidObservationError(self.name, "contains NaN or Inf")


def _arrays(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _arrays(value, (*prefix, key))
        else:
            yield (*prefix, key), value


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
    arrays: tuple[ArraySpec, ...]

    @classmethod
    def from_example(cls, example: Mapping[str, Any], *, optional: Collection[str] = ()) -> ObservationSpec:
        """`optional`: field names (``images.cam_low``) that may be left out."""
        specs = []
        for path, value in _arrays(example):
            if not isinstance(value, np.ndarray):
                continue
            image = value.dtype == np.uint8 and value.ndim == 3 and 3 in (value.shape[0], value.shape[-1])
            specs.append(ArraySpec(path, value.shape, image, optional=".".join(path) in optional))
        return cls(tuple(specs))

    def describe(self) -> dict[str, Any]:
        """JSON/msgpack-friendly form, sent to clients in the server metadata."""
        return {spec.name: spec.describe() for spec in self.arrays}

    def check(self, obs: Any) -> None:
        """Raise `InvalidObservationError` naming the first field that does not match."""
        if not isinstance(obs, Mapping):
            raise InvalidObservationError("<root>", f"expected a map of observation fields, got {type(obs).__name__}")
        for spec in self.arrays:
            node: Any = obs
            for depth, key in enumerate(spec.path):
                if not isinstance(node, Mapping) or key not in node:
                    if spec.optional and isinstance(node, Mapping):
                        break
                    raise InvalidObservationError(".".join(spec.path[: depth + 1]), "missing")
                node = node[key]
            else:
                spec.check(node)
        prompt = obs.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidObservationError("prompt", f"expected a string, got {type(prompt).__name__}")


def spec_for(robot: str) -> ObservationSpec:
    """The observation spec of a registered robot's adapter, with the fields it accepts missing."""
    spec = registry.get(robot)
    return ObservationSpec.from_example(spec.make_example(), optional=spec.optional_fields)


def example_for(robot: str) -> dict[str, Any]:
    """A random observation of a registered robot, in its adapter's layout."""
    return registry.get(robot).make_example()
