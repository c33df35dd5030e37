"""Model structure and API: full-size parameter counts, checkpoint round trip and errors, LoRA, preprocessing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from openpi_core.errors import InvalidObservationError
from openpi_core.models import gemma, image_tools, lora, model, pi0, pi0_config, pi0_fast, siglip

TINY = {"paligemma_variant": "dummy", "vision_variant": "mu/14", "vocab_size": 1024, "dtype": "float32"}


def _param_count(config: model.BaseModelConfig) -> int:
    state = nnx.state(config.abstract_model(), nnx.Param)
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (pi0_config.Pi0Config(), 3_238_048_528),
        (pi0_config.Pi0Config(pi05=True), 3_353_433_872),
        (pi0_fast.Pi0FASTConfig(), 2_923_335_408),
    ],
    ids=["pi0", "pi05", "pi0_fast"],
)
def test_full_size_parameter_counts(config: model.BaseModelConfig, expected: int) -> None:
    """openpi's measured counts, from the structure alone (jax.eval_shape: no weights allocated)."""
    assert _param_count(config) == expected


def test_full_size_names_and_shapes() -> None:
    state = nnx.to_pure_dict(nnx.state(pi0_config.Pi0Config(pi05=True).abstract_model(), nnx.Param))
    flat = {k: v.shape for k, v in flax.traverse_util.flatten_dict(state, sep="/").items()}
    assert flat["PaliGemma/llm/embedder/input_embedding"] == (257_152, 2048)
    assert flat["PaliGemma/llm/layers/attn/q_einsum/w"] == (18, 8, 2048, 256)
    assert flat["PaliGemma/llm/layers/attn/kv_einsum_1/w"] == (18, 2, 1, 1024, 256)
    assert flat["PaliGemma/llm/layers/mlp_1/gating_einsum"] == (18, 2, 1024, 4096)
    assert flat["PaliGemma/llm/layers/pre_attention_norm_1/Dense_0/kernel"] == (18, 1024, 3072)
    assert flat["PaliGemma/llm/final_norm_1/Dense_0/bias"] == (3072,)
    assert flat["PaliGemma/img/embedding/kernel"] == (14, 14, 3, 1152)
    assert flat["PaliGemma/img/pos_embedding"] == (1, 256, 1152)
    assert flat["PaliGemma/img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel"] == (27, 1152, 4304)
    assert flat["PaliGemma/img/head/kernel"] == (1152, 2048)
    assert flat["time_mlp_in/kernel"] == (1024, 1024)
    assert "state_proj/kernel" not in flat


def test_lora_variants_add_adapters_only() -> None:
    base = pi0_config.Pi0Config()
    adapted = pi0_config.Pi0Config(paligemma_variant="gemma_2b_lora", action_expert_variant="gemma_300m_lora")
    state = nnx.to_pure_dict(nnx.state(adapted.abstract_model(), nnx.Param))
    flat = {k: v.shape for k, v in flax.traverse_util.flatten_dict(state, sep="/").items()}
    assert flat["PaliGemma/llm/layers/attn/q_einsum/lora_a"] == (18, 8, 2048, 16)
    assert flat["PaliGemma/llm/layers/attn/q_einsum/lora_b"] == (18, 8, 16, 256)
    assert flat["PaliGemma/llm/layers/mlp_1/gating_einsum_lora_a"] == (18, 2, 1024, 32)
    assert flat["PaliGemma/llm/layers/mlp_1/linear_lora_b"] == (18, 32, 1024)
    lora_count = sum(int(np.prod(s)) for k, s in flat.items() if "lora" in k)
    assert _param_count(adapted) - _param_count(base) == lora_count > 0


def _tiny_pi0(**overrides: object) -> pi0_config.Pi0Config:
    return pi0_config.Pi0Config(**{**TINY, "action_expert_variant": "dummy", **overrides})


