"""Normalization statistics: computed in one streaming pass, stored in openpi's `norm_stats.json` format.

The file is `{"norm_stats": {"state": {"mean": [...], "std": [...], "q01": [...], "q99": [...]}, "actions": {...}}}`,
so the `assets/<asset_id>/norm_stats.json` of an official checkpoint loads unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

NORM_STATS_FILE = "norm_stats.json"


@dataclasses.dataclass(frozen=True)
class NormStats:
    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray | None = None  # 1st percentile (quantile normalization, π₀-FAST and π₀.₅)
    q99: np.ndarray | None = None  # 99th percentile

    def __post_init__(self) -> None:
        for field in ("mean", "std", "q01", "q99"):
            value = getattr(self, field)
            if value is not None:
                array = np.asarray(value, dtype=np.float32)
                if array.ndim != 1 or not np.all(np.isfinite(array)):
                    raise ValueError(f"norm stats {field!r} must be a finite 1-D array, got {value!r}")
                object.__setattr__(self, field, array)
        shapes = {getattr(self, f).shape for f in ("mean", "std", "q01", "q99") if getattr(self, f) is not None}
        if len(shapes) != 1:
            raise ValueError(f"norm stats fields have different lengths: {sorted(shapes)}")

    def to_json(self) -> dict[str, Any]:
        out = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.q01 is not None and self.q99 is not None:
            out |= {"q01": self.q01.tolist(), "q99": self.q99.tolist()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NormStats:
        missing = [key for key in ("mean", "std") if key not in data]
        if missing:
            raise ValueError(f"norm stats entry is missing {missing}")
        return cls(
            mean=np.asarray(data["mean"]),
            std=np.asarray(data["std"]),
            q01=None if data.get("q01") is None else np.asarray(data["q01"]),
            q99=None if data.get("q99") is None else np.asarray(data["q99"]),
        )


class RunningStats:
    """Mean, std and 1%/99% quantiles of vectors fed in batches, in one pass.

    Mean and variance are exact (float64 sums); quantiles come from a per-dimension histogram of `num_bins` bins
    that is re-binned when a batch falls outside the range seen so far (error below one bin width).
    """

    def __init__(self, num_bins: int = 5000) -> None:
        self.num_bins = num_bins
        self._count = 0
        self._sum: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self._hist: np.ndarray | None = None  # [dim, bins]
        self._edges: np.ndarray | None = None  # [dim, bins + 1]

    def update(self, batch: np.ndarray) -> None:
        """Add vectors: `batch` is [..., dim] (all leading axes are samples)."""
        batch = np.asarray(batch, dtype=np.float64)
        batch = batch.reshape(-1, batch.shape[-1])
        if not np.all(np.isfinite(batch)):
            raise ValueError("RunningStats.update: batch holds NaN or infinite values")
        if self._sum is None:
            dim = batch.shape[1]
            self._sum, self._sum_sq = np.zeros(dim), np.zeros(dim)
            self._min, self._max = batch.min(0), batch.max(0)
            self._edges = np.stack([self._bin_edges(lo, hi) for lo, hi in zip(self._min, self._max, strict=True)])
            self._hist = np.zeros((dim, self.num_bins))
        elif batch.shape[1] != self._sum.shape[0]:
            raise ValueError(
                f"RunningStats.update: dimension {batch.shape[1]}, earlier batches had {self._sum.shape[0]}"
            )
        self._count += batch.shape[0]
        self._sum += batch.sum(0)
        self._sum_sq += np.square(batch).sum(0)
        new_min, new_max = np.minimum(self._min, batch.min(0)), np.maximum(self._max, batch.max(0))
        for d in np.nonzero((new_min < self._min) | (new_max > self._max))[0]:
            self._rebin(d, new_min[d], new_max[d])
        self._min, self._max = new_min, new_max
        for d in range(batch.shape[1]):
            self._hist[d] += np.histogram(batch[:, d], bins=self._edges[d])[0]

    def _bin_edges(self, lo: float, hi: float) -> np.ndarray:
        if hi - lo < 1e-10:
            lo, hi = lo - 1e-10, hi + 1e-10
        return np.linspace(lo, hi, self.num_bins + 1)

    def _rebin(self, d: int, lo: float, hi: float) -> None:
        old_edges, old_hist = self._edges[d], self._hist[d]
        centers = (old_edges[:-1] + old_edges[1:]) / 2
        self._edges[d] = self._bin_edges(lo, hi)
        self._hist[d] = np.histogram(centers, bins=self._edges[d], weights=old_hist)[0]

    def get_statistics(self) -> NormStats:
        if self._count < 2:
            raise ValueError(f"need at least 2 vectors to compute statistics, got {self._count}")
        mean = self._sum / self._count
        std = np.sqrt(np.maximum(0.0, self._sum_sq / self._count - np.square(mean)))
        q01, q99 = (self._quantile(q) for q in (0.01, 0.99))
        return NormStats(mean=mean, std=std, q01=q01, q99=q99)

    def _quantile(self, q: float) -> np.ndarray:
        out = np.empty(self._hist.shape[0])
        for d, (hist, edges) in enumerate(zip(self._hist, self._edges, strict=True)):
            cumulative = np.cumsum(hist)
            index = int(np.searchsorted(cumulative, q * cumulative[-1]))
            out[d] = edges[min(index + 1, len(edges) - 1)] if q > 0.5 else edges[index]
        return out


def serialize_json(norm_stats: Mapping[str, NormStats]) -> str:
    return json.dumps({"norm_stats": {key: stats.to_json() for key, stats in norm_stats.items()}}, indent=2)


def deserialize_json(data: str) -> dict[str, NormStats]:
    parsed = json.loads(data)
    if "norm_stats" not in parsed:
        raise ValueError("norm stats JSON has no top-level 'norm_stats' key")
    return {key: NormStats.from_json(value) for key, value in parsed["norm_stats"].items()}


def save(directory: str | os.PathLike[str], norm_stats: Mapping[str, NormStats]) -> pathlib.Path:
    """Write `<directory>/norm_stats.json` atomically (a crash never leaves a truncated file)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NORM_STATS_FILE
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as tmp:
        tmp.write(serialize_json(norm_stats))
    pathlib.Path(tmp.name).replace(path)
    return path


def load(directory: str | os.PathLike[str]) -> dict[str, NormStats]:
    """Read `<directory>/norm_stats.json`."""
    path = pathlib.Path(directory) / NORM_STATS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"norm stats file not found: {path}")
    try:
        return deserialize_json(path.read_text())
    except (ValueError, KeyError) as error:
        raise ValueError(f"{path}: {error}") from error
