"""Where the prompt (PaliGemma SentencePiece) and action (FAST) tokenizers come from.

A *source* is one of:

- a local path, or a URL (`gs://big_vision/paligemma_tokenizer.model`, openpi's default), fetched once into the
  download cache; for FAST also a Hugging Face repo id (`physical-intelligence/fast`, openpi's default);
- `SMALL_PALIGEMMA` / `SMALL_FAST`: small tokenizers trained in-process on first use and cached, for the debug
  configs and demos with small random-weight models (their ids mean nothing to official checkpoints).

`$OPENPI_PALIGEMMA_TOKENIZER` / `$OPENPI_FAST_TOKENIZER` replace openpi's default sources (never a source a config
names explicitly), so one variable makes every entry point offline. A source that cannot be fetched raises
`TokenizerUnavailableError` within seconds, in one line naming the file and the flag that gives a local copy.

Checkpoints written by `training/train.py` carry copies of the tokenizers they were trained with
(`assets/tokenizers/`, see `save_into` / `recorded_in`), so serving them needs no download.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil
import uuid

import numpy as np

from openpi_core import download
from openpi_core.errors import OpenpiError

__all__ = [
    "FAST_ENV",
    "FAST_REPO",
    "PALIGEMMA_ENV",
    "PALIGEMMA_URL",
    "SMALL_FAST",
    "SMALL_PALIGEMMA",
    "TokenizerUnavailableError",
    "add_arguments",
    "fast_folder",
    "paligemma_file",
    "recorded_in",
    "save_into",
]

logger = logging.getLogger(__name__)

PALIGEMMA_URL = "gs://big_vision/paligemma_tokenizer.model"
FAST_REPO = "physical-intelligence/fast"
SMALL_PALIGEMMA = "builtin:small-paligemma"
SMALL_FAST = "builtin:small-fast"
PALIGEMMA_ENV = "OPENPI_PALIGEMMA_TOKENIZER"
FAST_ENV = "OPENPI_FAST_TOKENIZER"
RECORD_DIR = "tokenizers"
_RECORD_FILE = "tokenizers.json"
_PALIGEMMA_COPY = "paligemma_tokenizer.model"
_FAST_COPY = "fast"
# The small PaliGemma-like model: 400 learned pieces + 496 <loc> + 128 <seg> = 1024 ids (the tiny models' vocab);
# the small FAST vocabulary fits below the 128 skipped ids at the end of it.
_SMALL_LAYOUT = {"base_vocab": 400, "num_loc": 496, "num_seg": 128}
_SMALL_FAST_VOCAB = 256


class TokenizerUnavailableError(OpenpiError, FileNotFoundError):
    """A tokenizer source could not be found or fetched (the message names it and the flag to use instead)."""


def paligemma_file(source: str | os.PathLike[str]) -> pathlib.Path:
    """The local SentencePiece model file for `source`."""
    source = _from_env(str(source), PALIGEMMA_URL, PALIGEMMA_ENV)
    if source == SMALL_PALIGEMMA:
        return _cached_small("small_paligemma_tokenizer.model", _make_small_paligemma)
    return _fetch(source, "PaliGemma tokenizer", "--paligemma-tokenizer", PALIGEMMA_ENV)


def fast_folder(source: str | os.PathLike[str]) -> pathlib.Path:
    """The local FAST tokenizer folder (`processor_config.json` + `tokenizer.json`) for `source`."""
    source = _from_env(str(source), FAST_REPO, FAST_ENV)
    if source == SMALL_FAST:
        return _cached_small("small_fast_tokenizer", _make_small_fast)
    local = pathlib.Path(source).expanduser()
    if download.is_url(source) or local.exists() or not _is_repo_id(source):
        return _fetch(source, "FAST tokenizer", "--fast-tokenizer", FAST_ENV)
    try:
        download.check_reachable("https://huggingface.co")
        import huggingface_hub  # noqa: PLC0415 (Hugging Face repo ids only)

        return pathlib.Path(huggingface_hub.snapshot_download(source))
    except Exception as exc:
        raise _unavailable("FAST tokenizer", source, exc, "--fast-tokenizer", FAST_ENV) from None


def save_into(assets_dir: pathlib.Path, *, paligemma: str | None, fast: str | None) -> None:
    """Copy the tokenizers a run used into `<assets_dir>/tokenizers/` and record their sources (a source that is
    only a URL never fetched on this machine is recorded without a copy)."""
    folder = assets_dir / RECORD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, dict[str, str]] = {}
    for kind, source, copy_name, resolve, default, env in (
        ("paligemma", paligemma, _PALIGEMMA_COPY, paligemma_file, PALIGEMMA_URL, PALIGEMMA_ENV),
        ("fast", fast, _FAST_COPY, fast_folder, FAST_REPO, FAST_ENV),
    ):
        if source is None:
            continue
        effective = _from_env(str(source), default, env)
        entry = {"source": effective}
        try:
            local = None if _remote_and_uncached(effective) else resolve(effective)
        except TokenizerUnavailableError:
            local = None
        if local is not None:
            target = folder / copy_name
            if local.is_dir():
                shutil.copytree(local, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(local, target)
            entry["file"] = copy_name
        record[kind] = entry
    (folder / _RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")


def recorded_in(checkpoint_dir: pathlib.Path) -> dict[str, str]:
    """The tokenizer sources a checkpoint records (`{"paligemma": path, "fast": path}`, local copies where it has
    them); empty for checkpoints without a record (official ones)."""
    folder = checkpoint_dir / "assets" / RECORD_DIR
    record_file = folder / _RECORD_FILE
    if not record_file.is_file():
        return {}
    record = json.loads(record_file.read_text())
    return {kind: str(folder / e["file"]) if "file" in e else e["source"] for kind, e in record.items()}


# -- helpers ----------------------------------------------------------------------------------------------------------
def _from_env(source: str, default: str, env: str) -> str:
    if source == default:
        return os.environ.get(env) or source
    return source


def _is_repo_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith((".", "/", "~"))


def _remote_and_uncached(source: str) -> bool:
    """A source that only a download could provide (recording it must not start one)."""
    if download.is_url(source):
        return not download.local_cache_path(source).exists()
    return _is_repo_id(source) and not pathlib.Path(source).expanduser().exists()


def _fetch(source: str, what: str, flag: str, env: str) -> pathlib.Path:
    try:
        return download.maybe_download(source)
    except (OSError, download.DownloadError) as exc:
        raise _unavailable(what, source, exc, flag, env) from None


def _unavailable(what: str, source: str, exc: BaseException, flag: str, env: str) -> TokenizerUnavailableError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return TokenizerUnavailableError(
        f"{what} {source} is not available ({reason}); give a local copy with {flag} PATH or ${env}"
    )


def _cached_small(name: str, make: object) -> pathlib.Path:
    """A small tokenizer generated once into the download cache (written beside, then renamed into place)."""
    target = download.cache_dir() / "builtin" / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{name}.partial-{uuid.uuid4().hex[:8]}"
    make(scratch)
    try:
        scratch.rename(target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(scratch, ignore_errors=True) if scratch.is_dir() else scratch.unlink(missing_ok=True)
    return target


def _make_small_paligemma(path: pathlib.Path) -> None:
    from openpi_core.models.small_tokenizer import make_small_paligemma_tokenizer  # noqa: PLC0415

    make_small_paligemma_tokenizer(path, **_SMALL_LAYOUT)


def _make_small_fast(path: pathlib.Path) -> None:
    from openpi_core.models.fast_action import FASTActionTokenizer  # noqa: PLC0415 (only when one is made)

    rng = np.random.default_rng(0)
    chunks = [np.cumsum(rng.normal(0, 0.05, (10, 8)), axis=0).clip(-1, 1) for _ in range(200)]
    FASTActionTokenizer.fit(chunks, vocab_size=_SMALL_FAST_VOCAB, scale=10.0).save(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--paligemma-tokenizer` and `--fast-tokenizer`, for every entry point that builds a model pipeline."""
    group = parser.add_argument_group("tokenizers (offline use)")
    group.add_argument(
        "--paligemma-tokenizer",
        metavar="PATH",
        help=f"PaliGemma SentencePiece model (default: the checkpoint copy, else {PALIGEMMA_URL}; ${PALIGEMMA_ENV})",
    )
    group.add_argument(
        "--fast-tokenizer",
        metavar="PATH",
        help=f"FAST tokenizer folder, π₀-FAST only (default: the checkpoint's copy, else {FAST_REPO}; or ${FAST_ENV})",
    )