def test_lora_zero_b_equals_base_model() -> None:
    """With lora_b = 0 the adapter is a no-op; with it non-zero the output changes (so the adapter is wired in)."""
    gemma.register_variant(
        "test_dummy_lora",
        dataclasses.replace(
            gemma.get_config("dummy"), lora_configs={"attn": lora.LoRAConfig(4, 8.0), "ffn": lora.LoRAConfig(4, 8.0)}
        ),
        overwrite=True,
    )
    base_config = _tiny_pi0()
    lora_config = _tiny_pi0(paligemma_variant="test_dummy_lora")
    base = base_config.create(jax.random.key(0))
    base_params = nnx.to_pure_dict(nnx.state(base, nnx.Param))
    # The LoRA model's tree = the base tree + adapters; take the base weights and zero every lora_b.
    flat = flax.traverse_util.flatten_dict(
        nnx.to_pure_dict(nnx.state(lora_config.create(jax.random.key(0)), nnx.Param))
    )
    flat_base = flax.traverse_util.flatten_dict(base_params)
    merged = {
        k: flat_base[k] if k in flat_base else (jnp.zeros_like(v) if k[-1].endswith("lora_b") else v)
        for k, v in flat.items()
    }
    zero_b = lora_config.load(flax.traverse_util.unflatten_dict(merged))
    obs, actions = lora_config.fake_obs(2), lora_config.fake_act(2)
    noise = jax.random.normal(jax.random.key(3), actions.shape)
    sample = nnx.jit(lambda m: m.sample_actions(jax.random.key(0), obs, noise=noise, num_steps=2))
    reference = sample(base)
    np.testing.assert_allclose(sample(zero_b), reference, atol=1e-6)
    nonzero = {k: (v + 0.5 if k[-1].endswith("lora_b") else v) for k, v in merged.items()}
    changed = lora_config.load(flax.traverse_util.unflatten_dict(nonzero))
    assert np.abs(sample(changed) - reference).max() > 1e-3


def test_freeze_filter_for_lora() -> None:
    gemma.register_variant(
        "test_dummy_lora2",
        dataclasses.replace(gemma.get_config("dummy"), lora_configs={"attn": lora.LoRAConfig(2, 2.0)}),
        overwrite=True,
    )
    config = _tiny_pi0(paligemma_variant="test_dummy_lora2")
    abstract = config.abstract_model()
    frozen = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(abstract, config.get_freeze_filter()))}
    assert "PaliGemma/llm/layers/attn/q_einsum/w" in frozen
    assert "PaliGemma/llm/embedder/input_embedding" in frozen
    assert not any("lora" in p for p in frozen)
    assert not any("_1/" in p or p.endswith("_1") for p in frozen)  # the action expert (not LoRA) trains fully
    assert not any(p.startswith(("PaliGemma/img", "action_")) for p in frozen)
    assert _tiny_pi0().get_freeze_filter() == nnx.Nothing


def test_save_restore_round_trip_and_dtype(tmp_path: Path) -> None:
    config = pi0_fast.Pi0FASTConfig(**TINY)
    params = nnx.to_pure_dict(nnx.state(config.create(jax.random.key(0)), nnx.Param))
    model.save_params(tmp_path / "params", params)
    restored = model.restore_params(tmp_path / "params")
    for (path, a), (_, b) in zip(
        sorted(flax.traverse_util.flatten_dict(params).items()),
        sorted(flax.traverse_util.flatten_dict(restored).items()),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), b, err_msg=str(path))
    bf16 = model.restore_params(tmp_path / "params", dtype=jnp.bfloat16)
    assert {leaf.dtype for leaf in jax.tree.leaves(bf16)} == {jnp.dtype(jnp.bfloat16)}
    as_jax = model.restore_params(tmp_path / "params", restore_type=jax.Array)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(as_jax))


