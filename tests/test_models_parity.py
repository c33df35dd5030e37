"""Numerical parity with the real openpi code: every output in the fixtures' outputs.npz, reproduced through our API.

Fixtures: `../shared/fixtures/openpi_parity` (README there), or the set named by `OPENPI_PARITY_DIR`. Configs are
rebuilt from each set's config.json, so other seeds, shapes and expert widths run unchanged. Float32 on CPU,
tolerances from the README: exact for masks and token ids, 2e-5 for time-independent outputs, 2e-4 downstream
of the flow-matching time embedding.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import parity

from openpi_core.models import model, pi0

PI0_DIRS = parity.fixture_dirs(("pi0", "pi05"))
FAST_DIRS = parity.fixture_dirs(("pi0_fast",))
ALL_DIRS = PI0_DIRS + FAST_DIRS

pytestmark = pytest.mark.skipif(not ALL_DIRS, reason=f"no parity fixtures under {parity.parity_dir()}")


def _ids(dirs: list[Path]) -> list[str]:
    return [d.name for d in dirs]


@pytest.fixture(scope="module", params=ALL_DIRS, ids=_ids(ALL_DIRS))
def any_fixture(request: pytest.FixtureRequest) -> Path:
    return request.param


LAYOUTS = [(d, layout) for d in ALL_DIRS for layout in ("params", "params_train_layout") if (d / layout).is_dir()]


@pytest.mark.parametrize(("folder", "layout"), LAYOUTS, ids=[f"{d.name}-{layout}" for d, layout in LAYOUTS])
def test_restore_params_bitwise(folder: Path, layout: str) -> None:
    """Both checkpoint layouts (as released; training's with a trailing `value` level) give params.npz bit for bit."""
    restored = flax.traverse_util.flatten_dict(model.restore_params(folder / layout), sep="/")
    expected = dict(np.load(folder / "params.npz"))
    assert sorted(restored) == sorted(expected)
    for key, value in expected.items():
        assert restored[key].dtype == value.dtype, key
        np.testing.assert_array_equal(restored[key], value, err_msg=key)


def test_model_state_is_the_checkpoint(any_fixture: Path) -> None:
    """The model built from the checkpoint holds exactly its leaves: same names, shapes, values."""
    config = parity.load_config(any_fixture)
    loaded = config.load(model.restore_params(any_fixture / "params"))
    state = flax.traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(loaded, nnx.Param)), sep="/")
    expected = dict(np.load(any_fixture / "params.npz"))
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(state[key]), value, err_msg=key)
    # Random init has the same tree: names and shapes come from the architecture, not from the checkpoint.
    fresh = nnx.to_pure_dict(nnx.state(config.create(jax.random.key(1)), nnx.Param))
    fresh_shapes = {k: v.shape for k, v in flax.traverse_util.flatten_dict(fresh, sep="/").items()}
    assert fresh_shapes == {k: v.shape for k, v in expected.items()}


def _run(config: model.BaseModelConfig, folder: Path, fn: Any, *args: Any) -> dict[str, np.ndarray]:
    """Load the fixture's params and run `fn(model, *args)` under jit (as openpi's references were made)."""
    graphdef, state = nnx.split(config.load(model.restore_params(folder / "params")))

    @jax.jit
    def run(state: nnx.State, *args: Any) -> Any:
        return fn(nnx.merge(graphdef, state), *args)

    return jax.tree.map(np.asarray, run(state, *args))


# ---------------------------------------------------------------- π₀ / π₀.₅


