"""Everything around the model equals openpi's: image resizing, robot adapters, prompts, the named configs.

Resizing is compared with openpi's published client itself (`openpi_client.image_tools`, run in `.venv-client`);
adapter expectations are computed here by hand from openpi's formulas; the config pins carry, in comments, the
openpi value each one comes from (openpi `src/openpi/training/config.py`).
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import textwrap
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
from PIL import Image

from openpi_core import transforms as tf
from openpi_core.adapters import aloha_policy, droid_policy, libero_policy
from openpi_core.images import parse_image, resize_with_pad
from openpi_core.models import model as _model
from openpi_core.models import tokenizer, tokenizer_sources
from openpi_core.robots.droid import make_droid_example
from openpi_core.robots.libero import make_libero_example
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs

REPO = Path(__file__).resolve().parent.parent
CLIENT_PYTHON = REPO / ".venv-client" / "bin" / "python"

# (height, width) -> 224 x 224, and a few other targets: down- and upscales, odd aspect ratios, identity.
SIZES = [(480, 640), (720, 1280), (640, 480), (224, 224), (100, 50), (37, 91), (10, 10), (300, 301), (224, 300)]
TARGETS = [(224, 224), (128, 160)]


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for h, w in SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
        noise = rng.integers(0, 256, (h, w, 3))
        out[f"{h}x{w}"] = ((smooth + noise) // 2).astype(np.uint8)
    out["batch"] = rng.integers(0, 256, (2, 3, 120, 160, 3), dtype=np.uint8)  # [*b, h, w, c]
    out["rgba"] = rng.integers(0, 256, (90, 120, 4), dtype=np.uint8)
    return out


@pytest.fixture(scope="module")
def openpi_resized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """openpi_client.image_tools.resize_with_pad of every image, for every target, run by the published client."""
    folder = tmp_path_factory.mktemp("resize")
    np.savez(folder / "in.npz", **_images())
    script = textwrap.dedent(
        f"""
        import numpy as np
        from openpi_client import image_tools
        images = np.load({str(folder / "in.npz")!r})
        out = {{}}
        for name in images.files:
            for h, w in {TARGETS!r}:
                out[f"{{name}}@{{h}}x{{w}}"] = image_tools.resize_with_pad(images[name], h, w)
        np.savez({str(folder / "out.npz")!r}, **out)
        """
    )
    subprocess.run([str(CLIENT_PYTHON), "-c", script], check=True, timeout=120)
    return dict(np.load(folder / "out.npz"))


def test_resize_is_openpi_clients_bit_for_bit(openpi_resized: dict[str, np.ndarray]) -> None:
    """Finding 1: OpenCV's INTER_LINEAR (no antialiasing) used to leave ~43% of a 480x640 frame's pixels off."""
    for name, image in _images().items():
        for h, w in TARGETS:
            expected = openpi_resized[f"{name}@{h}x{w}"]
            ours = resize_with_pad(image, h, w)
            assert ours.dtype == expected.dtype
            np.testing.assert_array_equal(ours, expected, err_msg=f"{name} -> {h}x{w}")
            assert tf.ResizeImages(h, w)({"image": {"cam": image}})["image"]["cam"].shape == expected.shape
    # The old resize, for the record: far from openpi's on a camera-sized frame.
    frame = _images()["480x640"]
    expected = openpi_resized["480x640@224x224"]
    old = np.zeros_like(expected)
    old[56 : 56 + 168] = cv2.resize(frame, (224, 168), interpolation=cv2.INTER_LINEAR)
    off = np.abs(old.astype(int) - expected.astype(int)) > 1
    assert off.mean() > 0.1


def test_float_and_chw_images_follow_pillow_and_openpis_parse() -> None:
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (90, 160, 3)).astype(np.float32)
    ours = resize_with_pad(image, 224, 224)
    ratio = max(160 / 224, 90 / 224)
    new_h, new_w = int(90 / ratio), int(160 / ratio)
    planes = [
        np.asarray(Image.fromarray(image[..., c], mode="F").resize((new_w, new_h), Image.Resampling.BILINEAR))
        for c in range(3)
    ]
    top = (224 - new_h) // 2
    np.testing.assert_array_equal(ours[top : top + new_h], np.stack(planes, -1))
    assert np.all(ours[:top] == 0)  # zero padding, as openpi's
    # CHW float in [0, 1] (LeRobot's video frames): openpi's `_parse_image` = (255 * x).astype(uint8), c h w -> h w c.
    chw = rng.uniform(0, 1, (3, 48, 64)).astype(np.float32)
    np.testing.assert_array_equal(parse_image(chw), np.transpose((255 * chw).astype(np.uint8), (1, 2, 0)))


# -- adapters, by hand from openpi's formulas ---------------------------------------------------------------------
def _gripper_to_angular(v: float) -> float:
    linear = v * (0.05800 - 0.01844) + 0.01844
    ratio = (0.022**2 + linear**2 - 0.036**2) / (2 * 0.022 * linear)
    return (math.asin(min(1.0, max(-1.0, ratio))) - 0.5476) / (1.6296 - 0.5476)


def _gripper_from_angular(v: float) -> float:
    return (v + 0.5476 + 0.6213) / (1.4910 + 0.6213)


@pytest.mark.parametrize("gripper", [0.0, 0.5, 1.0, 10.0])  # 10.0 takes the arcsin clip
def test_aloha_adapter_flips_joints_and_converts_grippers(gripper: float) -> None:
    state = np.arange(1, 15, dtype=np.float32) / 10
    state[[6, 13]] = gripper
    images = {"cam_high": np.zeros((3, 8, 8), np.uint8), "cam_left_wrist": np.ones((3, 8, 8), np.uint8)}
    out = aloha_policy.AlohaInputs(adapt_to_pi=True)({"state": state, "images": images, "prompt": "fold"})
    expected = state * np.array([1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1])
    expected[[6, 13]] = _gripper_to_angular(gripper)
    np.testing.assert_allclose(out["state"], expected, rtol=1e-6, atol=1e-6)
    assert set(out["image"]) == {"base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"}
    assert [bool(out["image_mask"][k]) for k in ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")] == [
        True,
        True,
        False,
    ]
    assert out["image"]["base_0_rgb"].shape == (8, 8, 3)  # CHW -> HWC
    actions = np.tile(np.linspace(-0.5, 0.5, 14, dtype=np.float32), (3, 1))
    back = aloha_policy.AlohaOutputs(adapt_to_pi=True)({"actions": actions})["actions"]
    expected_out = actions * np.array([1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1])
    expected_out[:, [6, 13]] = [
        _gripper_from_angular(float(actions[0, 6])),
        _gripper_from_angular(float(actions[0, 13])),
    ]
    np.testing.assert_allclose(back, expected_out, rtol=1e-6, atol=1e-6)
    # Training targets: the inverse of the output mapping, so a round trip is the identity.
    targets = aloha_policy.AlohaInputs()({"state": state, "images": images, "actions": back})["actions"]
    np.testing.assert_allclose(targets, actions, atol=1e-5)
    with pytest.raises(ValueError, match="cam_unknown"):
        aloha_policy.AlohaInputs()({"state": state, "images": {**images, "cam_unknown": images["cam_high"]}})


@pytest.mark.parametrize("model_type", list(_model.ModelType))
def test_droid_and_libero_layouts(model_type: _model.ModelType) -> None:
    fast = model_type == _model.ModelType.PI0_FAST
    obs = make_droid_example()
    out = droid_policy.DroidInputs(model_type)(obs)
    np.testing.assert_array_equal(
        out["state"], np.concatenate([obs["observation/joint_position"], obs["observation/gripper_position"]])
    )
    names = (
        ("base_0_rgb", "base_1_rgb", "wrist_0_rgb") if fast else ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    )
    assert tuple(out["image"]) == names
    assert [bool(out["image_mask"][n]) for n in names] == ([True, True, True] if fast else [True, True, False])
    wrist = out["image"]["wrist_0_rgb" if fast else "left_wrist_0_rgb"]
    np.testing.assert_array_equal(wrist, obs["observation/wrist_image_left"])
    assert droid_policy.DroidOutputs()({"actions": np.ones((10, 32))})["actions"].shape == (10, 8)
    obs = make_libero_example()
    out = libero_policy.LiberoInputs(model_type)(obs)
    assert bool(out["image_mask"]["right_wrist_0_rgb"]) is fast  # π₀-FAST does not mask the padding image
    np.testing.assert_array_equal(out["image"]["left_wrist_0_rgb"], obs["observation/wrist_image"])
    assert libero_policy.LiberoOutputs()({"actions": np.ones((10, 32))})["actions"].shape == (10, 7)


def test_prompts_as_bytes_and_numpy_strings_tokenize_as_text(tmp_path: Path) -> None:
    """Finding 3: a bytes prompt used to be tokenized as the text "b'close the door'"."""
    from helpers.tokenizers import make_paligemma_like_model  # noqa: PLC0415

    sp = make_paligemma_like_model(tmp_path / "sp.model", num_loc=0, num_seg=0)
    tokenize = tf.TokenizePrompt(tokenizer.PaligemmaTokenizer(48, model_path=sp))
    reference = tokenize({"prompt": "close the door"})["tokenized_prompt"]
    for prompt in (
        b"close the door",
        np.str_("close the door"),
        np.asarray("close the door"),
        np.asarray(b"close the door"),
    ):
        np.testing.assert_array_equal(tokenize({"prompt": prompt})["tokenized_prompt"], reference, err_msg=repr(prompt))
    assert (
        droid_policy.DroidInputs(_model.ModelType.PI05)({**make_droid_example(), "prompt": b"wipe"})["prompt"] == "wipe"
    )
    with pytest.raises(ValueError, match="a prompt is required"):
        tokenize({})
    with pytest.raises(ValueError, match="not UTF-8"):
        tokenize({"prompt": b"\xff\xfe"})


# -- the named configs against openpi's ----------------------------------------------------------------------------
BASE = "gs://openpi-assets/checkpoints"
LIBERO = "physical-intelligence/libero"
ALOHA_DELTA, LIBERO_DELTA = (6, -1, 6, -1), (6, -1)


class Pin(NamedTuple):
    """What openpi's config.py sets for a name (inference configs: openpi names no weight loader; ours load the
    matching base model so that they also fine-tune)."""

    kind: str
    action_dim: int
    horizon: int
    max_tokens: int
    discrete_state: bool
    delta_mask: tuple[int, ...] | None
    prompt: str | None
    prompt_from_task: bool
    asset_id: str
    weights: str
    lora: bool = False
    ema: float | None = 0.99
    batch: int = 32


PINS = {
    # pi0_aloha / pi05_aloha / towel / tupperware: LeRobotAlohaDataConfig(assets=AssetsConfig(asset_id="trossen")),
    # use_delta_joint_actions=True, reset_pose metadata
    "pi0_aloha": Pin("pi0", 32, 50, 48, False, ALOHA_DELTA, None, False, "trossen", "pi0_base"),
    "pi05_aloha": Pin("pi05", 32, 50, 200, True, ALOHA_DELTA, None, False, "trossen", "pi05_base"),
    "pi0_aloha_towel": Pin("pi0", 32, 50, 48, False, ALOHA_DELTA, "fold the towel", False, "trossen", "pi0_base"),
    "pi0_aloha_tupperware": Pin(
        "pi0", 32, 50, 48, False, ALOHA_DELTA, "open the tupperware and put the food on the plate", False, "trossen",
        "pi0_base",
    ),
    # pen_uncap: norm stats from the base checkpoint's trossen assets, 20k steps; the π₀.₅ one with batch 64
    "pi0_aloha_pen_uncap": Pin("pi0", 32, 50, 48, False, ALOHA_DELTA, "uncap the pen", False, "trossen", "pi0_base"),
    "pi05_aloha_pen_uncap": Pin(
        "pi05", 32, 50, 200, True, ALOHA_DELTA, "uncap the pen", False, "trossen", "pi05_base", batch=64
    ),
    # pi0_aloha_sim: use_delta_joint_actions=False, default_prompt="Transfer cube"
    "pi0_aloha_sim": Pin(
        "pi0", 32, 50, 48, False, None, "Transfer cube", False, "lerobot/aloha_sim_transfer_cube_human", "pi0_base"
    ),
    # DROID: velocity actions, no delta transform; prompt from the task; asset id "droid"
    "pi0_droid": Pin("pi0", 32, 10, 48, False, None, None, True, "droid", "pi0_base"),
    "pi0_fast_droid": Pin("pi0_fast", 8, 10, 250, False, None, None, True, "droid", "pi0_fast_base"),
    "pi05_droid": Pin("pi05", 32, 15, 200, True, None, None, True, "droid", "pi05_base"),
    "pi05_droid_finetune": Pin("pi05", 32, 16, 200, True, None, None, True, "droid", "pi05_droid"),
    # LIBERO: extra_delta_transform=True for the π₀ / π₀-FAST ones, False for pi05_libero (finding 2)
    "pi0_libero": Pin("pi0", 32, 50, 48, False, LIBERO_DELTA, None, True, LIBERO, "pi0_base"),
    "pi0_libero_low_mem_finetune": Pin(
        "pi0", 32, 50, 48, False, LIBERO_DELTA, None, True, LIBERO, "pi0_base", lora=True, ema=None
    ),
    "pi0_fast_libero": Pin("pi0_fast", 7, 10, 180, False, LIBERO_DELTA, None, True, LIBERO, "pi0_fast_base"),
    "pi0_fast_libero_low_mem_finetune": Pin(
        "pi0_fast", 7, 10, 180, False, LIBERO_DELTA, None, True, LIBERO, "pi0_fast_base", lora=True, ema=None
    ),
    # pi05_libero: Pi0Config(pi05=True, action_horizon=10, discrete_state_input=False), batch 256, ema 0.999
    "pi05_libero": Pin("pi05", 32, 10, 200, False, None, None, True, LIBERO, "pi05_base", ema=0.999, batch=256),
}  # fmt: skip


def test_every_robot_config_is_pinned() -> None:
    """Every openpi config this project ships (the built-in robots'; plugin robots' configs are their own)."""
    builtin = {"aloha", "droid", "libero"}
    names = [n for n in _configs.config_names() if _configs.get_config(n).data.robot_name() in builtin]
    assert sorted(PINS) == sorted(n for n in names if not n.startswith("debug"))


@pytest.mark.parametrize("name", sorted(PINS))
def test_config_matches_openpi(name: str, tmp_path: Path) -> None:
    kind, dim, horizon, tokens, discrete, mask, prompt, from_task, asset_id, weights, lora, ema, batch = PINS[name]
    config = _configs.get_config(name)
    model = config.model
    assert (model.model_type.value, model.action_dim, model.action_horizon, model.max_token_len) == (
        kind,
        dim,
        horizon,
        tokens,
    )
    assert bool(getattr(model, "discrete_state_input", False)) is discrete
    assert config.weight_loader.params_path == f"{BASE}/{weights}/params"
    assert (config.ema_decay, config.batch_size) == (ema, batch)
    assert ("lora" in model.paligemma_variant) is lora  # LoRA variants freeze the base (the model's freeze filter)
    # The pipeline, built offline (norm stats looked up in an empty local assets folder).
    factory = config.data
    local = _config.AssetsConfig(assets_dir=str(tmp_path), asset_id=factory.assets.asset_id)
    data = dataclasses.replace(factory, assets=local).create(tmp_path, model)
    assert data.asset_id == asset_id
    assert data.prompt_from_task is from_task
    assert data.use_quantile_norm is (kind != "pi0")  # openpi: quantiles for every model but π₀
    deltas = [t for t in data.data_transforms.inputs if isinstance(t, tf.DeltaActions)]
    assert [tuple(t.mask) for t in deltas] == ([tf.make_bool_mask(*mask)] if mask else [])
    injected = [t.prompt for t in data.model_transforms.inputs if isinstance(t, tf.InjectDefaultPrompt)]
    assert injected == [prompt]
    assert any(
        isinstance(t, tf.ResizeImages) and (t.height, t.width) == (224, 224) for t in data.model_transforms.inputs
    )
    if name in ("pi0_aloha", "pi05_aloha", "pi0_aloha_towel", "pi0_aloha_tupperware"):
        assert config.policy_metadata == {"reset_pose": [0, -1.5, 1.5, 0, 0, 0]}


# -- offline tokenizers ----------------------------------------------------------------------------------------------
def test_pipelines_build_offline_and_an_unreachable_tokenizer_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a model pipeline never fetches; tokenizing from a source that cannot be reached fails within
    seconds, in one line naming the file and the flag."""
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tmp_path))
    group = _config.ModelTransformFactory(paligemma_tokenizer="http://127.0.0.1:9/paligemma_tokenizer.model")(
        _configs.get_config("pi0_aloha").model
    )
    tokenize = next(t for t in group.inputs if isinstance(t, tf.TokenizePrompt))
    with pytest.raises(tokenizer_sources.TokenizerUnavailableError) as info:
        tokenize({"prompt": "fold"})
    message = str(info.value)
    assert "\n" not in message
    assert "http://127.0.0.1:9/paligemma_tokenizer.model" in message
    assert "--paligemma-tokenizer" in message
    monkeypatch.setenv(tokenizer_sources.PALIGEMMA_ENV, str(tmp_path / "nowhere.model"))
    with pytest.raises(tokenizer_sources.TokenizerUnavailableError, match=r"nowhere\.model"):
        tokenizer_sources.paligemma_file(tokenizer_sources.PALIGEMMA_URL)  # the default, replaced by the variable


def test_debug_configs_tokenize_offline_with_small_builtin_tokenizers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tmp_path))
    config = _configs.get_config("debug_aloha")
    assert config.tokenizer_sources == {"paligemma": tokenizer_sources.SMALL_PALIGEMMA}
    sp = tokenizer.load_sentencepiece(tokenizer_sources.SMALL_PALIGEMMA)
    assert sp.vocab_size() == 1024 == config.model.vocab_size
    fast = tokenizer.FASTTokenizer(
        fast_tokenizer=tokenizer_sources.SMALL_FAST, paligemma_model_path=tokenizer_sources.SMALL_PALIGEMMA
    )
    tokens, mask, _, _ = fast.tokenize("pick", np.zeros(8), np.zeros((10, 8)))
    assert mask.sum() > 5
    assert int(tokens.max()) < 1024
