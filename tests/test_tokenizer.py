"""Prompt and FAST action tokenizers, on tokenizer models trained here (nothing is downloaded)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import sentencepiece
from helpers.tokenizers import make_paligemma_like_model

from openpi_core.models import tokenizer


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_paligemma_like_model(tmp_path_factory.mktemp("sp") / "paligemma_like.model")


def _smooth_chunks(n: int, horizon: int, dim: int, seed: int = 0) -> np.ndarray:
    """Smooth random trajectories in [-1, 1] (what normalised robot action chunks look like)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    freq = rng.uniform(0.2, 2.0, (n, 1, dim))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, dim))
    amp = rng.uniform(0.1, 0.9, (n, 1, dim))
    return amp * np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.01, (n, horizon, dim))


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> tokenizer.FASTActionTokenizer:
    return tokenizer.FASTActionTokenizer.fit(_smooth_chunks(400, 10, 4), scale=10, vocab_size=256)


def test_pi0_prompt_format(sp_model: Path) -> None:
    tok = tokenizer.PaligemmaTokenizer(max_len=32, model_path=sp_model)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model))
    tokens, mask = tok.tokenize("pick_up the red\ncube ")
    expected = sp.encode("pick up the red cube", add_bos=True) + sp.encode("\n")
    assert tokens.dtype == np.int32
    assert mask.dtype == bool
    assert tokens.shape == mask.shape == (32,)
    assert tokens[: len(expected)].tolist() == expected
    assert tokens[0] == 2
    assert tokens[len(expected) - 1] == sp.piece_to_id("\n")
    assert mask.sum() == len(expected)
    assert not tokens[len(expected) :].any()


def test_pi05_prompt_carries_discretised_state(sp_model: Path) -> None:
    tok = tokenizer.PaligemmaTokenizer(max_len=64, model_path=sp_model)
    tokens, mask = tok.tokenize("fold towel", state=np.array([-1.0, 0.0, 0.999, 1.5, -3.0]))
    text = tok.sentencepiece.decode(tokens[mask].tolist())
    # openpi's binning: above the range -> 255, below it -> -1 (kept: fine-tuned checkpoints saw exactly this).
    assert text == "Task: fold towel, State: 0 128 255 255 -1;\nAction: "


def test_discretize_state_bins() -> None:
    np.testing.assert_array_equal(
        tokenizer.discretize_state(np.array([-1.0, -0.993, -0.992, 0.0, 0.99])), [0, 0, 1, 128, 254]
    )
    with pytest.raises(ValueError, match="finite"):
        tokenizer.discretize_state(np.array([0.0, np.nan]))


