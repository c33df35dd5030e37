"""Learning-rate schedules and optimizers (optax), as frozen configs."""

from __future__ import annotations

import dataclasses

import optax


@dataclasses.dataclass(frozen=True)
class CosineDecaySchedule:
    """Linear warm-up to `peak_lr`, then cosine decay to `decay_lr` at `decay_steps` (openpi's default)."""

    warmup_steps: int = 1_000
    peak_lr: float = 2.5e-5
    decay_steps: int = 30_000
    decay_lr: float = 2.5e-6

    def create(self) -> optax.Schedule:
        return optax.warmup_cosine_decay_schedule(
            init_value=self.peak_lr / (self.warmup_steps + 1),
            peak_value=self.peak_lr,
            warmup_steps=self.warmup_steps,
            decay_steps=self.decay_steps,
            end_value=self.decay_lr,
        )


@dataclasses.dataclass(frozen=True)
class ConstantSchedule:
    lr: float = 2.5e-5

    def create(self) -> optax.Schedule:
        return optax.constant_schedule(self.lr)


@dataclasses.dataclass(frozen=True)
class AdamW:
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 1e-10
    clip_gradient_norm: float = 1.0

    def create(self, lr: optax.ScalarOrSchedule) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(self.clip_gradient_norm),
            optax.adamw(lr, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay),
        )


def create_optimizer(
    optimizer: AdamW, lr_schedule: CosineDecaySchedule | ConstantSchedule
) -> optax.GradientTransformation:
    return optimizer.create(lr_schedule.create())