@pytest.fixture(scope="module", params=PI0_DIRS, ids=_ids(PI0_DIRS))
def pi0_results(request: pytest.FixtureRequest) -> tuple[dict, dict, dict, dict]:
    folder = request.param
    inputs, outputs, info = parity.load_arrays(folder)
    config = parity.load_config(folder)
    obs = parity.observation(inputs, info)
    num_steps = int(info["sample_kwargs"]["num_steps"])

    def compute(m: pi0.Pi0, obs: model.Observation, inputs: dict) -> dict:
        loss_rng = jax.random.wrap_key_data(inputs["loss_rng_key_data"])
        _, noise_rng, time_rng = jax.random.split(loss_rng, 3)
        x_t, u_t = pi0.flow_matching_targets(inputs["actions"], inputs["loss_noise"], inputs["loss_time"])
        prefix_tokens, prefix_mask, prefix_ar_mask = m.embed_prefix(obs)
        suffix_tokens, suffix_mask, suffix_ar_mask, adarms_cond = m.embed_suffix(obs, x_t, inputs["loss_time"])
        v_t, suffix_out = m.forward_velocity(obs, x_t, inputs["loss_time"])
        kv_cache, cache_mask = m.prefill(obs)
        # Step-by-step restatement of the sampler from its public pieces.
        x, t, dt = inputs["sample_noise"], jnp.float32(1.0), jnp.float32(-1.0 / num_steps)
        xs, vs, ts = [x], [], []
        for _ in range(num_steps):
            v = m.denoise_velocity(obs, kv_cache, cache_mask, x, jnp.broadcast_to(t, x.shape[0]))
            xs.append(x := x + dt * v)
            vs.append(v)
            ts.append(t)
            t = t + dt
        out = {
            "prefix_tokens": prefix_tokens,
            "prefix_mask": prefix_mask,
            "prefix_ar_mask": prefix_ar_mask,
            "loss": m.compute_loss(loss_rng, obs, inputs["actions"]),
            "loss_explicit": m.compute_loss(
                loss_rng, obs, inputs["actions"], noise=inputs["loss_noise"], time=inputs["loss_time"]
            ),
            "loss_x_t": x_t,
            "loss_u_t": u_t,
            "loss_v_t": v_t,
            "loss_suffix_tokens": suffix_tokens,
            "loss_suffix_mask": suffix_mask,
            "loss_suffix_ar_mask": suffix_ar_mask,
            "loss_suffix_out": suffix_out,
            "sample_actions": m.sample_actions(
                jax.random.wrap_key_data(inputs["sample_rng_key_data"]),
                obs,
                num_steps=num_steps,
                noise=inputs["sample_noise"],
            ),
            "sample_prefix_kv_k": kv_cache[0],
            "sample_prefix_kv_v": kv_cache[1],
            "sample_x_t_steps": jnp.stack(xs),
            "sample_v_t_steps": jnp.stack(vs),
            "sample_times": jnp.stack(ts),
            # The random draws compute_loss makes must be openpi's.
            "draw_noise": jax.random.normal(noise_rng, inputs["actions"].shape),
            "draw_time": jax.random.beta(time_rng, 1.5, 1, inputs["actions"].shape[:-2]) * 0.999 + 0.001,
        }
        if adarms_cond is not None:
            out["loss_adarms_cond"] = adarms_cond
        return out

    results = _run(config, folder, compute, obs, inputs)
    return results, inputs, outputs, info


TIME_INDEPENDENT = ("prefix_tokens", "sample_prefix_kv_k", "sample_prefix_kv_v", "loss_x_t", "loss_u_t")


def test_pi0_outputs(pi0_results: tuple[dict, dict, dict, dict]) -> None:
    results, _inputs, outputs, info = pi0_results
    checked = []
    for name, ref in outputs.items():
        tol = parity.tolerance(info, time_dependent=name not in TIME_INDEPENDENT)
        parity.assert_close(name, results[name], ref, tol)
        checked.append(name)
    assert "sample_actions" in checked
    assert "loss" in checked


