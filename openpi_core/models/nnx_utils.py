"""Small NNX helpers: layer stacks (one parameter tree with a leading layer axis) and path filters."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx


def create_stack(factory: Callable[[nnx.Rngs], nnx.Module], depth: int, rngs: nnx.Rngs) -> nnx.Module:
    """`depth` independently initialised copies of a module, stored as one module whose leaves have a layer axis."""

    @nnx.split_rngs(splits=depth)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(layer_rngs: nnx.Rngs) -> nnx.Module:
        return factory(layer_rngs)

    return create(rngs)


def scan_stack(
    stack: nnx.Module,
    body: Callable[[nnx.Module, Any, Any], tuple[Any, Any]],
    carry: Any,
    xs: Any = None,
    *,
    remat: bool = True,
) -> tuple[Any, Any]:
    """Run `body(layer, carry, x) -> (carry, y)` over the layers of a stack with `jax.lax.scan`.

    `xs` (e.g. a KV cache) is scanned along its leading layer axis and the `y`s are stacked the same way. With
    `remat`, activations are recomputed in the backward pass (openpi's `nothing_saveable` policy).
    """
    graphdef, state = nnx.split(stack)

    def step(carry: Any, scanned: Any) -> tuple[Any, Any]:
        layer_state, x = scanned
        return body(nnx.merge(graphdef, layer_state), carry, x)

    if remat:
        step = jax.checkpoint(step, policy=jax.checkpoint_policies.nothing_saveable, prevent_cse=False)
    return jax.lax.scan(step, carry, (state, xs))


class PathRegex:
    """An NNX filter matching parameters whose '/'-joined path fully matches a regular expression."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __call__(self, path: tuple[Any, ...], _value: Any) -> bool:
        return self.pattern.fullmatch("/".join(str(part) for part in path)) is not None

    def __repr__(self) -> str:
        return f"PathRegex({self.pattern.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathRegex) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)
