"""A GGUF file through transformers, de-quantised once and cached as a normal safetensors HF directory.

    lm = load_gguf("/models/gemma-3-270m-q4_k_m.gguf")     # first time: convert (minutes), then load
    lm = load_gguf("/models/gemma-3-270m-q4_k_m.gguf")     # later: load the cached directory (seconds)

transformers reads a GGUF with `gguf_file=` by de-quantising every tensor to fp32 in Python (about 2 minutes
for Gemma 3 270M on 2 cores); the cached directory loads like any checkpoint. The cache entry is keyed by the
file's name, size and modification time, so a replaced file converts again; it is written to a temporary
directory and renamed into place, so a crash or a concurrent conversion never leaves a half-written entry.

Cache root: `$KMONO_CACHE_DIR/lm`, else `$XDG_CACHE_HOME/kmono/lm`, else `~/.cache/kmono/lm` (`lm_cache_dir`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from generation.dialogue.backends.transformers_lm import TransformersLM

logger = logging.getLogger(__name__)

# Written last into a converted directory: its presence means the entry is complete.
_DONE_MARKER = "kmono-converted-from-gguf.txt"


def lm_cache_dir() -> Path:
    """Where converted and assembled language models live (see the module docstring)."""
    if os.environ.get("KMONO_CACHE_DIR"):
        return Path(os.environ["KMONO_CACHE_DIR"]) / "lm"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "kmono" / "lm"
    return Path.home() / ".cache" / "kmono" / "lm"


def converted_dir_for(gguf_path: str | Path, cache_root: str | Path | None = None) -> Path:
    """The cache directory that holds (or will hold) `gguf_path` converted."""
    gguf_path = Path(gguf_path).resolve()
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(cache_root or lm_cache_dir()) / "hf" / f"{gguf_path.stem}-{key}"


def is_converted(gguf_path: str | Path, cache_root: str | Path | None = None) -> bool:
    return (converted_dir_for(gguf_path, cache_root) / _DONE_MARKER).exists()


def convert_gguf(gguf_path: str | Path, target: str | Path) -> Path:
    """De-quantise `gguf_path` to an fp32 HF directory at `target` (model + tokenizer), written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, target = Path(gguf_path).resolve(), Path(target)
    started = time.perf_counter()
    logger.info("converting %s to a cached HF directory (once; this can take minutes)", gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are de-quantised fp32 now; transformers still marks the model "quantized with gguf", which
    # save_pretrained refuses. Dropping the mark saves a plain checkpoint that loads without the gguf package.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / _DONE_MARKER).write_text(f"{gguf_path}\n")
    try:
        partial.rename(target)
    except OSError:  # another process finished first: its entry is as good as ours
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("converted %s in %.1f s", gguf_path.name, time.perf_counter() - started)
    return target


def cached_conversion(gguf_path: str | Path, cache_root: str | Path | None = None) -> Path:
    """The converted directory of `gguf_path`, converting it first if the cache does not hold it yet."""
    target = converted_dir_for(gguf_path, cache_root)
    if not (target / _DONE_MARKER).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(gguf_path, target)
    return target


def load_gguf(
    gguf_path: str | Path,
    *,
    cache_root: str | Path | None = None,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    name: str | None = None,
) -> TransformersLM:
    """`gguf_path` as a `TransformersLM`, loaded from the conversion cache (converting once)."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf_path}")
    lm = TransformersLM.from_pretrained(cached_conversion(gguf_path, cache_root), device=device, dtype=dtype)
    lm.name = name or gguf_path.stem
    return lm
