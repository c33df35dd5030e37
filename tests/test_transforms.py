"""Data transforms, norm stats and robot adapters (openpi's semantics)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.tokenizers import make_paligemma_like_model

from openpi_core import normalize
from openpi_core import transforms as tf
from openpi_core.adapters import aloha_policy, droid_policy, libero_policy
from openpi_core.models import model as _model
from openpi_core.models import tokenizer

RNG = np.random.default_rng(0)


def _stats(dim: int) -> normalize.NormStats:
    data = RNG.normal(3.0, 2.0, (500, dim))
    return normalize.NormStats(
        mean=data.mean(0), std=data.std(0), q01=np.quantile(data, 0.01, 0), q99=np.quantile(data, 0.99, 0)
    )


@pytest.mark.parametrize("use_quantiles", [False, True])
def test_normalize_round_trip_and_padding(use_quantiles: bool) -> None:
    stats = {"state": _stats(6), "actions": _stats(6)}
    data = {"state": RNG.normal(3, 2, 6).astype(np.float32), "actions": RNG.normal(3, 2, (4, 6)).astype(np.float32)}
    normed = tf.Normalize(stats, use_quantiles=use_quantiles)(data)
    if use_quantiles:
        expected = (data["state"] - stats["state"].q01) / (stats["state"].q99 - stats["state"].q01 + 1e-6) * 2 - 1
    else:
        expected = (data["state"] - stats["state"].mean) / (stats["state"].std + 1e-6)
    np.testing.assert_allclose(normed["state"], expected, rtol=1e-5)
    back = tf.Unnormalize(stats, use_quantiles=use_quantiles)(normed)
    np.testing.assert_allclose(back["actions"], data["actions"], rtol=1e-5, atol=1e-5)
    # Pad-aware: model outputs are padded to 32 dims; stats cover 6; the rest passes through.
    padded = {"actions": np.concatenate([normed["actions"], np.full((4, 26), 7.0, np.float32)], axis=-1)}
    out = tf.Unnormalize({"actions": stats["actions"]}, use_quantiles=use_quantiles)(padded)
    np.testing.assert_allclose(out["actions"][:, :6], data["actions"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["actions"][:, 6:], 7.0)


def test_normalize_errors() -> None:
    with pytest.raises(ValueError, match="q01/q99"):
        tf.Normalize({"state": normalize.NormStats(mean=np.zeros(2), std=np.ones(2))}, use_quantiles=True)
    with pytest.raises(ValueError, match=r"\['actions'\]"):
        tf.Normalize({"actions": _stats(2)}, strict=True)({"state": np.zeros(2)})
    with pytest.raises(ValueError, match="finite"):
        normalize.NormStats(mean=np.array([np.nan]), std=np.ones(1))


def test_norm_stats_file_is_openpis_format(tmp_path: Path) -> None:
    stats = {"state": _stats(3), "actions": _stats(2)}
    path = normalize.save(tmp_path / "trossen", stats)
    raw = json.loads(path.read_text())
    assert set(raw) == {"norm_stats"}
    assert set(raw["norm_stats"]["state"]) == {"mean", "std", "q01", "q99"}
    loaded = normalize.load(tmp_path / "trossen")
    np.testing.assert_allclose(loaded["actions"].q99, stats["actions"].q99, rtol=1e-6)
    # An official file without quantiles (z-score only) loads too.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "norm_stats.json").write_text('{"norm_stats": {"state": {"mean": [1, 2], "std": [3, 4]}}}')
    assert normalize.load(tmp_path / "old")["state"].q01 is None
    with pytest.raises(FileNotFoundError, match=r"norm_stats\.json"):
        normalize.load(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "norm_stats.json").write_text('{"stats": {}}')
    with pytest.raises(ValueError, match="norm_stats"):
        normalize.load(tmp_path / "bad")


def test_running_stats_match_numpy() -> None:
    # Batches whose range keeps growing exercise the histogram re-binning.
    batches = [RNG.normal(0, 1 + i, (4000, 3)) + i for i in range(6)]
    running = normalize.RunningStats()
    for batch in batches:
        running.update(batch)
    stats = running.get_statistics()
    data = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std, data.std(0), rtol=1e-5)
    # Within the sampling resolution of the data (24k samples) and the histogram's bin width.
    tolerance = 0.02 * data.std(0)
    np.testing.assert_array_less(np.abs(stats.q01 - np.quantile(data, 0.01, axis=0)), tolerance)
    np.testing.assert_array_less(np.abs(stats.q99 - np.quantile(data, 0.99, axis=0)), tolerance)
    with pytest.raises(ValueError, match="NaN"):
        running.update(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="dimension 2"):
        running.update(np.zeros((2, 2)))


def test_repack_group_order_and_errors() -> None:
    repack = tf.RepackTransform({"images": {"cam_high": "observation.images.top"}, "state": "observation.state"})
    data = {"observation.images.top": 1, "observation.state": 2, "extra": 3}
    assert repack(data) == {"images": {"cam_high": 1}, "state": 2}
    with pytest.raises(KeyError, match=r"observation\.state"):
        repack({"observation.images.top": 1})
    calls: list[str] = []

    def tag(name: str) -> tf.DataTransformFn:
        return lambda d: calls.append(name) or d

    group = tf.Group(inputs=[tag("a_in")], outputs=[tag("a_out")]).push(inputs=[tag("b_in")], outputs=[tag("b_out")])
    tf.compose(group.inputs)({})
    tf.compose(group.outputs)({})
    assert calls == ["a_in", "b_in", "b_out", "a_out"]


def test_delta_absolute_actions_round_trip() -> None:
    mask = tf.make_bool_mask(6, -1, 6, -1)
    assert mask == (True,) * 6 + (False,) + (True,) * 6 + (False,)
    data = {"state": RNG.normal(size=14), "actions": RNG.normal(size=(5, 14)).astype(np.float32)}
    delta = tf.DeltaActions(mask)(data)
    np.testing.assert_allclose(delta["actions"][:, 0], data["actions"][:, 0] - data["state"][0], rtol=1e-6)
    np.testing.assert_array_equal(delta["actions"][:, 6], data["actions"][:, 6])
    np.testing.assert_allclose(tf.AbsoluteActions(mask)(delta)["actions"], data["actions"], rtol=1e-5, atol=1e-6)


def test_pad_resize_prompt_transforms(tmp_path: Path) -> None:
    padded = tf.PadStatesAndActions(8)({"state": np.ones(3), "actions": np.ones((2, 3))})
    assert padded["state"].shape == (8,)
    assert padded["actions"].shape == (2, 8)
    with pytest.raises(ValueError, match="state has 9 dims"):
        tf.PadStatesAndActions(8)({"state": np.ones(9)})
    image = np.full((120, 160, 3), 200, np.uint8)
    resized = tf.ResizeImages(224, 224)({"image": {"cam": image}})["image"]["cam"]
    assert resized.shape == (224, 224, 3)
    assert resized.dtype == np.uint8
    assert resized[0, 0, 0] == 0
    assert resized[112, 112, 0] == 200
    assert tf.InjectDefaultPrompt("wave")({})["prompt"] == "wave"
    assert tf.InjectDefaultPrompt("wave")({"prompt": "stay"})["prompt"] == "stay"
    assert tf.PromptFromLeRobotTask()({"task": "fold"})["prompt"] == "fold"
    assert tf.PromptFromLeRobotTask({3: "stack"})({"task_index": np.array(3)})["prompt"] == "stack"
    with pytest.raises(ValueError, match="task_index 4"):
        tf.PromptFromLeRobotTask({3: "stack"})({"task_index": 4})
    sp = make_paligemma_like_model(tmp_path / "sp.model")
    tok = tf.TokenizePrompt(tokenizer.PaligemmaTokenizer(20, model_path=sp), discrete_state_input=True)
    out = tok({"prompt": np.asarray("fold"), "state": np.zeros(3)})
    assert "prompt" not in out
    assert out["tokenized_prompt"].shape == (20,)
    assert out["tokenized_prompt_mask"].any()
    with pytest.raises(ValueError, match="prompt is required"):
        tok({"state": np.zeros(3)})


def test_aloha_conventions() -> None:
    x = np.linspace(0.05, 0.95, 7)
    np.testing.assert_allclose(
        aloha_policy.gripper_from_angular(aloha_policy.gripper_from_angular_inv(x)), x, atol=1e-6
    )
    state = RNG.uniform(-1, 1, 14).astype(np.float32)
    state[[6, 13]] = 0.5
    actions = RNG.uniform(-1, 1, (10, 14)).astype(np.float32)
    image = RNG.integers(0, 255, (3, 48, 64), dtype=np.uint8)  # CHW, as LeRobot stores it
    data = {"state": state, "images": {"cam_high": image, "cam_left_wrist": image}, "actions": actions, "prompt": "x"}
    inputs = aloha_policy.AlohaInputs()(data)
    assert inputs["image"]["base_0_rgb"].shape == (48, 64, 3)
    assert inputs["image_mask"] == {"base_0_rgb": True, "left_wrist_0_rgb": True, "right_wrist_0_rgb": False}
    np.testing.assert_allclose(inputs["state"][1], -state[1])  # flipped joint
    np.testing.assert_allclose(inputs["state"][0], state[0])
    # Gripper 0.5 (linear) -> 0.0382 m -> arcsin(0.386) = 0.396 rad -> (0.396 - 0.5476) / 1.082 = -0.140.
    np.testing.assert_allclose(inputs["state"][6], -0.1400, atol=5e-4)
    # Training targets (inverse encoding) come back to the robot's values through the output transform.
    np.testing.assert_allclose(
        aloha_policy.AlohaOutputs()({"actions": inputs["actions"]})["actions"], actions, atol=1e-5
    )
    with pytest.raises(ValueError, match="14 values"):
        aloha_policy.AlohaInputs()({**data, "state": np.zeros(7)})
    with pytest.raises(ValueError, match="cam_top"):
        aloha_policy.AlohaInputs()({**data, "images": {"cam_high": image, "cam_top": image}})


def test_droid_and_libero_layouts() -> None:
    image = RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    droid = {
        "observation/exterior_image_1_left": image,
        "observation/wrist_image_left": image,
        "observation/joint_position": np.zeros(7),
        "observation/gripper_position": np.array([0.5]),
    }
    pi0 = droid_policy.DroidInputs(_model.ModelType.PI05)(droid)
    assert pi0["state"].shape == (8,)
    assert set(pi0["image"]) == set(_model.IMAGE_KEYS)
    assert not pi0["image_mask"]["right_wrist_0_rgb"]
    fast = droid_policy.DroidInputs(_model.ModelType.PI0_FAST)(droid)
    assert set(fast["image"]) == {"base_0_rgb", "base_1_rgb", "wrist_0_rgb"}
    assert all(fast["image_mask"].values())
    assert droid_policy.DroidOutputs()({"actions": np.zeros((10, 32))})["actions"].shape == (10, 8)
    float_chw = RNG.uniform(0, 1, (3, 32, 32)).astype(np.float32)
    libero = {"observation/image": float_chw, "observation/wrist_image": image, "observation/state": np.zeros(8)}
    out = libero_policy.LiberoInputs(_model.ModelType.PI0)(libero)
    assert out["image"]["base_0_rgb"].dtype == np.uint8
    assert out["image"]["base_0_rgb"].shape == (32, 32, 3)
    assert libero_policy.LiberoOutputs()({"actions": np.zeros((10, 32))})["actions"].shape == (10, 7)
    with pytest.raises(ValueError, match="observation/wrist_image"):
        libero_policy.LiberoInputs(_model.ModelType.PI0)({**libero, "observation/wrist_image": np.zeros((4, 4))})