def test_load_errors_name_the_parameter(tmp_path: Path) -> None:
    config = pi0_fast.Pi0FASTConfig(**TINY)
    params = nnx.to_pure_dict(nnx.state(config.create(jax.random.key(0)), nnx.Param))
    bad = flax.traverse_util.flatten_dict(params)
    bad[("PaliGemma", "llm", "final_norm", "scale")] = np.zeros((65,), np.float32)
    with pytest.raises(ValueError, match=r"PaliGemma/llm/final_norm/scale: shape \(65,\), expected \(64,\)"):
        config.load(flax.traverse_util.unflatten_dict(bad))
    del bad[("PaliGemma", "img", "head", "kernel")]
    with pytest.raises(ValueError, match="missing PaliGemma/img/head/kernel"):
        config.load(flax.traverse_util.unflatten_dict(bad))
    with pytest.raises(FileNotFoundError, match="params directory not found"):
        model.restore_params(tmp_path / "nope")
    # Extra leaves (e.g. a LoRA checkpoint loaded into the base model) are dropped unless asked otherwise.
    extra = flax.traverse_util.flatten_dict(params) | {("PaliGemma", "extra"): np.zeros(3)}
    config.load(flax.traverse_util.unflatten_dict(extra))
    with pytest.raises(ValueError, match="unexpected PaliGemma/extra"):
        config.load(flax.traverse_util.unflatten_dict(extra), remove_extra_params=False)


def test_variant_registry() -> None:
    with pytest.raises(ValueError, match="unknown Gemma variant 'gemma_7b'"):
        gemma.get_config("gemma_7b")
    with pytest.raises(ValueError, match="unknown SigLIP variant"):
        siglip.get_config("XXL/14")
    assert siglip.get_config("S/14") == siglip.Config(384, 12, 1536, 6, (14, 14))
    assert siglip.get_config("So400m/14") == siglip.Config(1152, 27, 4304, 16, (14, 14))
    wide = gemma.Config(width=96, depth=2, mlp_dim=64, num_heads=4, num_kv_heads=1, head_dim=8)
    gemma.register_variant("test_wide_expert", wide, overwrite=True)
    with pytest.raises(ValueError, match="already registered"):
        gemma.register_variant("test_wide_expert", dataclasses.replace(wide, width=32))
    with pytest.raises(ValueError, match="must share depth"):
        _tiny_pi0(action_expert_variant="test_wide_expert").create(jax.random.key(0))
    with pytest.raises(ValueError, match="unknown Gemma variant"):
        pi0_config.Pi0Config(action_expert_variant="nope")


@pytest.mark.parametrize("pi05", [False, True], ids=["pi0", "pi05"])
def test_expert_of_another_width_runs(pi05: bool) -> None:
    """The action expert may be narrower or wider than the LLM (as long as heads and depth agree); it trains."""
    narrow = gemma.Config(width=32, depth=4, mlp_dim=48, num_heads=8, num_kv_heads=1, head_dim=16)
    gemma.register_variant("test_narrow_expert", narrow, overwrite=True)
    config = _tiny_pi0(action_expert_variant="test_narrow_expert", pi05=pi05, max_token_len=12, action_horizon=5)
    m = config.create(jax.random.key(0))
    obs, actions = config.fake_obs(1), config.fake_act(1)
    sampled = nnx.jit(lambda m: m.sample_actions(jax.random.key(1), obs, num_steps=2))(m)
    assert sampled.shape == (1, 5, 32)
    assert np.isfinite(np.asarray(sampled)).all()
    loss = nnx.grad(lambda m: m.compute_loss(jax.random.key(2), obs, actions, train=True).mean())
    flat = flax.traverse_util.flatten_dict(nnx.to_pure_dict(nnx.jit(loss)(m)), sep="/")
    assert all(np.isfinite(np.asarray(g)).all() for g in flat.values())
    # Gradients reach the expert and beyond; zero-initialised layers (SigLIP head, adaRMS gates) block the rest.
    reached = ["action_out_proj/kernel", "action_in_proj/kernel"]
    reached += (
        ["PaliGemma/llm/layers/pre_ffw_norm_1/Dense_0/kernel"]
        if pi05
        else ["PaliGemma/llm/layers/mlp_1/linear", "PaliGemma/img/head/kernel", "state_proj/kernel"]
    )
    for name in reached:
        assert np.abs(np.asarray(flat[name])).max() > 0, name