def test_pi0_rng_draws_match_openpi(pi0_results: tuple[dict, dict, dict, dict]) -> None:
    results, inputs, _, _ = pi0_results
    # Same keys and samplers; jax's erfinv may differ from openpi's jax 0.5.3 in the last bit.
    np.testing.assert_allclose(results["draw_noise"], inputs["loss_noise"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results["draw_time"], inputs["loss_time"], rtol=1e-6, atol=1e-6)


def test_pi0_time_sensitivity_is_real(pi0_results: tuple[dict, dict, dict, dict]) -> None:
    """Guard against a vacuous comparison: the reference outputs do depend on the inputs we feed."""
    _, _, outputs, _ = pi0_results
    assert np.abs(outputs["sample_actions"] - outputs["sample_x_t_steps"][0]).max() > 1e-2
    assert np.abs(outputs["loss"]).max() > 1e-3


# ---------------------------------------------------------------- π₀-FAST


@pytest.fixture(scope="module", params=FAST_DIRS, ids=_ids(FAST_DIRS))
def fast_results(request: pytest.FixtureRequest) -> tuple[dict, dict, dict, dict]:
    folder = request.param
    inputs, outputs, info = parity.load_arrays(folder)
    config = parity.load_config(folder)
    obs = parity.observation(inputs, info)
    train_obs = parity.observation(inputs, info, prefix="train/")
    steps = int(inputs["max_decoding_steps"])
    temperature = float(inputs["temperature"])
    text_len = inputs["tokenized_prompt"].shape[1]

    def compute(m: Any, obs: model.Observation, train_obs: model.Observation, inputs: dict) -> dict:
        tokens, mask, ar_mask = m.embed_inputs(obs)
        prefill = m.prefill(obs, max_decoding_steps=steps)
        logits = m.PaliGemma["llm"].decode(prefill.pre_logits)
        unaligned = jax.vmap(lambda x, shift: jnp.roll(x, shift, axis=0))(logits, prefill.shift)
        # Teacher-forced restatement of the decode loop with the reference tokens.
        cache, step_logits, last = prefill.kv_cache, [], prefill.last_logits
        for i in range(steps):
            step_logits.append(last[:, 0])
            token = inputs["ref_tokens"][:, i : i + 1].astype(jnp.int32)
            last, cache = m.decode_step(prefill, cache, token, i)
        return {
            "prefix_tokens": tokens,
            "prefix_mask": mask,
            "prefix_ar_mask": ar_mask,
            "prefix_logits": unaligned[:, -text_len:],
            "prefix_logits_last": prefill.last_logits[:, 0],
            "prefill_len": prefill.prefill_len,
            "sample_tokens": m.sample_actions(
                jax.random.wrap_key_data(inputs["sample_rng_key_data"]),
                obs,
                max_decoding_steps=steps,
                temperature=temperature,
            ),
            "decode_step_logits": jnp.stack(step_logits, axis=1),
            "loss": m.compute_loss(jax.random.wrap_key_data(inputs["loss_rng_key_data"]), train_obs, inputs["actions"]),
        }

    run_inputs = {**inputs, "ref_tokens": outputs["sample_tokens"]}
    results = _run(config, folder, compute, obs, train_obs, run_inputs)
    return results, inputs, outputs, info


def test_fast_outputs(fast_results: tuple[dict, dict, dict, dict]) -> None:
    results, inputs, outputs, info = fast_results
    tol = parity.tolerance(info, time_dependent=False)
    for name, ref in outputs.items():
        valid = inputs["tokenized_prompt_mask"] if name == "prefix_logits" else None
        parity.assert_close(name, results[name], ref, tol, valid=valid)


def test_fast_sample_tokens_exact(fast_results: tuple[dict, dict, dict, dict]) -> None:
    results, _, outputs, _ = fast_results
    assert results["sample_tokens"].dtype == np.float32
    np.testing.assert_array_equal(results["sample_tokens"], outputs["sample_tokens"])
    assert len(np.unique(outputs["sample_tokens"])) > 4  # a real sequence, not one repeated token


@pytest.mark.parametrize("folder", PI0_DIRS, ids=_ids(PI0_DIRS))
def test_bfloat16_inference_tracks_float32_reference(folder: Path) -> None:
    """The deployment path (bf16 weights and activations, as on a GPU) stays close to openpi's float32 output."""
    inputs, outputs, info = parity.load_arrays(folder)
    config = dataclasses.replace(parity.load_config(folder), dtype="bfloat16")
    loaded = config.load(model.restore_params(folder / "params", dtype=jnp.bfloat16))
    obs = parity.observation(inputs, info)
    prefix, actions = nnx.jit(
        lambda m: (m.embed_prefix(obs)[0], m.sample_actions(None, obs, noise=inputs["sample_noise"]))
    )(loaded)
    assert prefix.dtype == jnp.bfloat16
    error = np.abs(np.asarray(actions, np.float32) - outputs["sample_actions"])
    assert error.max() < 0.1
    assert error.mean() < 0.02
