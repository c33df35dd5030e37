"""Prompt and action tokenizers in openpi's formats.

* `PaligemmaTokenizer`: the PaliGemma SentencePiece model; π₀ prompts (`BOS text "\\n"`) and π₀.₅ prompts with the
  state discretised into 256 bins (`Task: ..., State: ...;\\nAction: `).
* `FASTActionTokenizer` (defined in `fast_action`): FAST, the DCT + BPE action tokenizer; its `load` takes a local
  folder, which `tokenizer_sources.fast_folder` fetches from a URL or a Hugging Face repo id.
* `FASTTokenizer`: π₀-FAST's full token sequence: prompt and state, then `Action: ` + FAST tokens mapped onto the
  end of the PaliGemma vocabulary + `|` EOS; and back from generated ids to actions.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import sentencepiece

from openpi_core.models import tokenizer_sources as sources
from openpi_core.models.fast_action import FASTActionTokenizer

logger = logging.getLogger(__name__)


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
                fast_source
                if isinstance(fast_source, FASTActionTokenizer)
                else FASTActionTokenizer.load(sources.fast_folder(fast_source))
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