def test_pi0_defaults_follow_openpi() -> None:
    assert pi0_config.Pi0Config().max_token_len == 48
    assert pi0_config.Pi0Config(pi05=True).max_token_len == 200
    assert pi0_config.Pi0Config(pi05=True).discrete_state_input is True
    assert pi0_config.Pi0Config(pi05=True).model_type == model.ModelType.PI05
    assert isinstance(_tiny_pi0(pi05=True).create(jax.random.key(0)), pi0.Pi05)
    assert pi0_fast.Pi0FASTConfig().model_type == "pi0_fast"


def test_observation_from_dict() -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    obs = model.Observation.from_dict(
        {"image": {"cam": images}, "image_mask": {"cam": np.array([True, False])}, "state": np.zeros((2, 3))}
    )
    np.testing.assert_array_equal(obs.images["cam"], images.astype(np.float32) / 255.0 * 2.0 - 1.0)
    assert obs.images["cam"].dtype == np.float32
    np.testing.assert_array_equal(obs.to_dict()["image"]["cam"], obs.images["cam"])
    assert set(obs.to_dict()) >= {"image", "image_mask", "state", "tokenized_prompt"}
    with pytest.raises(InvalidObservationError, match="'state'"):
        model.Observation.from_dict({"image": {}, "image_mask": {}})
    with pytest.raises(InvalidObservationError, match="tokenized_prompt_mask"):
        model.Observation.from_dict(
            {"image": {}, "image_mask": {}, "state": np.zeros(3), "tokenized_prompt": np.zeros(3)}
        )
    with pytest.raises(InvalidObservationError, match="image/cam"):
        model.Observation.from_dict({"image": {"cam": images.astype(np.int32)}, "image_mask": {}, "state": np.zeros(3)})


def test_preprocess_resizes_fills_masks_and_augments() -> None:
    obs = model.Observation(
        images={key: jnp.zeros((2, 120, 160, 3)) for key in model.IMAGE_KEYS},
        image_masks={"base_0_rgb": jnp.array([True, False])},
        state=jnp.zeros((2, 8)),
    )
    out = model.preprocess_observation(None, obs)
    assert all(image.shape == (2, 224, 224, 3) for image in out.images.values())
    # 120x160 -> 168x224 plus 28 rows of padding (-1, black) above and below.
    np.testing.assert_array_equal(out.images["base_0_rgb"][:, :28], -1.0)
    np.testing.assert_array_equal(out.images["base_0_rgb"][:, 28:196], 0.0)
    np.testing.assert_array_equal(out.image_masks["base_0_rgb"], [True, False])
    np.testing.assert_array_equal(out.image_masks["left_wrist_0_rgb"], [True, True])
    with pytest.raises(InvalidObservationError, match="image/left_wrist_0_rgb"):
        model.preprocess_observation(None, dataclasses.replace(obs, images={"base_0_rgb": obs.images["base_0_rgb"]}))
    image = jax.random.uniform(jax.random.key(0), (2, 224, 224, 3), minval=-1, maxval=1)
    augmented = model.preprocess_observation(
        jax.random.key(1), dataclasses.replace(obs, images=dict.fromkeys(model.IMAGE_KEYS, image)), train=True
    )
    for key in model.IMAGE_KEYS:
        value = np.asarray(augmented.images[key])
        assert value.min() >= -1.0
        assert value.max() <= 1.0
        assert np.abs(value - np.asarray(image)).mean() > 1e-3  # changed
    assert not np.allclose(augmented.images["base_0_rgb"], augmented.images["left_wrist_0_rgb"])


def test_resize_with_pad_uint8_and_unbatched() -> None:
    image = np.full((10, 20, 3), 200, np.uint8)
    out = np.asarray(image_tools.resize_with_pad(jnp.asarray(image), 8, 8))
    assert out.shape == (8, 8, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:2], 0)
    np.testing.assert_array_equal(out[2:6], 200)
