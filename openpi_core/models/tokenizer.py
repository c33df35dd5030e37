"""Prompt and action tokenizers in openpi's formats.

* `PaligemmaTokenizer`: the PaliGemma SentencePiece model; π₀ prompts (`BOS text "\\n"`) and π₀.₅ prompts with the
  state discretised into 256 bins (`Task: ..., State: ...;\\nAction: `).
* `FASTActionTokenizer`: FAST (DCT over time per action dimension, scale and round, then BPE over the integer
  sequence). `fit` trains one; `save`/`load` use the layout of the official `physical-intelligence/fast` folder
  (`processor_config.json` + `tokenizer.json`), so the released tokenizer loads from a local copy.
* `FASTTokenizer`: π₀-FAST's full token sequence: prompt and state, then `Action: ` + FAST tokens mapped onto the
  end of the PaliGemma vocabulary + `|` EOS; and back from generated ids to actions.
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
import sentencepiece
import tokenizers
from tokenizers import decoders, models, trainers

from openpi_core.models import tokenizer_sources as sources

logger = logging.getLogger(__name__)

_PROCESSOR_CONFIG = "processor_config.json"
_TOKENIZER_FILE = "tokenizer.json"


def load_sentencepiece(source: str | os.PathLike[str]) -> sentencepiece.SentencePieceProcessor:
    """A SentencePiece model from a tokenizer source (a path, a URL fetched once, or a built-in small model; see
    `tokenizer_sources`)."""
    return sentencepiece.SentencePieceProcessor(model_proto=sources.paligemma_file(source).read_bytes())


def discretize_state(state: np.ndarray, num_bins: int = 256) -> np.ndarray:
    """openpi's bin indices of a state normalised to [-1, 1]: [0, num_bins) inside, -1 below -1, 255 above 1."""
    state = np.asarray(state)
    if not np.all(np.isfinite(state)):
        raise ValueError(f"state must be finite, got {state}")
    return np.digitize(state, bins=np.linspace(-1, 1, num_bins + 1)[:-1]) - 1


def _pad(max_len: int, *sequences: list) -> list[np.ndarray]:
    length = len(sequences[0])
    if length > max_len:
        logger.warning(
            "Token length (%d) exceeds max length (%d), truncating. Consider raising max_token_len.", length, max_len
        )
    return [np.asarray((list(seq) + [0] * (max_len - length))[:max_len]) for seq in sequences]