def test_prompt_truncation_warns(sp_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    tok = tokenizer.PaligemmaTokenizer(max_len=5, model_path=sp_model)
    with caplog.at_level(logging.WARNING):
        tokens, mask = tok.tokenize("pick up the red cube and place it in the bowl")
    assert mask.all()
    assert tokens.shape == (5,)
    assert "exceeds max length" in caplog.text


def test_fast_round_trip_within_bound(fast: tokenizer.FASTActionTokenizer) -> None:
    chunks = _smooth_chunks(50, 10, 4, seed=1)
    tokens = fast.encode(chunks)
    decoded = fast.decode(tokens)
    assert decoded.shape == chunks.shape
    assert decoded.dtype == np.float32
    error = np.abs(decoded - chunks)
    bound = fast.round_trip_bound(10)
    assert error.max() <= bound + 1e-6
    assert np.sqrt(np.mean(error**2)) <= 0.5 / fast.scale
    # Compression: far fewer tokens than values (what FAST is for).
    assert np.mean([len(t) for t in tokens]) < 0.5 * 10 * 4
    assert all(0 <= i < fast.vocab_size for t in tokens for i in t)


def test_fast_save_load_is_the_official_layout(fast: tokenizer.FASTActionTokenizer, tmp_path: Path) -> None:
    folder = fast.save(tmp_path / "fast")
    config = json.loads((folder / "processor_config.json").read_text())
    assert {"scale", "vocab_size", "min_token", "time_horizon", "action_dim"} <= set(config)
    # The official folder also carries files we never execute or need.
    (folder / "processing_action_tokenizer.py").write_text('raise RuntimeError("must never run")\n')
    loaded = tokenizer.FASTActionTokenizer.load(folder)
    chunk = _smooth_chunks(1, 10, 4, seed=2)[0]
    assert loaded.encode(chunk) == fast.encode(chunk)
    np.testing.assert_array_equal(loaded.decode(fast.encode(chunk)), fast.decode(fast.encode(chunk)))
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        tokenizer.FASTActionTokenizer.load(folder)


def test_fast_loads_official_style_config_without_max_token(
    fast: tokenizer.FASTActionTokenizer, tmp_path: Path
) -> None:
    """The released processor_config.json has no max_token and null horizon/dim: they come from the caller."""
    folder = fast.save(tmp_path / "fast")
    config = json.loads((folder / "processor_config.json").read_text())
    for key in ("max_token", "time_horizon", "action_dim"):
        config.pop(key)
    config |= {"time_horizon": None, "action_dim": None, "auto_map": {"AutoProcessor": "x.Y"}}
    (folder / "processor_config.json").write_text(json.dumps(config))
    loaded = tokenizer.FASTActionTokenizer.load(folder)
    chunk = _smooth_chunks(1, 10, 4, seed=3)
    with pytest.raises(ValueError, match="time_horizon and action_dim"):
        loaded.decode(loaded.encode(chunk))
    np.testing.assert_allclose(
        loaded.decode(loaded.encode(chunk), time_horizon=10, action_dim=4), chunk, atol=loaded.round_trip_bound(10)
    )


def test_fast_bad_tokens(fast: tokenizer.FASTActionTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    short = fast.encode(_smooth_chunks(1, 10, 4))[0][:-3]
    with caplog.at_level(logging.WARNING):
        assert not fast.decode([short]).any()
    assert "expected 10 x 4" in caplog.text
    with pytest.raises(ValueError, match="expected 10 x 4"):
        fast.decode([short], strict=True)
    with pytest.raises(ValueError, match="finite"):
        fast.encode(np.full((10, 4), np.inf))
    with pytest.raises(ValueError, match="shape"):
        fast.encode(np.zeros(10))


def test_fast_fit_errors() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        tokenizer.FASTActionTokenizer.fit(_smooth_chunks(10, 10, 4) * 100, vocab_size=64)
    with pytest.raises(ValueError, match="at least one"):
        tokenizer.FASTActionTokenizer.fit([])


def test_fast_prompt_tokens_and_action_extraction(sp_model: Path, fast: tokenizer.FASTActionTokenizer) -> None:
    tok = tokenizer.FASTTokenizer(max_len=120, fast_tokenizer=fast, paligemma_model_path=sp_model)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_model))
    state = np.array([0.0, 0.5, -0.5])
    actions = _smooth_chunks(1, 10, 4, seed=4)[0]
    tokens, mask, ar_mask, loss_mask = tok.tokenize("Stack_Blocks", state, actions)
    prefix = sp.encode("Task: stack blocks, State: 128 192 64;\n", add_bos=True)
    n = int(mask.sum())
    assert tokens[: len(prefix)].tolist() == prefix
    assert tokens[n - 1] == 1  # EOS closes the training sequence
    assert ar_mask[: len(prefix)].sum() == 0
    assert ar_mask[len(prefix) : n].all()
    assert not ar_mask[n:].any()
    np.testing.assert_array_equal(loss_mask, ar_mask.astype(bool))
    action_ids = tokens[len(prefix) + len(sp.encode("Action: ")) : n - len(sp.encode("|", add_eos=True))]
    # FAST ids live at the end of the vocabulary, below the 128 skipped (<seg>) tokens.
    assert action_ids.min() >= sp.vocab_size() - 128 - fast.vocab_size
    assert action_ids.max() < sp.vocab_size() - 128
    # What the model generates after the prefix decodes back to the actions.
    generated = tokens[len(prefix) : n]
    recovered = tok.extract_actions(generated, action_horizon=10, action_dim=4)
    np.testing.assert_allclose(recovered, actions, atol=fast.round_trip_bound(10))
    # Inference: prefix only.
    inf_tokens, inf_mask, inf_ar, inf_loss = tok.tokenize("Stack_Blocks", state, None)
    assert inf_tokens[inf_mask].tolist() == prefix
    assert not inf_ar.any()
    assert not inf_loss.any()
    assert not tok.extract_actions(np.array(prefix), 10, 4).any()  # no "Action: " segment -> zeros


def test_fast_vocab_must_fit(sp_model: Path, fast: tokenizer.FASTActionTokenizer) -> None:
    small = make_paligemma_like_model(sp_model.parent / "small.model", num_loc=0, num_seg=0, base_vocab=300)
    tok = tokenizer.FASTTokenizer(fast_tokenizer=fast, paligemma_model_path=small)  # loaded on first use
    with pytest.raises(ValueError, match="does not fit"):
        tok.tokenize("pick", np.zeros(2), None)
