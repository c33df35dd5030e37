"""`Policy` and `create_trained_policy` on a checkpoint folder written here (params + norm stats)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from helpers.policies import HORIZON, libero_observation, make_tiny_libero_checkpoint
from helpers.tokenizers import make_paligemma_like_model

from openpi_core import normalize
from openpi_core.models import model as _model
from openpi_core.policies import PolicyClient
from openpi_core.policies.policy_config import create_trained_policy
from openpi_core.robots.aloha import make_aloha_example
from openpi_core.robots.droid import make_droid_example
from openpi_core.robots.libero import make_libero_example
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[_config.TrainConfig, Path]:
    return make_tiny_libero_checkpoint(tmp_path_factory.mktemp("policy"))


_observation = libero_observation


def test_trained_policy_end_to_end(setup: tuple[_config.TrainConfig, Path]) -> None:
    config, checkpoint = setup
    policy = create_trained_policy(config, checkpoint, sample_kwargs={"num_steps": 2})
    assert isinstance(policy, PolicyClient)
    assert policy.metadata["action_horizon"] == HORIZON
    obs = _observation(0)
    out = policy.infer(obs)
    assert out["actions"].shape == (HORIZON, 7)
    # Unnormalize (mean 2) then AbsoluteActions (+ raw state on the 6 joint dims) ran, in that order.
    expected = np.broadcast_to(2.0 + obs["observation/state"][:6], (HORIZON, 6))
    np.testing.assert_allclose(out["actions"][:, :6], expected, atol=1e-4)
    np.testing.assert_allclose(out["actions"][:, 6], 2.0, atol=1e-4)
    assert out["policy_timing"]["infer_ms"] > 0
    assert np.array_equal(obs["observation/state"], _observation(0)["observation/state"])  # input untouched


def test_rng_reset_and_batches(setup: tuple[_config.TrainConfig, Path]) -> None:
    config, checkpoint = setup
    stats = {
        "state": normalize.NormStats(mean=np.zeros(8), std=np.ones(8)),
        "actions": normalize.NormStats(mean=np.zeros(7), std=np.ones(7)),
    }
    policy = create_trained_policy(config, checkpoint, sample_kwargs={"num_steps": 2}, norm_stats=stats)
    obs = _observation(1)
    first, second = policy.infer(obs)["actions"], policy.infer(obs)["actions"]
    assert not np.allclose(first, second)  # fresh noise per call
    policy.reset()
    np.testing.assert_array_equal(policy.infer(obs)["actions"], first)
    key = jax.random.key(7)
    np.testing.assert_array_equal(policy.infer(obs, rng=key)["actions"], policy.infer(obs, rng=key)["actions"])
    batch = {k: np.stack([v, _observation(2)[k]]) if k != "prompt" else v for k, v in obs.items()}
    assert policy.infer(batch, batched=True)["actions"].shape == (2, HORIZON, 7)
    with pytest.raises(ValueError, match="disagree on the batch size"):
        policy.infer({**batch, "observation/state": np.zeros((3, 8))}, batched=True)


def test_checkpoint_errors(setup: tuple[_config.TrainConfig, Path], tmp_path: Path) -> None:
    config, checkpoint = setup
    with pytest.raises(FileNotFoundError, match="no params/"):
        create_trained_policy(config, tmp_path)
    (tmp_path / "params").symlink_to(checkpoint / "params")
    with pytest.raises(FileNotFoundError, match=r"norm_stats\.json"):
        create_trained_policy(config, tmp_path)


@pytest.mark.parametrize(
    ("name", "example", "action_dim"),
    [
        ("pi0_aloha", make_aloha_example, 14),
        ("pi05_droid", make_droid_example, 8),
        ("pi05_libero", make_libero_example, 7),
    ],
)
def test_robot_examples_run_end_to_end(name: str, example: object, action_dim: int, tmp_path: Path) -> None:
    """Each robot adapter's example goes through its config's pipeline and a tiny model of the same family."""
    sp = make_paligemma_like_model(tmp_path / "sp.model", num_loc=0, num_seg=0)
    config = _configs.get_config(name)
    tiny = {"paligemma_variant": "dummy", "action_expert_variant": "dummy", "vision_variant": "mu/14"}
    model = dataclasses.replace(config.model, vocab_size=1024, dtype="float32", action_horizon=HORIZON, **tiny)
    factory = _config.ModelTransformFactory(paligemma_tokenizer=str(sp))
    config = dataclasses.replace(config, model=model, data=dataclasses.replace(config.data, model_transforms=factory))
    _model.save_params(
        tmp_path / "ckpt" / "params", nnx.to_pure_dict(nnx.state(model.create(jax.random.key(0)), nnx.Param))
    )
    dims = {"state": 14 if "aloha" in name else 8, "actions": action_dim}
    stats = {
        k: normalize.NormStats(mean=np.zeros(d), std=np.ones(d), q01=-np.ones(d), q99=np.ones(d))
        for k, d in dims.items()
    }
    policy = create_trained_policy(config, tmp_path / "ckpt", norm_stats=stats, sample_kwargs={"num_steps": 2})
    actions = policy.infer(example())["actions"]
    assert actions.shape == (HORIZON, action_dim)
    assert np.isfinite(actions).all()
