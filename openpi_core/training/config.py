"""Training config types: `TrainConfig`, `DataConfig` (+ factories per dataset layout), `AssetsConfig`.

The named configs and their registry (`get_config`, `config_names`, `cli`) are `openpi_core.training.configs`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import pathlib
from collections.abc import Sequence
from typing import Any

from flax import nnx

from openpi_core import download, normalize
from openpi_core import transforms as _transforms
from openpi_core.models import model as _model
from openpi_core.models import pi0_config, pi0_fast, tokenizer_sources
from openpi_core.models import tokenizer as _tokenizer
from openpi_core.training import optimizer as _optimizer
from openpi_core.training import weight_loaders

logger = logging.getLogger(__name__)

ModelConfig = _model.BaseModelConfig


@dataclasses.dataclass(frozen=True)
class AssetsConfig:
    """Where norm stats live: `<assets_dir>/<asset_id>/norm_stats.json` (default: the train config's assets dir
    and the dataset's repo id). Point `assets_dir` at an official checkpoint's `assets` to reuse its stats."""

    assets_dir: str | None = None
    asset_id: str | None = None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    repo_id: str | None = None
    # Local LeRobot v3 dataset folder (nothing is fetched from the hub when set).
    root: str | None = None
    asset_id: str | None = None
    norm_stats: dict[str, normalize.NormStats] | None = None
    # Dataset keys -> the robot adapter's keys.
    repack_transforms: _transforms.Group = _transforms.Group()
    # Robot adapter (e.g. AlohaInputs/AlohaOutputs), delta actions.
    data_transforms: _transforms.Group = _transforms.Group()
    # Model-specific: prompt tokenization, resizing, padding.
    model_transforms: _transforms.Group = _transforms.Group()
    use_quantile_norm: bool = False
    # Dataset keys that are loaded as action chunks (action_horizon future steps).
    action_sequence_keys: Sequence[str] = ("actions",)
    prompt_from_task: bool = False


@dataclasses.dataclass(frozen=True)
class ModelTransformFactory:
    """The model-specific transforms: default prompt, resize to 224, tokenization, padding to the action dim
    (openpi's `ModelTransformFactory`). The tokenizers are sources (see `models.tokenizer_sources`): openpi's
    downloads by default, a local path, or the small built-in ones of the debug configs."""

    default_prompt: str | None = None
    paligemma_tokenizer: str = tokenizer_sources.PALIGEMMA_URL
    fast_tokenizer: str = tokenizer_sources.FAST_REPO

    def __call__(self, model_config: ModelConfig) -> _transforms.Group:
        common = [_transforms.InjectDefaultPrompt(self.default_prompt), _transforms.ResizeImages(224, 224)]
        if isinstance(model_config, pi0_fast.Pi0FASTConfig):
            tokenizer = _tokenizer.FASTTokenizer(
                model_config.max_token_len,
                fast_tokenizer=model_config.fast_model_tokenizer or self.fast_tokenizer,
                paligemma_model_path=self.paligemma_tokenizer,
                **(model_config.fast_model_tokenizer_kwargs or {}),
            )
            # No padding: π₀-FAST reads the state as text and its actions as tokens, at their own dimension.
            return _transforms.Group(
                inputs=[*common, _transforms.TokenizeFASTInputs(tokenizer)],
                outputs=[
                    _transforms.ExtractFASTActions(
                        tokenizer, action_horizon=model_config.action_horizon, action_dim=model_config.action_dim
                    )
                ],
            )
        if isinstance(model_config, pi0_config.Pi0Config):
            tokenizer = _tokenizer.PaligemmaTokenizer(model_config.max_token_len, model_path=self.paligemma_tokenizer)
            discrete = bool(model_config.discrete_state_input)
            pad = _transforms.PadStatesAndActions(model_config.action_dim)
            return _transforms.Group(inputs=[*common, _transforms.TokenizePrompt(tokenizer, discrete), pad])
        raise ValueError(f"no model transforms for {type(model_config).__name__}")


@dataclasses.dataclass(frozen=True)
class DataConfigFactory(abc.ABC):
    repo_id: str = "fake"
    root: str | None = None
    assets: AssetsConfig = AssetsConfig()
    base_config: DataConfig | None = None
    model_transforms: ModelTransformFactory = ModelTransformFactory()

    @abc.abstractmethod
    def create(self, assets_dirs: pathlib.Path, model_config: ModelConfig) -> DataConfig: ...

    def robot_name(self) -> str:
        """The registered robot (`openpi_core.robots`) whose observations this data's adapter reads ('' : none)."""
        return ""

    def create_base_config(self, assets_dirs: pathlib.Path, model_config: ModelConfig) -> DataConfig:
        asset_id = self.assets.asset_id or self.repo_id
        return dataclasses.replace(
            self.base_config or DataConfig(),
            repo_id=self.repo_id,
            root=self.root,
            asset_id=asset_id,
            norm_stats=load_norm_stats(pathlib.Path(self.assets.assets_dir or assets_dirs), asset_id),
            use_quantile_norm=model_config.model_type != _model.ModelType.PI0,
        )

    def with_transforms(
        self,
        assets_dirs: pathlib.Path,
        model_config: ModelConfig,
        *,
        repack: dict[str, Any],
        data: _transforms.Group,
        model_transforms: ModelTransformFactory,
    ) -> DataConfig:
        """The base config plus a repack structure (see `RepackTransform`), robot transforms and model transforms."""
        return dataclasses.replace(
            self.create_base_config(assets_dirs, model_config),
            repack_transforms=_transforms.Group(inputs=[_transforms.RepackTransform(repack)]),
            data_transforms=data,
            model_transforms=model_transforms(model_config),
        )


def load_norm_stats(assets_dir: pathlib.Path | str, asset_id: str | None) -> dict[str, normalize.NormStats] | None:
    if asset_id is None:
        return None
    try:
        folder = download.maybe_download(f"{assets_dir}/{asset_id}")
        stats = normalize.load(folder)
    except FileNotFoundError:
        logger.info("No norm stats under %s/%s", assets_dir, asset_id)
        return None
    logger.info("Loaded norm stats from %s", folder)
    return stats


@dataclasses.dataclass(frozen=True)
class FakeDataConfig(DataConfigFactory):
    """Random model-ready samples (no dataset, no tokenizer): for smoke runs and benchmarks."""

    repo_id: str = "fake"

    def create(self, assets_dirs: pathlib.Path, model_config: ModelConfig) -> DataConfig:
        return DataConfig(repo_id="fake")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    name: str
    exp_name: str = "default"
    project_name: str = "openpi-ros"
    model: ModelConfig = dataclasses.field(default_factory=pi0_config.Pi0Config)
    weight_loader: weight_loaders.WeightLoader = weight_loaders.NoOpWeightLoader()
    lr_schedule: Any = _optimizer.CosineDecaySchedule()
    optimizer: _optimizer.AdamW = _optimizer.AdamW()
    ema_decay: float | None = 0.99
    freeze_filter: Any = None  # None: the model config's (LoRA variants freeze their base weights)
    data: DataConfigFactory = dataclasses.field(default_factory=FakeDataConfig)
    assets_base_dir: str = "./assets"
    checkpoint_base_dir: str = "./checkpoints"
    seed: int = 42
    batch_size: int = 32
    num_workers: int = 2
    num_train_steps: int = 30_000
    log_interval: int = 100
    save_interval: int = 1000
    keep_period: int | None = 5000
    overwrite: bool = False
    resume: bool = False
    wandb_enabled: bool = False
    fsdp_devices: int = 1
    # Arrays smaller than this stay replicated under FSDP.
    fsdp_min_param_mb: float = 4.0
    # Served to clients with the policy's metadata (openpi's ALOHA configs carry the arm's `reset_pose`).
    policy_metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.resume and self.overwrite:
            problems.append("resume and overwrite: choose one")
        for field in ("batch_size", "num_train_steps", "save_interval", "log_interval", "fsdp_devices"):
            if getattr(self, field) < 1:
                problems.append(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.keep_period is not None and self.keep_period < 1:
            problems.append(f"keep_period must be >= 1 or None, got {self.keep_period}")
        if not self.exp_name or "/" in self.exp_name:
            problems.append(f"exp_name must be a non-empty name without '/', got {self.exp_name!r}")
        if problems:
            raise ValueError(f"invalid TrainConfig {self.name!r}: " + "; ".join(problems))

    @property
    def assets_dirs(self) -> pathlib.Path:
        return (pathlib.Path(self.assets_base_dir) / self.name).resolve()

    @property
    def checkpoint_dir(self) -> pathlib.Path:
        return (pathlib.Path(self.checkpoint_base_dir) / self.name / self.exp_name).resolve()

    def with_tokenizers(self, *, paligemma: str | None = None, fast: str | None = None) -> TrainConfig:
        """This config with other tokenizer sources (None keeps the config's)."""
        factory = self.data.model_transforms
        factory = dataclasses.replace(
            factory,
            paligemma_tokenizer=paligemma or factory.paligemma_tokenizer,
            fast_tokenizer=fast or factory.fast_tokenizer,
        )
        return dataclasses.replace(self, data=dataclasses.replace(self.data, model_transforms=factory))

    @property
    def tokenizer_sources(self) -> dict[str, str]:
        """The sources this config's model reads: PaliGemma always, FAST for π₀-FAST."""
        factory = self.data.model_transforms
        sources = {"paligemma": factory.paligemma_tokenizer}
        if isinstance(self.model, pi0_fast.Pi0FASTConfig):
            sources["fast"] = self.model.fast_model_tokenizer or factory.fast_tokenizer
        return sources

    @property
    def effective_freeze_filter(self) -> Any:
        return self.model.get_freeze_filter() if self.freeze_filter is None else self.freeze_filter

    @property
    def trainable_filter(self) -> Any:
        return nnx.All(nnx.Param, nnx.Not(self.effective_freeze_filter))
