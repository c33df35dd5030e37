"""FAST, the action tokenizer: DCT over time per action dimension, scale and round, then BPE over the integer
sequence. `fit` trains one; `save`/`load` use the layout of the official `physical-intelligence/fast` folder
(`processor_config.json` + `tokenizer.json`), so the released tokenizer loads from a local copy.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.fft
import tokenizers
from tokenizers import decoders, models, trainers

__all__ = ["FASTActionTokenizer"]

logger = logging.getLogger(__name__)

_PROCESSOR_CONFIG = "processor_config.json"
_TOKENIZER_FILE = "tokenizer.json"


class FASTActionTokenizer:
    """DCT + BPE action tokenizer (FAST). Token ids are in [0, vocab_size)."""

    def __init__(
        self,
        bpe: tokenizers.Tokenizer,
        *,
        scale: float = 10.0,
        vocab_size: int = 1024,
        min_token: int = 0,
        max_token: int | None = None,
        time_horizon: int | None = None,
        action_dim: int | None = None,
    ) -> None:
        self.bpe = bpe
        self.scale = float(scale)
        self.vocab_size = int(vocab_size)
        self.min_token = int(min_token)
        self.max_token = None if max_token is None else int(max_token)
        self.time_horizon = time_horizon
        self.action_dim = action_dim

    @classmethod
    def fit(
        cls,
        action_chunks: Iterable[np.ndarray],
        *,
        scale: float = 10.0,
        vocab_size: int = 1024,
        time_horizon: int | None = None,
        action_dim: int | None = None,
        show_progress: bool = False,
    ) -> FASTActionTokenizer:
        """Train on normalised action chunks, each [time, action_dim]."""
        coefficients = [
            np.around(scipy.fft.dct(np.asarray(c, np.float64), axis=0, norm="ortho") * scale) for c in action_chunks
        ]
        if not coefficients:
            raise ValueError("fit needs at least one action chunk")
        shapes = {c.shape for c in coefficients}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"action chunks must all be [time, action_dim] of one shape, got {sorted(shapes)}")
        all_coefficients = np.concatenate([c.ravel() for c in coefficients])
        min_token, max_token = int(all_coefficients.min()), int(all_coefficients.max())
        alphabet = max_token - min_token + 1
        if alphabet > vocab_size:
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the {alphabet} distinct DCT values at scale {scale}: "
                "raise vocab_size or lower scale"
            )
        bpe = tokenizers.Tokenizer(models.BPE())
        bpe.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            show_progress=show_progress,
            special_tokens=[],
            initial_alphabet=[chr(i) for i in range(alphabet)],
            max_token_length=10_000,
        )
        bpe.train_from_iterator(
            ("".join(map(chr, (c.ravel() - min_token).astype(int))) for c in coefficients), trainer=trainer
        )
        time_horizon = time_horizon or coefficients[0].shape[0]
        action_dim = action_dim or coefficients[0].shape[1]
        return cls(
            bpe,
            scale=scale,
            vocab_size=vocab_size,
            min_token=min_token,
            max_token=max_token,
            time_horizon=time_horizon,
            action_dim=action_dim,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FASTActionTokenizer:
        """From a local folder with `processor_config.json` and `tokenizer.json` (the official tokenizer's layout;
        `tokenizer_sources.fast_folder` fetches one from a URL or a Hugging Face repo id)."""
        folder = pathlib.Path(path)
        config_path, tokenizer_path = folder / _PROCESSOR_CONFIG, folder / _TOKENIZER_FILE
        for required in (config_path, tokenizer_path):
            if not required.is_file():
                raise FileNotFoundError(f"FAST tokenizer folder {folder} has no {required.name}")
        config = json.loads(config_path.read_text())
        missing = [key for key in ("scale", "vocab_size", "min_token") if key not in config]
        if missing:
            raise ValueError(f"{config_path}: missing {missing}")
        return cls(
            tokenizers.Tokenizer.from_file(str(tokenizer_path)),
            scale=config["scale"],
            vocab_size=config["vocab_size"],
            min_token=config["min_token"],
            max_token=config.get("max_token"),
            time_horizon=config.get("time_horizon"),
            action_dim=config.get("action_dim"),
        )

    def save(self, path: str | os.PathLike[str]) -> pathlib.Path:
        folder = pathlib.Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "processor_class": "UniversalActionProcessor",
            "scale": self.scale,
            "vocab_size": self.vocab_size,
            "min_token": self.min_token,
            "max_token": self.max_token,
            "time_horizon": self.time_horizon,
            "action_dim": self.action_dim,
        }
        (folder / _PROCESSOR_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        self.bpe.save(str(folder / _TOKENIZER_FILE))
        return folder

    def encode(self, actions: np.ndarray) -> list[list[int]]:
        """Token ids of one chunk [time, dim] or a batch [n, time, dim] (one list per chunk)."""
        actions = np.asarray(actions, np.float64)
        if actions.ndim == 2:
            actions = actions[None]
        if actions.ndim != 3:
            raise ValueError(f"actions must be [time, dim] or [n, time, dim], got shape {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("actions must be finite")
        coefficients = np.around(scipy.fft.dct(actions, axis=1, norm="ortho") * self.scale) - self.min_token
        upper = None if self.max_token is None else self.max_token - self.min_token
        clipped = np.clip(coefficients, 0, upper)
        if np.any(clipped != coefficients):
            logger.warning(
                "FAST: %d DCT values outside the tokenizer's range were clipped", int(np.sum(clipped != coefficients))
            )
        return [self.bpe.encode("".join(map(chr, row.ravel().astype(int)))).ids for row in clipped]

    def decode(
        self,
        tokens: Sequence[Sequence[int]],
        *,
        time_horizon: int | None = None,
        action_dim: int | None = None,
        strict: bool = False,
    ) -> np.ndarray:
        """Action chunks [n, time, dim] from token id lists. A list that does not decode to exactly time x dim
        values becomes zeros with a warning (openpi's behaviour), or raises with `strict=True`."""
        time_horizon = time_horizon or self.time_horizon
        action_dim = action_dim or self.action_dim
        if time_horizon is None or action_dim is None:
            raise ValueError("decode needs time_horizon and action_dim (not stored with this tokenizer)")
        decoded = []
        for ids in tokens:
            values = np.array([ord(ch) for ch in self.bpe.decode(list(map(int, ids)))], np.float64) + self.min_token
            if values.size != time_horizon * action_dim:
                message = f"FAST tokens decode to {values.size} values, expected {time_horizon} x {action_dim}"
                if strict:
                    raise ValueError(message)
                logger.warning("%s; returning zeros", message)
                values = np.zeros(time_horizon * action_dim)
            coefficients = values.reshape(time_horizon, action_dim) / self.scale
            decoded.append(scipy.fft.idct(coefficients, axis=0, norm="ortho"))
        return np.stack(decoded).astype(np.float32) if decoded else np.zeros((0, time_horizon, action_dim), np.float32)

    def round_trip_bound(self, time_horizon: int) -> float:
        """Max |decode(encode(a)) - a| for in-range chunks: rounding moves each DCT coefficient by at most
        0.5 / scale, and the orthonormal inverse DCT keeps the L2 norm, so no value moves more than
        0.5 * sqrt(time_horizon) / scale (the RMS error is at most 0.5 / scale)."""
        return 0.5 * math.sqrt(time_horizon) / self.scale
