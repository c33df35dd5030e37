"""Real-time chunking: the JAX guidance against LeRobot 0.4.4's RTCProcessor, the sampler, training-time RTC, the
policy's prefix mapping and the executor's `rtc` strategy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from lerobot.configs.types import RTCAttentionSchedule
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.policies.rtc.modeling_rtc import RTCProcessor

from openpi_core import normalize, transforms
from openpi_core.adapters.aloha_policy import AlohaOutputs
from openpi_core.models import pi0_config, rtc
from openpi_ros.executor import ChunkExecutor, ExecutorConfig, Strategy

TINY = {
    "paligemma_variant": "dummy",
    "action_expert_variant": "dummy",
    "vision_variant": "mu/14",
    "vocab_size": 1024,
    "dtype": "float32",
}
HORIZON, DIM = 10, 3


def _mlp_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (DIM, 16)).astype(np.float32), rng.normal(0, 0.5, (16, DIM)).astype(np.float32)


def _prefix(prev: np.ndarray, delay: int, horizon: int) -> rtc.ActionPrefix:
    padded = np.zeros((1, HORIZON, prev.shape[-1]), np.float32)
    padded[0, : len(prev)] = prev
    return rtc.ActionPrefix(jnp.asarray(padded), jnp.array([len(prev)]), jnp.array([delay]), jnp.array([horizon]))


@pytest.mark.parametrize("schedule", rtc.SCHEDULES)
@pytest.mark.parametrize(("delay", "horizon", "length"), [(0, 5, 10), (2, 6, 10), (4, 4, 10), (3, 12, 10), (2, 8, 6)])
def test_prefix_weights_match_lerobot(schedule: str, delay: int, horizon: int, length: int) -> None:
    processor = RTCProcessor(RTCConfig(prefix_attention_schedule=RTCAttentionSchedule(schedule.upper())))
    expected = processor.get_prefix_weights(delay, min(horizon, length), HORIZON).numpy()
    got = rtc.prefix_weights(_prefix(np.zeros((length, DIM)), delay, horizon), HORIZON, schedule)
    np.testing.assert_allclose(np.asarray(got)[0], expected, atol=1e-6)


@pytest.mark.parametrize("through_denoiser", [False, True])
@pytest.mark.parametrize("max_guidance_weight", [1.0, 5.0, 10.0])
@pytest.mark.parametrize(("delay", "horizon", "prev_rows"), [(1, 5, 10), (3, 8, 10), (2, 12, 7), (0, 4, 10)])
def test_guided_step_matches_lerobot(
    through_denoiser: bool, max_guidance_weight: float, delay: int, horizon: int, prev_rows: int
) -> None:
    """One guided step on the same MLP velocity field in JAX and torch. `through_denoiser=False` is LeRobot 0.4.4's
    `denoise_step` itself; True is the paper's vector-Jacobian product, built from LeRobot's prefix weights and
    guidance weight with torch autograd through the denoiser."""
    w1, w2 = _mlp_weights()
    rng = np.random.default_rng(delay * 100 + prev_rows)
    x = rng.normal(size=(1, HORIZON, DIM)).astype(np.float32)
    prev = rng.normal(size=(prev_rows, DIM)).astype(np.float32)
    processor = RTCProcessor(
        RTCConfig(
            max_guidance_weight=max_guidance_weight,
            execution_horizon=horizon,
            prefix_attention_schedule=RTCAttentionSchedule.EXP,
        )
    )
    t1, t2 = torch.from_numpy(w1), torch.from_numpy(w2)

    def torch_velocity(v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(v @ t1) @ t2

    guidance = rtc.Guidance(max_guidance_weight, "exp", through_denoiser)
    for time in (1.0, 0.8, 0.5, 0.2):
        got = rtc.guided_velocity(
            lambda v: jnp.tanh(v @ w1) @ w2,
            jnp.asarray(x),
            jnp.float32(time),
            target=_prefix(prev, delay, horizon).actions,
            weights=rtc.prefix_weights(_prefix(prev, delay, horizon), HORIZON, "exp"),
            guidance=guidance,
        )
        x_t = torch.from_numpy(x)
        if not through_denoiser:
            expected = processor.denoise_step(x_t, torch.from_numpy(prev[None]), delay, time, torch_velocity)
        else:
            weights = processor.get_prefix_weights(delay, min(horizon, prev_rows), HORIZON)[None, :, None]
            target = torch.zeros_like(x_t)
            target[:, :prev_rows] = torch.from_numpy(prev)
            x_req = x_t.clone().requires_grad_(True)
            v = torch_velocity(x_req)
            predicted = x_req - time * v
            (correction,) = torch.autograd.grad(predicted, x_req, ((target - predicted) * weights).detach())
            tau = torch.tensor(1.0 - time)
            c = torch.nan_to_num((1 - tau) / tau, posinf=max_guidance_weight)
            weight = torch.clamp(
                torch.nan_to_num(c * ((1 - tau) ** 2 + tau**2) / (1 - tau) ** 2, posinf=max_guidance_weight),
                max=max_guidance_weight,
            )
            expected = v.detach() - weight * correction
        np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=1e-5, atol=1e-5)


def _tiny(**overrides: object) -> pi0_config.Pi0Config:
    return pi0_config.Pi0Config(**{**TINY, "action_horizon": HORIZON, **overrides})


@pytest.mark.parametrize("pi05", [False, True])
def test_guided_sampler_follows_the_prefix_and_compiles_once(pi05: bool) -> None:
    config = _tiny(pi05=pi05)
    model = config.create(jax.random.key(0))
    obs, act = config.fake_obs(1), config.fake_act(1)
    noise = jax.random.normal(jax.random.key(1), act.shape)
    prev = np.asarray(jax.random.normal(jax.random.key(2), act.shape))[0]
    traces = []

    @nnx.jit
    def sample(m: nnx.Module, prefix: rtc.ActionPrefix | None) -> jax.Array:
        traces.append(prefix is None)
        return m.sample_actions(jax.random.key(0), obs, noise=noise, num_steps=4, prefix=prefix)

    plain = np.asarray(sample(model, None))[0]
    for delay in (2, 3, 5):
        guided = np.asarray(sample(model, _prefix(prev, delay, 8)))[0]
        assert np.abs(guided[:delay] - prev[:delay]).max() < 0.5 * np.abs(plain[:delay] - prev[:delay]).max()
    assert traces == [True, False]  # one compilation serves every delay
    unguided = np.asarray(sample(model, _prefix(prev[:0], 0, 0)))[0]  # a prefix of no rows changes nothing
    np.testing.assert_allclose(unguided, plain, atol=1e-5)


def test_training_time_rtc_loss_ignores_prefix_and_sampler_keeps_it() -> None:
    config = _tiny(pi05=True, training_rtc_max_delay=4)
    model = config.create(jax.random.key(0))
    obs, act = config.fake_obs(2), jax.random.normal(jax.random.key(3), (2, HORIZON, config.action_dim))
    delay = jnp.array([3, 0])
    loss = np.asarray(model.compute_loss(jax.random.key(0), obs, act, delay=delay))
    assert np.all(loss[0, :3] == 0)
    assert np.all(loss[0, 3:] > 0)
    assert np.all(loss[1] > 0)
    prev = np.asarray(jax.random.normal(jax.random.key(4), (HORIZON, config.action_dim)))
    prefix = rtc.ActionPrefix(
        jnp.asarray(np.stack([prev, prev])), jnp.array([10, 10]), jnp.array([3, 0]), jnp.array([8, 8])
    )
    out = np.asarray(
        nnx.jit(lambda m: m.sample_actions(jax.random.key(0), config.fake_obs(2), prefix=prefix, num_steps=3))(model)
    )
    np.testing.assert_array_equal(out[0, :3], prev[:3])
    assert np.abs(out[1, 0] - prev[0]).max() > 1e-3


def test_prefix_maps_back_through_the_output_transforms() -> None:
    """Robot actions -> model space (inverse) -> output transforms gives the robot actions back."""
    stats = {
        "state": normalize.NormStats(mean=np.full(14, 0.3), std=np.full(14, 2.0)),
        "actions": normalize.NormStats(mean=np.linspace(-1, 1, 14), std=np.full(14, 0.5)),
    }
    outputs = [
        transforms.Unnormalize(stats),
        transforms.AbsoluteActions(transforms.make_bool_mask(6, -1, 6, -1)),
        AlohaOutputs(),
    ]
    rng = np.random.default_rng(0)
    model_side = {"state": rng.normal(size=32).astype(np.float32), "actions": np.zeros((HORIZON, 32), np.float32)}
    robot = rng.uniform(0.1, 0.9, (6, 14)).astype(np.float32)
    model_actions = transforms.invert_actions(outputs, model_side, robot)
    assert model_actions.shape == (6, 32)
    again = transforms.compose(outputs)({"state": model_side["state"], "actions": model_actions})["actions"]
    np.testing.assert_allclose(again, robot, atol=1e-5)
    with pytest.raises(ValueError, match="InjectDefaultPrompt has no invert_actions"):
        transforms.invert_actions([transforms.InjectDefaultPrompt(None)], model_side, robot)


def test_rtc_strategy_switches_at_the_next_row_boundary() -> None:
    executor = ChunkExecutor(ExecutorConfig(joint_names=("a",), strategy=Strategy.RTC, estop_grace=0.0))
    ns, period = 1_000_000_000, 0.1
    executor.start(0)
    executor.update_measured(["a"], [0.0], 0)
    executor.add_chunk(
        np.zeros((20, 1)), stamp_ns=0, control_period=period, joint_names=["a"], now_ros_ns=0, now_mono_ns=0
    )
    arrival = ns // 4 + 10_000_000  # 0.26 s: between rows 2 and 3 of the new chunk (stamped 0.05 s)
    executor.add_chunk(
        np.ones((20, 1)),
        stamp_ns=ns // 20,
        control_period=period,
        joint_names=["a"],
        now_ros_ns=arrival,
        now_mono_ns=arrival,
    )
    assert executor._target(arrival, arrival)[0] == 0.0  # the previous chunk until the boundary (0.35 s)
    assert executor._target(ns * 35 // 100, arrival)[0] == 1.0


def test_policy_takes_a_prefix_in_robot_units_and_refuses_bad_ones(tmp_path) -> None:
    from helpers.policies import HORIZON as LIBERO_HORIZON  # noqa: PLC0415
    from helpers.policies import libero_observation, make_tiny_libero_checkpoint  # noqa: PLC0415

    from openpi_core.errors import InvalidObservationError  # noqa: PLC0415
    from openpi_core.policies.policy_config import create_trained_policy  # noqa: PLC0415

    config, checkpoint = make_tiny_libero_checkpoint(tmp_path)
    policy = create_trained_policy(config, checkpoint, sample_kwargs={"num_steps": 2})
    assert policy.metadata["rtc"] == "guidance"
    obs = libero_observation(0)
    plain = policy.infer(dict(obs))["actions"]
    prefix = plain[:4] + 0.0
    request = {**obs, "rtc_prefix_actions": prefix, "rtc_inference_delay": 2, "rtc_execution_horizon": 4}
    out = policy.infer(request)
    assert "rtc_prefix_actions" in request  # the caller's observation is left as it was
    assert out["actions"].shape == (LIBERO_HORIZON, 7)
    assert np.all(np.isfinite(out["actions"]))
    for bad, field in (
        ({"rtc_prefix_actions": prefix[:, :6]}, "rtc_prefix_actions"),
        ({"rtc_prefix_actions": np.full((2, 7), np.nan)}, "rtc_prefix_actions"),
        ({"rtc_inference_delay": 1}, "rtc_prefix_actions"),
        ({"rtc_prefix_actions": prefix, "rtc_inference_delay": -1}, "rtc_inference_delay"),
        ({"rtc_prefix_actions": prefix, "rtc_execution_horizon": 2.5}, "rtc_execution_horizon"),
    ):
        with pytest.raises(InvalidObservationError, match=field):
            policy.infer({**obs, **bad})
