"""The training loop: jitted AdamW steps with EMA, LoRA freezing, FSDP placement, orbax checkpoints and resume."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from openpi_core.models import model as _model
from openpi_core.training import checkpoints, data_loader
from openpi_core.training import optimizer as _optimizer
from openpi_core.training import sharding as _sharding
from openpi_core.training.config import TrainConfig

logger = logging.getLogger(__name__)

Flat = dict[tuple[str, ...], Any]


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: _model.Params  # every parameter (pure dict); frozen ones never change
    opt_state: Any  # optimizer state of the trainable parameters
    ema_params: _model.Params | None


class Trainer:
    """Builds the model, optimizer and shardings for a `TrainConfig`; `init`, `step` and checkpoint I/O."""

    def __init__(self, config: TrainConfig, mesh: jax.sharding.Mesh) -> None:
        self.config = config
        self.mesh = mesh
        abstract = config.model.abstract_model()
        self.graphdef, self._template = nnx.split(abstract, nnx.Param)
        trainable = nnx.to_pure_dict(nnx.state(abstract, config.trainable_filter))
        self.trainable_keys = frozenset(flax.traverse_util.flatten_dict(trainable))
        if not self.trainable_keys:
            raise ValueError(f"config {config.name!r}: the freeze filter leaves no parameter to train")
        self.tx = _optimizer.create_optimizer(config.optimizer, config.lr_schedule)
        self.abstract_state = jax.eval_shape(self._init, jax.random.key(0), {})
        self.state_sharding = _sharding.fsdp_sharding(
            self.abstract_state, mesh, min_size_mb=config.fsdp_min_param_mb, log=config.fsdp_devices > 1
        )

    # --- parameter plumbing -------------------------------------------------------------------------------------

    def split(self, params: _model.Params) -> tuple[Flat, Flat]:
        flat = flax.traverse_util.flatten_dict(params)
        trainable = {k: v for k, v in flat.items() if k in self.trainable_keys}
        frozen = {k: v for k, v in flat.items() if k not in self.trainable_keys}
        return trainable, frozen

    def model_from_params(self, params: _model.Params) -> _model.BaseModel:
        state = jax.tree.map(lambda x: x, self._template)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)

    # --- init / step --------------------------------------------------------------------------------------------

    def _init(self, rng: jax.Array, loaded: dict[str, Any]) -> TrainState:
        params = nnx.to_pure_dict(nnx.state(self.config.model.create(rng), nnx.Param))
        flat = flax.traverse_util.flatten_dict(params)
        for key, value in flax.traverse_util.flatten_dict(loaded, sep="/").items():
            path = tuple(key.split("/"))
            flat[path] = jnp.asarray(value, flat[path].dtype)
        # Frozen weights are stored in the model's compute dtype (bf16 for full-size models): half the memory.
        dtype = jnp.dtype(getattr(self.config.model, "dtype", "float32"))
        flat = {k: v if k in self.trainable_keys else v.astype(dtype) for k, v in flat.items()}
        params = flax.traverse_util.unflatten_dict(flat)
        trainable, _ = self.split(params)
        ema = params if self.config.ema_decay is not None else None
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(trainable), ema_params=ema
        )

    def init(self, rng: jax.Array, loaded: dict[str, Any]) -> TrainState:
        """Fresh parameters, overwritten by `loaded` ('/'-keyed leaves from a weight loader), placed on the mesh."""
        return jax.jit(self._init, out_shardings=self.state_sharding)(rng, loaded)

    def train_step(self, rng: jax.Array, state: TrainState, batch: tuple[_model.Observation, jax.Array]) -> tuple:
        observation, actions = batch
        trainable, frozen = self.split(state.params)
        step_rng = jax.random.fold_in(rng, state.step)

        def loss_fn(trainable: Flat) -> jax.Array:
            params = flax.traverse_util.unflatten_dict({**frozen, **trainable})
            model = self.model_from_params(params)
            return jnp.mean(model.compute_loss(step_rng, observation, actions, train=True))

        loss, grads = jax.value_and_grad(loss_fn)(trainable)
        updates, opt_state = self.tx.update(grads, state.opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        params = flax.traverse_util.unflatten_dict({**frozen, **trainable})
        ema = state.ema_params
        if ema is not None:
            decay = self.config.ema_decay
            ema = jax.tree.map(lambda old, new: decay * old + (1 - decay) * new, ema, params)
        kernels = [v for k, v in trainable.items() if v.ndim > 1]
        info = {"loss": loss, "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(kernels)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema), info

    def jit_train_step(self) -> Any:
        replicated = _sharding.replicated(self.mesh)
        data = _sharding.data_sharding(self.mesh)
        return jax.jit(
            self.train_step,
            in_shardings=(replicated, self.state_sharding, data),
            out_shardings=(self.state_sharding, replicated),
            donate_argnums=(1,),
        )

    # --- checkpoints ----------------------------------------------------------------------------------------------

    @property
    def abstract_params(self) -> _model.Params:
        """The model's parameters as shapes and dtypes (what weight loaders are given)."""
        return nnx.to_pure_dict(self._template)

    @staticmethod
    def checkpoint_items(state: TrainState) -> tuple[_model.Params, dict[str, Any]]:
        """(params for inference: the EMA if kept, the rest of the train state) as saved on disk.

        Also applied to the abstract state and its shardings to build the restore target, so the two agree.
        """
        if state.ema_params is not None:
            return state.ema_params, {"step": state.step, "params": state.params, "opt_state": state.opt_state}
        return state.params, {"step": state.step, "params": {}, "opt_state": state.opt_state}

    @staticmethod
    def from_checkpoint_items(params: _model.Params, rest: dict[str, Any], *, ema: bool) -> TrainState:
        """Inverse of `checkpoint_items`."""
        if ema:
            return TrainState(step=rest["step"], params=rest["params"], opt_state=rest["opt_state"], ema_params=params)
        return TrainState(step=rest["step"], params=params, opt_state=rest["opt_state"], ema_params=None)

    def restore(self, manager: Any) -> TrainState:
        """The latest checkpoint, placed with this trainer's shardings."""
        import orbax.checkpoint as ocp  # noqa: PLC0415

        def target(abstract: Any, shardings: Any) -> Any:
            return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)

        params_abstract, rest_abstract = self.checkpoint_items(self.abstract_state)
        params_sharding, rest_sharding = self.checkpoint_items(self.state_sharding)
        items = {"params": {"params": target(params_abstract, params_sharding)}}
        items["train_state"] = target(rest_abstract, rest_sharding)
        args = {
            name: ocp.args.PyTreeRestore(item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item))
            for name, item in items.items()
        }
        restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(**args))
        return self.from_checkpoint_items(
            restored["params"]["params"], restored["train_state"], ema=self.abstract_state.ema_params is not None
        )


