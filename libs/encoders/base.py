"""What every encoder shares: a fingerprint for cache keys, device/dtype handling and cached batch maps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from libs.encoders.cache import CacheEntry, EmbeddingCache, cache_key, config_digest, weights_digest

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {name!r}") from None


def pick_device(device: str | None) -> str:
    """`None` or "auto" -> "cuda" when available, else "cpu"; anything else is passed through."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Encoder:
    """Base of the encoders: subclasses set `VERSION`, `name`, `model` and implement `_fingerprint_config`.

    `VERSION` is the version of *our* code path (preprocessing, pooling, output layout); bump it whenever a
    change alters the numbers an encoder produces, so that cached outputs of the old code are never served.
    The fingerprint is computed once, on first use; after changing weights or settings of a live encoder in
    place, call `refresh_fingerprint()`.
    """

    VERSION: ClassVar[str] = "1"
    name: str
    model: torch.nn.Module | None
    cache: EmbeddingCache | None

    def _fingerprint_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """SHA-256 of class, `VERSION`, name, configuration and weight bytes (computed once, on first use)."""
        fp = getattr(self, "_fingerprint", None)
        if fp is None:
            parts = {
                "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "version": self.VERSION,
                "name": self.name,
                "config": self._fingerprint_config(),
                "weights": weights_digest(self.model) if self.model is not None else None,
            }
            fp = config_digest(parts)
            self._fingerprint = fp
        return fp

    def refresh_fingerprint(self) -> None:
        """Forget the fingerprint (call after changing weights or settings in place)."""
        self._fingerprint = None

    def _cached_map(
        self,
        kind: str,
        items: Sequence[Any],
        digests: Sequence[str],
        compute: Callable[[list[Any]], list[CacheEntry]],
    ) -> list[CacheEntry]:
        """Outputs of `compute` for `items`, reading hits from `self.cache` and computing only the misses.

        Duplicate items within one call are computed once.
        """
        if self.cache is None:
            return compute(list(items))
        keys = [cache_key(self.fingerprint, kind, d) for d in digests]
        results: list[CacheEntry | None] = [None] * len(items)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in todo:
                todo[key].append(i)
                continue
            entry = self.cache.get(key)
            if entry is None:
                todo[key] = [i]
            else:
                results[i] = entry
        if todo:
            miss_keys = list(todo)
            computed = compute([items[todo[k][0]] for k in miss_keys])
            for key, entry in zip(miss_keys, computed, strict=True):
                self.cache.put(key, entry.arrays, entry.metadata)
                for i in todo[key]:
                    results[i] = entry
        return results  # type: ignore[return-value]


def as_float32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float32).numpy()
