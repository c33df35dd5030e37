"""Training: configs, deterministic data, LoRA freezing, kill + resume, FSDP on a 4-device CPU mesh, LeRobot v3 data."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import flax.traverse_util
import jax
import numpy as np
import pytest
from flax import nnx
from helpers.tokenizers import make_paligemma_like_model

from openpi_core import normalize
from openpi_core import transforms as tf
from openpi_core.models import gemma, lora
from openpi_core.models import model as _model
from openpi_core.robots import registry
from openpi_core.training import config as _config
from openpi_core.training import configs as _configs
from openpi_core.training import data_loader, sharding, trainer, weight_loaders
from openpi_core.training.configs import libero

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(REPO / "training" / "train.py")]


def _debug(tmp_path: Path, **overrides: object) -> _config.TrainConfig:
    base = _configs.get_config("debug")
    return dataclasses.replace(
        base, checkpoint_base_dir=str(tmp_path / "ckpt"), assets_base_dir=str(tmp_path / "assets"), **overrides
    )


def test_registry_names_suggestions_and_validation() -> None:
    names = set(_configs.config_names())
    expected = {"debug", "pi0_aloha", "pi0_aloha_sim", "pi05_aloha", "pi05_droid", "pi0_fast_droid", "pi0_libero"}
    assert expected | {"pi0_fast_libero", "pi05_libero", "pi0_libero_low_mem_finetune"} <= names
    with pytest.raises(ValueError, match="Did you mean 'pi05_libero'"):
        _configs.get_config("pi05_lbero")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        dataclasses.replace(_configs.get_config("debug"), batch_size=0)
    with pytest.raises(ValueError, match="resume and overwrite"):
        dataclasses.replace(_configs.get_config("debug"), resume=True, overwrite=True)
    with pytest.raises(ValueError, match="exp_name"):
        dataclasses.replace(_configs.get_config("debug"), exp_name="a/b")
    config = _configs.cli(["debug", "--batch-size", "4", "--num-train-steps", "3", "--exp-name", "cli", "--resume"])
    assert (config.name, config.batch_size, config.num_train_steps, config.exp_name, config.resume) == (
        "debug",
        4,
        3,
        "cli",
        True,
    )
    lora_config = _configs.get_config("pi0_libero_low_mem_finetune")
    assert lora_config.effective_freeze_filter != _configs.get_config("pi0_libero").effective_freeze_filter


def test_batches_depend_only_on_the_step(tmp_path: Path) -> None:
    config = _debug(tmp_path)
    dataset = data_loader.create_dataset(config, config.data.create(config.assets_dirs, config.model))
    mesh = sharding.make_mesh(1)

    def batches(start: int, count: int) -> list[np.ndarray]:
        loader = data_loader.DataLoader(dataset, batch_size=4, mesh=mesh, seed=3, start_step=start)
        it = iter(loader)
        return [np.asarray(next(it)[1]) for _ in range(count)]

    from_zero = batches(0, 300)  # crosses an epoch boundary (1024 samples / 4)
    resumed = batches(255, 45)
    for a, b in zip(from_zero[255:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(from_zero[0], from_zero[256])  # a new epoch has a new order


def test_lora_trains_only_adapters(tmp_path: Path) -> None:
    adapter = lora.LoRAConfig(rank=2, alpha=2.0)
    gemma.register_variant(
        "test_train_lora",
        dataclasses.replace(gemma.get_config("dummy"), lora_configs={"attn": adapter, "ffn": adapter}),
        overwrite=True,
    )
    config = _debug(
        tmp_path, model=dataclasses.replace(_configs.get_config("debug").model, paligemma_variant="test_train_lora")
    )
    mesh = sharding.make_mesh(1)
    train = trainer.Trainer(config, mesh)
    state = train.init(jax.random.key(0), {})
    before = flax.traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
    dataset = data_loader.create_dataset(config, config.data.create(config.assets_dirs, config.model))
    batches = iter(data_loader.DataLoader(dataset, batch_size=2, mesh=mesh, seed=0))
    step = train.jit_train_step()
    for _ in range(2):
        state, info = step(jax.random.key(1), state, next(batches))
        assert np.isfinite(float(info["loss"]))
    after = flax.traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
    frozen = [k for k in before if k.startswith("PaliGemma/llm/") and "lora" not in k and "_1" not in k]
    assert frozen, "the LLM base weights should be frozen"
    for key in frozen:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    changed = [k for k in before if "lora" in k and not np.array_equal(after[k], before[k])]
    assert len(changed) == len([k for k in before if "lora" in k])
    assert not np.array_equal(after["action_out_proj/kernel"], before["action_out_proj/kernel"])


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}): {proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_state(tmp_path: Path) -> None:
    """SIGKILL after the step-2 checkpoint, then --resume: final weights equal an uninterrupted run's, bit for bit."""
    reference = trainer.train(_debug(tmp_path / "ref", num_train_steps=6, save_interval=2))
    args = ["debug", "--exp-name", "killed", "--num-train-steps", "6", "--save-interval", "2"]
    args += ["--checkpoint-base-dir", str(tmp_path / "ckpt"), "--assets-base-dir", str(tmp_path / "assets")]
    run_dir = tmp_path / "ckpt" / "debug" / "killed"
    proc = subprocess.Popen([*TRAIN, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(run_dir / "2" / "commit_success.txt", proc, timeout=180)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name) for p in run_dir.iterdir() if p.name.isdigit())
    assert killed_at < 6, "the run finished before it could be killed"

    # Without a flag, an existing run is refused rather than overwritten (train.py turns this into exit code 2).
    with pytest.raises(FileExistsError, match="pass --resume or --overwrite"):
        trainer.train(_debug(tmp_path, exp_name="killed", num_train_steps=6, save_interval=2))

    resumed = subprocess.run([*TRAIN, *args, "--resume"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed {run_dir} at step {killed_at}" in resumed.stderr
    final = _model.restore_params(run_dir / "6" / "params")
    expected = flax.traverse_util.flatten_dict(jax.device_get(reference.ema_params), sep="/")
    for key, value in flax.traverse_util.flatten_dict(final, sep="/").items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def _losses(log: str) -> list[float]:
    return [float(m) for m in re.findall(r"step \d+: .*?\bloss=([-0-9.e+]+)", log)]


@pytest.mark.slow
def test_fsdp_on_four_cpu_devices(tmp_path: Path) -> None:
    """A 2 (data) x 2 (fsdp) mesh shards the parameters and computes the same losses as one device."""
    args = ["debug", "--exp-name", "fsdp", "--num-train-steps", "2", "--batch-size", "4", "--fsdp-devices", "2"]
    args += ["--fsdp-min-param-mb", "0", "--checkpoint-base-dir", str(tmp_path / "ckpt")]
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    sharded = re.findall(r"fsdp: .* sharded on axis", run.stderr)
    assert len(sharded) > 10, "expected parameters sharded over the fsdp axis"
    single = trainer.train(_debug(tmp_path, exp_name="single", num_train_steps=2, batch_size=4, log_interval=1))
    fsdp_params = _model.restore_params(tmp_path / "ckpt" / "debug" / "fsdp" / "2" / "params")
    ref = flax.traverse_util.flatten_dict(jax.device_get(single.ema_params), sep="/")
    for key, value in flax.traverse_util.flatten_dict(fsdp_params, sep="/").items():
        np.testing.assert_allclose(value, ref[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert len(_losses(run.stderr)) == 2


@pytest.fixture(scope="module")
def libero_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written by lerobot in a child process: its video encoding forks, which a process running JAX must not do."""
    root = tmp_path_factory.mktemp("lerobot") / "libero_tiny"
    code = f"import pathlib, helpers.lerobot as h; h.make_libero_like_dataset(pathlib.Path({str(root)!r}))"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, timeout=300)
    return root


def _libero_config(tmp_path: Path, root: Path, **data_overrides: object) -> _config.TrainConfig:
    tokenizer = make_paligemma_like_model(tmp_path / "sp.model", num_loc=0, num_seg=0)
    debug = _configs.get_config("debug")
    data = libero.LeRobotLiberoDataConfig(
        repo_id="local/libero_tiny",
        root=str(root),
        model_transforms=_config.ModelTransformFactory(paligemma_tokenizer=str(tokenizer)),
        **data_overrides,
    )
    model = dataclasses.replace(debug.model, action_horizon=5)
    return dataclasses.replace(
        debug,
        name="libero_tiny",
        exp_name="run",
        model=model,
        data=data,
        num_train_steps=2,
        save_interval=2,
        checkpoint_base_dir=str(tmp_path / "ckpt"),
        assets_base_dir=str(tmp_path / "assets"),
    )


@pytest.mark.slow
def test_lerobot_v3_dataset_trains(tmp_path: Path, libero_dataset: Path) -> None:
    from openpi_core.training import norm_stats  # noqa: PLC0415

    config = _libero_config(tmp_path, libero_dataset)
    with pytest.raises(ValueError, match=r"compute_norm_stats\.py libero_tiny"):
        trainer.train(config)
    stats = norm_stats.compute(config)
    assert stats["actions"].mean.shape == (7,)
    assert stats["state"].mean.shape == (8,)
    assert (tmp_path / "assets" / "libero_tiny" / "local/libero_tiny" / "norm_stats.json").is_file()

    data_config = config.data.create(config.assets_dirs, config.model)
    sample = data_loader.create_dataset(config, data_config)[7]
    assert sample["image"]["base_0_rgb"].shape == (224, 224, 3)  # decoded from video, resized
    assert sample["actions"].shape == (5, 32)
    assert sample["state"].shape == (32,)
    assert sample["tokenized_prompt_mask"].sum() > 3

    # One spawned loader worker: the whole pipeline (video decoding, tokenizer) runs in another process.
    state = trainer.train(dataclasses.replace(config, overwrite=True, num_workers=1))
    assert int(state.step) == 2
    step_dir = tmp_path / "ckpt" / "libero_tiny" / "run" / "2"
    saved = normalize.load(step_dir / "assets" / "local/libero_tiny")
    np.testing.assert_allclose(saved["actions"].mean, stats["actions"].mean)
    params = _model.restore_params(step_dir / "params")
    config.model.load(params)  # the checkpoint is a complete, loadable model


def test_missing_dataset_keys_are_named(tmp_path: Path, libero_dataset: Path) -> None:
    config = _libero_config(tmp_path, libero_dataset)
    bad_keys = dataclasses.replace(
        config, data=dataclasses.replace(config.data, base_config=_config.DataConfig(prompt_from_task=True))
    )
    data_config = bad_keys.data.create(bad_keys.assets_dirs, bad_keys.model)
    with pytest.raises(ValueError, match="no feature 'action'"):
        data_loader.create_lerobot_dataset(
            dataclasses.replace(data_config, action_sequence_keys=("action",)), action_horizon=5
        )
    dataset = data_loader.create_dataset(
        config, dataclasses.replace(data_config, norm_stats=None), skip_norm_stats=True
    )
    renamed = dataclasses.replace(
        data_config,
        repack_transforms=type(data_config.repack_transforms)(
            inputs=[tf.RepackTransform({"observation/image": "top_image"})]
        ),
    )
    broken = data_loader.create_dataset(config, renamed, skip_norm_stats=True)
    with pytest.raises(KeyError, match="top_image"):
        broken[0]
    assert dataset[0]["state"].shape == (32,)


def _dataset_sample(family: str, horizon: int, cameras: tuple[str, ...] = ("top",)) -> dict[str, object]:
    """One item as `lerobot` returns it for each family's dataset layout (float CHW video frames)."""
    rng = np.random.default_rng(0)
    frame = rng.uniform(0, 1, (3, 48, 64)).astype(np.float32)
    if family == "aloha":
        return {
            **{f"observation.images.{cam}": frame for cam in cameras},
            "observation.state": rng.uniform(-1, 1, 14),
            "action": rng.uniform(-1, 1, (horizon, 14)),
            "task": "fold",
        }
    if family == "droid":
        return {
            "exterior_image_1_left": frame,
            "wrist_image_left": frame,
            "joint_position": rng.uniform(-1, 1, 7),
            "gripper_position": rng.uniform(0, 1, 1),
            "actions": rng.uniform(-1, 1, (horizon, 8)),
            "task": "wipe the table",
        }
    if family != "libero":  # a plugin robot's converted dataset (`RobotDataConfig`)
        spec = registry.get(family)
        return {
            **{f"observation.images.{cam.feature}": frame for cam in spec.cameras},
            "observation.state": rng.uniform(-1, 1, spec.state_dim),
            "action": rng.uniform(-1, 1, (horizon, spec.action_dim)),
            "task": "lift the cube",
        }
    return {
        "image": frame,
        "wrist_image": frame,
        "state": rng.uniform(-1, 1, 8),
        "actions": rng.uniform(-1, 1, (horizon, 7)),
        "task": "open the drawer",
    }


@pytest.fixture(scope="module")
def local_tokenizers(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from openpi_core.models import tokenizer  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("tokenizers")
    sp = make_paligemma_like_model(folder / "sp.model")
    chunks = np.random.default_rng(0).uniform(-1, 1, (300, 10, 8)).cumsum(axis=1) / 5
    fast = tokenizer.FASTActionTokenizer.fit(chunks, vocab_size=1024).save(folder / "fast")
    return str(sp), str(fast)


@pytest.mark.parametrize("name", [n for n in _configs.config_names() if not n.startswith("debug")])
def test_named_config_pipelines_run(name: str, tmp_path: Path, local_tokenizers: tuple[str, str]) -> None:
    """Every robot config's transform pipeline turns a sample of its dataset layout into model inputs."""
    sp, fast = local_tokenizers
    config = _configs.get_config(name)
    factory = _config.ModelTransformFactory(paligemma_tokenizer=sp, fast_tokenizer=fast)
    model = config.model
    if hasattr(model, "fast_model_tokenizer"):
        model = dataclasses.replace(model, fast_model_tokenizer=fast)
    data_config = dataclasses.replace(config.data, model_transforms=factory).create(tmp_path, model)
    family = config.data.robot_name()
    sample = _dataset_sample(family, model.action_horizon, getattr(config.data, "cameras", ("top",)))
    pipeline = [tf.PromptFromLeRobotTask()] if data_config.prompt_from_task else []
    pipeline += data_config.repack_transforms.inputs
    prompted = data_config.prompt_from_task or getattr(config.data, "default_prompt", None)
    if not prompted:  # as openpi: e.g. pi0_aloha's data must carry the prompt itself
        with pytest.raises(ValueError, match="a prompt is required"):
            tf.compose([*pipeline, *data_config.data_transforms.inputs, *data_config.model_transforms.inputs])(sample)
        pipeline.append(tf.InjectDefaultPrompt("pick up the cube"))
    pipeline += [*data_config.data_transforms.inputs, *data_config.model_transforms.inputs]
    out = tf.compose(pipeline)(sample)
    if model.model_type == "pi0_fast":  # state in the text, actions as tokens: no padding
        assert out["token_loss_mask"].sum() > 3
        assert out["actions"].shape[0] == model.action_horizon
    else:
        assert out["state"].shape == (model.action_dim,)
        assert out["actions"].shape == (model.action_horizon, model.action_dim)
    assert out["tokenized_prompt"].shape == (model.max_token_len,)
    assert out["tokenized_prompt_mask"].sum() > 3
    assert all(image.shape == (224, 224, 3) for image in out["image"].values())


PI0_FIXTURE = REPO.parent / "shared" / "fixtures" / "openpi_parity" / "pi0" / "params"


@pytest.mark.skipif(not PI0_FIXTURE.is_dir(), reason="needs ../shared/fixtures/openpi_parity/pi0")
def test_weights_from_an_openpi_checkpoint(tmp_path: Path) -> None:
    """The debug model has the pi0 fixture's architecture: its openpi checkpoint initialises training, and a LoRA
    variant of it loads the same checkpoint with fresh adapters."""
    expected = flax.traverse_util.flatten_dict(_model.restore_params(PI0_FIXTURE), sep="/")
    loader = weight_loaders.CheckpointWeightLoader(str(PI0_FIXTURE))
    config = _debug(tmp_path, weight_loader=loader)
    train = trainer.Trainer(config, sharding.make_mesh(1))
    abstract = nnx.to_pure_dict(nnx.state(config.model.abstract_model(), nnx.Param))
    state = train.init(jax.random.key(0), flax.traverse_util.flatten_dict(loader.load(abstract), sep="/"))
    got = flax.traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)

    adapter = lora.LoRAConfig(rank=2, alpha=2.0)
    gemma.register_variant(
        "test_loader_lora",
        dataclasses.replace(gemma.get_config("dummy"), lora_configs={"attn": adapter}),
        overwrite=True,
    )
    lora_model = dataclasses.replace(config.model, paligemma_variant="test_loader_lora")
    lora_abstract = nnx.to_pure_dict(nnx.state(lora_model.abstract_model(), nnx.Param))
    loaded = flax.traverse_util.flatten_dict(loader.load(lora_abstract), sep="/")
    assert set(loaded) == set(expected)  # adapters are left to their initialisation
    with pytest.raises(ValueError, match="lacks parameters the model needs"):
        weight_loaders.CheckpointWeightLoader(str(PI0_FIXTURE), missing_regex="nothing").load(lora_abstract)
    wider = dataclasses.replace(config.model, action_dim=16)
    with pytest.raises(ValueError, match="action_in_proj/kernel has shape"):
        loader.load(nnx.to_pure_dict(nnx.state(wider.abstract_model(), nnx.Param)))
