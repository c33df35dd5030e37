"""Small tokenizer models made in-process (nothing is downloaded in tests)."""

from __future__ import annotations

from openpi_core.models.small_tokenizer import make_small_paligemma_tokenizer as make_paligemma_like_model

__all__ = ["make_paligemma_like_model"]
