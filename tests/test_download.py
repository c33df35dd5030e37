"""The download helper through real fsspec filesystems (file:// and memory://; gs:// is the same code path)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from helpers.tokenizers import make_paligemma_like_model

from openpi_core import download
from openpi_core.models import tokenizer


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_local_paths_pass_through(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert download.maybe_download(tmp_path / "a.txt") == (tmp_path / "a.txt").resolve()
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        download.maybe_download(tmp_path / "missing")


def test_folder_download_is_cached(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "bucket" / "checkpoints" / "pi0_tiny"
    (source / "params" / "d").mkdir(parents=True)
    (source / "params" / "_METADATA").write_text("{}")
    (source / "params" / "d" / "chunk").write_bytes(b"\x00" * 3_000_000)
    (source / "assets").mkdir()
    (source / "assets" / "norm_stats.json").write_text('{"norm_stats": {}}')
    url = f"file://{source}"

    local = download.maybe_download(url)
    assert local == download.local_cache_path(url)
    assert local.is_relative_to(cache)
    assert (local / "params" / "d" / "chunk").stat().st_size == 3_000_000
    assert (local / "assets" / "norm_stats.json").read_text() == '{"norm_stats": {}}'
    assert not [p for p in local.parent.iterdir() if ".partial-" in p.name]

    # Cached: a changed source is not fetched again unless forced.
    (source / "assets" / "norm_stats.json").write_text("changed")
    assert (download.maybe_download(url) / "assets" / "norm_stats.json").read_text() == '{"norm_stats": {}}'
    assert (download.maybe_download(url, force_download=True) / "assets" / "norm_stats.json").read_text() == "changed"


def test_single_file_from_memory_filesystem() -> None:
    with fsspec.open("memory://models/tok.model", "wb") as f:
        f.write(b"abc")
    local = download.maybe_download("memory://models/tok.model")
    assert local.read_bytes() == b"abc"
    assert local.parts[-3:] == ("memory", "models", "tok.model")
    with pytest.raises(FileNotFoundError, match="memory://models/missing"):
        download.maybe_download("memory://models/missing")


def test_prompt_tokenizer_from_url(tmp_path: Path) -> None:
    model = make_paligemma_like_model(tmp_path / "paligemma_tokenizer.model")
    tok = tokenizer.PaligemmaTokenizer(max_len=16, model_path=f"file://{model}")
    tokens, mask = tok.tokenize("pick up the cube")
    assert tokens[0] == 2
    assert mask.sum() > 3