def train(config: TrainConfig) -> TrainState:
    """Run (or resume) a training run; returns the final train state."""
    from tqdm import tqdm  # noqa: PLC0415

    mesh = _sharding.make_mesh(config.fsdp_devices)
    resuming = checkpoints.prepare_dir(config.checkpoint_dir, resume=config.resume, overwrite=config.overwrite)
    data_config = config.data.create(config.assets_dirs, config.model)
    trainer = Trainer(config, mesh)
    manager = checkpoints.make_manager(config.checkpoint_dir, keep_period=config.keep_period)

    if resuming:
        state = trainer.restore(manager)
        logger.info("Resumed %s at step %d", config.checkpoint_dir, int(state.step))
    else:
        loaded = config.weight_loader.load(trainer.abstract_params)
        flat_loaded = flax.traverse_util.flatten_dict(loaded, sep="/")
        state = trainer.init(jax.random.key(config.seed), flat_loaded)
    start = int(state.step)

    dataset = data_loader.create_dataset(config, data_config)
    loader = data_loader.DataLoader(
        dataset,
        batch_size=config.batch_size,
        mesh=mesh,
        seed=config.seed,
        num_workers=config.num_workers,
        start_step=start,
    )
    wandb_run = _init_wandb(config, resuming) if config.wandb_enabled else None
    step_fn = trainer.jit_train_step()
    rng = jax.random.key(config.seed + 1)
    batches = iter(loader)
    progress = tqdm(range(start, config.num_train_steps), initial=start, total=config.num_train_steps, desc=config.name)
    last = time.perf_counter()
    for _ in progress:
        state, info = step_fn(rng, state, next(batches))
        done = int(state.step)
        if done % config.log_interval == 0 or done == config.num_train_steps:
            info = {k: float(v) for k, v in jax.device_get(info).items()}
            now = time.perf_counter()
            step_time = (now - last) / max(1, min(config.log_interval, done - start))
            last = now
            info |= {"step_time_s": step_time, "samples_per_s": config.batch_size / step_time}
            progress.set_postfix(
                loss=f"{info['loss']:.4f}", step_s=f"{step_time:.3f}", sps=f"{info['samples_per_s']:.1f}"
            )
            logger.info("step %d: %s", done, ", ".join(f"{k}={v:.4g}" for k, v in info.items()))
            if not np.isfinite(info["loss"]):
                raise FloatingPointError(f"loss is {info['loss']} at step {done}; the last checkpoint is kept")
            if wandb_run is not None:
                wandb_run.log(info, step=done)
        if done % config.save_interval == 0 or done == config.num_train_steps:
            params, rest = trainer.checkpoint_items(state)
            checkpoints.save(
                manager,
                done,
                params=params,
                train_state=rest,
                norm_stats=data_config.norm_stats,
                asset_id=data_config.asset_id,
                tokenizers=config.tokenizer_sources,
            )
            logger.info("Saved checkpoint %s/%d", config.checkpoint_dir, done)
    progress.close()
    manager.close()
    if wandb_run is not None:
        wandb_run.finish()
    return state


def _init_wandb(config: TrainConfig, resuming: bool) -> Any:
    import wandb  # noqa: PLC0415

    return wandb.init(
        project=config.project_name,
        name=config.exp_name,
        dir=str(config.checkpoint_dir),
        config={k: str(v) for k, v in dataclasses.asdict(config).items()},
        resume="allow" if resuming else None,
    )
