"""Read an openpi parity fixture set (layout: `../shared/fixtures/openpi_parity/README.md`) into our API.

The model config is rebuilt from `config.json` alone (LLM and SigLIP sizes registered as variants), so fixture sets
with other seeds, shapes and expert widths run through the same tests. `OPENPI_PARITY_DIR` points at another set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from openpi_core.models import gemma, model, pi0_config, pi0_fast, siglip

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "openpi_parity"
GEMMA_FIELDS = ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim")


def parity_dir() -> Path:
    return Path(os.environ.get("OPENPI_PARITY_DIR", DEFAULT_DIR))


def fixture_dirs(model_types: tuple[str, ...]) -> list[Path]:
    """Fixture folders whose config.json names one of `model_types` (pi0, pi05, pi0_fast)."""
    root = parity_dir()
    if not root.is_dir():
        return []
    found = []
    for config_path in sorted(root.glob("*/config.json")):
        if json.loads(config_path.read_text())["model_config"]["model_type"] in model_types:
            found.append(config_path.parent)
    return found


def _register_gemma(sizes: dict[str, Any]) -> str:
    config = gemma.Config(**{field: int(sizes[field]) for field in GEMMA_FIELDS})
    name = "parity_" + hashlib.sha1(repr(dataclasses.astuple(config)).encode()).hexdigest()[:10]
    gemma.register_variant(name, config, overwrite=True)
    return name


def _register_siglip(section: dict[str, Any]) -> str:
    kwargs = section["module_kwargs"]
    if kwargs.get("pool_type", "none") != "none" or kwargs.get("posemb", "learn") != "learn":
        raise ValueError(f"unsupported SigLIP options in fixture: {kwargs}")
    config = siglip.Config(
        width=kwargs["width"],
        depth=kwargs["depth"],
        mlp_dim=kwargs["mlp_dim"],
        num_heads=kwargs["num_heads"],
        patch_size=tuple(kwargs["patch_size"]),
    )
    name = "parity_" + hashlib.sha1(repr(config).encode()).hexdigest()[:10]
    siglip.register_variant(name, config, overwrite=True)
    return name


def load_config(folder: Path) -> model.BaseModelConfig:
    info = json.loads((folder / "config.json").read_text())
    mc = info["model_config"]
    vision = _register_siglip(info["siglip"])
    common = {
        "dtype": mc["dtype"],
        "action_dim": mc["action_dim"],
        "action_horizon": mc["action_horizon"],
        "max_token_len": mc["max_token_len"],
        "vision_variant": vision,
        "vocab_size": int(info["vocab_size"]),
    }
    if mc["model_type"] == "pi0_fast":
        return pi0_fast.Pi0FASTConfig(paligemma_variant=_register_gemma(info["llm"]["gemma_fast.Module"]), **common)
    llm, expert = info["llm"]["gemma.Module"]["configs"]
    return pi0_config.Pi0Config(
        paligemma_variant=_register_gemma(llm),
        action_expert_variant=_register_gemma(expert),
        pi05=mc["pi05"],
        discrete_state_input=mc["discrete_state_input"],
        **common,
    )


def load_arrays(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    inputs = dict(np.load(folder / "inputs.npz"))
    outputs = dict(np.load(folder / "outputs.npz"))
    return inputs, outputs, json.loads((folder / "config.json").read_text())


def observation(inputs: dict[str, np.ndarray], info: dict[str, Any], prefix: str = "") -> model.Observation:
    """The fixture's observation through `Observation.from_dict` (uint8 images -> [-1, 1]) as openpi built it."""
    keys = info["image_keys_in_order"]
    data = {
        "image": {key: inputs[f"image_u8/{key}"] for key in keys},
        "image_mask": {key: inputs[f"image_mask/{key}"] for key in keys},
        "state": inputs["state"],
        "tokenized_prompt": inputs[f"{prefix}tokenized_prompt"],
        "tokenized_prompt_mask": inputs[f"{prefix}tokenized_prompt_mask"],
    }
    for key in ("token_ar_mask", "token_loss_mask"):
        if f"{prefix}{key}" in inputs:
            data[key] = inputs[f"{prefix}{key}"]
    return model.Observation.from_dict(data)


def tolerance(info: dict[str, Any], time_dependent: bool) -> float:
    """atol = rtol recommended by the fixture README (time-independent or downstream of the time embedding)."""
    recommended = info["tolerances"]["recommended"]
    for key, value in recommended.items():
        if isinstance(value, dict) and ("time embedding" in key) == time_dependent:
            return float(value["atol"])
    raise KeyError("no recommended tolerances in config.json")


def assert_close(name: str, got: Any, ref: np.ndarray, tol: float, valid: np.ndarray | None = None) -> None:
    got = np.asarray(got)
    assert got.shape == ref.shape, f"{name}: shape {got.shape}, reference {ref.shape}"
    assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype}, reference {ref.dtype}"
    if ref.dtype == bool or np.issubdtype(ref.dtype, np.integer):
        np.testing.assert_array_equal(got, ref, err_msg=name)
        return
    if valid is not None:
        got, ref = got[valid], ref[valid]
    np.testing.assert_allclose(got, ref, atol=tol, rtol=tol, err_msg=name)