class PaligemmaTokenizer:
    """Prompt tokenizer of π₀ and π₀.₅ (PaliGemma's SentencePiece model: pad 0, EOS 1, BOS 2)."""

    def __init__(self, max_len: int = 48, *, model_path: str | os.PathLike[str] = sources.PALIGEMMA_URL) -> None:
        """The model is loaded on first use, so building a pipeline (e.g. for norm stats) never fetches it."""
        self._max_len = max_len
        self._model_path = model_path
        self._loaded: sentencepiece.SentencePieceProcessor | None = None

    @property
    def sentencepiece(self) -> sentencepiece.SentencePieceProcessor:
        if self._loaded is None:
            self._loaded = load_sentencepiece(self._model_path)
        return self._loaded

    def tokenize(self, prompt: str, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(token ids int [max_len], mask bool [max_len]). With `state` (π₀.₅), the state goes into the prompt."""
        cleaned = prompt.strip().replace("_", " ").replace("\n", " ")
        if state is not None:
            state_str = " ".join(map(str, discretize_state(state)))
            tokens = self.sentencepiece.encode(f"Task: {cleaned}, State: {state_str};\nAction: ", add_bos=True)
        else:
            # "\n" is tokenized on its own: it is the "start of answer" token.
            tokens = self.sentencepiece.encode(cleaned, add_bos=True) + self.sentencepiece.encode("\n")
        tokens, mask = _pad(self._max_len, tokens, [True] * len(tokens))
        return tokens.astype(np.int32), mask.astype(bool)


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
        """From a folder with `processor_config.json` and `tokenizer.json` (the official tokenizer's layout), a URL,
        or a Hugging Face repo id (`physical-intelligence/fast`, downloaded by huggingface_hub)."""
        folder = sources.fast_folder(path)
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


class FASTTokenizer:
    """π₀-FAST token sequences: `BOS Task: <prompt>, State: <bins>;\\n` then (training) `Action: <fast> |EOS`."""

    def __init__(
        self,
        max_len: int = 256,
        *,
        fast_tokenizer: FASTActionTokenizer | str | os.PathLike[str] = sources.FAST_REPO,
        paligemma_model_path: str | os.PathLike[str] = sources.PALIGEMMA_URL,
        fast_skip_tokens: int = 128,
    ) -> None:
        """Both tokenizers are loaded on first use (a pipeline can be built offline)."""
        self._max_len = max_len
        self._sources = (paligemma_model_path, fast_tokenizer)
        self._fast_skip_tokens = fast_skip_tokens
        self._loaded: tuple[sentencepiece.SentencePieceProcessor, FASTActionTokenizer] | None = None

    def _load(self) -> tuple[sentencepiece.SentencePieceProcessor, FASTActionTokenizer]:
        if self._loaded is None:
            paligemma_source, fast_source = self._sources
            paligemma = load_sentencepiece(paligemma_source)
            fast = (
                fast_source if isinstance(fast_source, FASTActionTokenizer) else FASTActionTokenizer.load(fast_source)
            )
            if fast.vocab_size + self._fast_skip_tokens > paligemma.vocab_size():
                raise ValueError(
                    f"FAST vocabulary ({fast.vocab_size}) + skipped tokens ({self._fast_skip_tokens}) does not fit "
                    f"into the prompt vocabulary ({paligemma.vocab_size()})"
                )
            self._loaded = (paligemma, fast)
        return self._loaded

    @property
    def _paligemma(self) -> sentencepiece.SentencePieceProcessor:
        return self._load()[0]

    @property
    def _fast(self) -> FASTActionTokenizer:
        return self._load()[1]

    @property
    def action_tokenizer(self) -> FASTActionTokenizer:
        return self._fast

    def _to_paligemma(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        """FAST ids <-> PaliGemma ids (the mapping is its own inverse): the end of the vocabulary, backwards."""
        return self._paligemma.vocab_size() - 1 - self._fast_skip_tokens - np.asarray(tokens, dtype=np.int64)

    def tokenize(
        self, prompt: str, state: np.ndarray, actions: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(tokens, token_mask, ar_mask, loss_mask), each [max_len]; without `actions` only the prefix."""
        cleaned = prompt.lower().strip().replace("_", " ")
        state_str = " ".join(map(str, discretize_state(state)))
        prefix = self._paligemma.encode(f"Task: {cleaned}, State: {state_str};\n", add_bos=True)
        if actions is not None:
            action_ids = self._to_paligemma(self._fast.encode(actions)[0]).tolist()
            postfix = self._paligemma.encode("Action: ") + action_ids + self._paligemma.encode("|", add_eos=True)
        else:
            postfix = []
        tokens = prefix + postfix
        padded = _pad(
            self._max_len,
            tokens,
            [True] * len(tokens),
            [0] * len(prefix) + [1] * len(postfix),
            [False] * len(prefix) + [True] * len(postfix),
        )
        return padded[0].astype(np.int32), padded[1].astype(bool), padded[2].astype(np.int32), padded[3].astype(bool)

    def extract_actions(self, tokens: np.ndarray, action_horizon: int, action_dim: int) -> np.ndarray:
        """Actions [action_horizon, action_dim] from generated ids; zeros if there is no `Action: ` segment."""
        text = self._paligemma.decode([int(t) for t in np.asarray(tokens).ravel()])
        if "Action: " not in text:
            logger.warning("generated tokens contain no 'Action: ' segment; returning zeros")
            return np.zeros((action_horizon, action_dim), np.float32)
        action_text = text.split("Action: ")[1].split("|")[0].strip()
        fast_ids = self._to_paligemma(self._paligemma.encode(action_text))
        return self._fast.decode([fast_ids.tolist()], time_horizon=action_horizon, action_dim=action_dim)[0]
