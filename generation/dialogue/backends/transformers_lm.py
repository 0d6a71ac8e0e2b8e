"""Any Hugging Face causal LM (hub id or directory, or a GGUF file through `gguf_file=`) as a streaming backend.

    lm = TransformersLM.from_pretrained("google/gemma-3-270m")            # bf16 on GPU, fp32 on CPU
    for piece in lm.stream("Q: capital of France?\\nA:", GenerationParams(stop=("\\n",))):
        ...

Vision-language models (a config that `AutoModelForImageTextToText` knows) load with their `AutoProcessor`;
`stream(..., images=[PIL.Image, ...])` passes the images through the processor on the first step (the prompt
must then hold the model's image placeholder where its processor asks for one). `accepts_images` says whether a
model takes images, `image_placeholder` what a prompt holds per image, `count_image_tokens` what they cost.

*Our choice*: an explicit KV-cache decoding loop, not `generate` in a worker thread with `TextIteratorStreamer`:
- cancel is checked in the caller's own thread before every token, so it stops within one token, and no
  worker thread is left running when a client goes away or the consumer drops the iterator;
- one piece per token (the streamer buffers up to a word), which the contract and time-to-first-token want;
- sampling draws from a `torch.Generator` seeded per call, so a seeded reply is reproducible even when
  several streams share the model (generate draws from the global RNG);
- the loop is transformers' own machinery all the same: the model's forward with its `past_key_values` cache
  (the model picks the cache type, e.g. sliding-window layers for Gemma 3) and transformers' logits warpers.
A prompt longer than the context window minus `max_new_tokens` keeps its last tokens (logged): the engine
budgets prompts with `count_tokens`, so this only guards against overflow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from generation.dialogue.backends.base import GenerationParams, LanguageModel, StopScanner
from libs.errors import FieldError

logger = logging.getLogger(__name__)

# Prompt tokens decoded in front of the reply so tokenizers that strip a leading space (SentencePiece with a
# dummy prefix) still give the reply's first space.
_DECODE_CONTEXT_TOKENS = 4
_FALLBACK_CONTEXT_WINDOW = 2048


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def _is_vision_language(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "")
    return model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and (
        model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    )


def _context_window(config: Any) -> int:
    for candidate in (config, getattr(config, "text_config", None)):
        value = getattr(candidate, "max_position_embeddings", None) if candidate is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return _FALLBACK_CONTEXT_WINDOW


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Sequence):
            ids.update(int(v) for v in value)
    return ids


class TransformersLM(LanguageModel):
    """A loaded causal (or vision-language) model and its tokenizer. Build it with `from_pretrained`."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, processor: Any = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.name = name
        self.context_window = _context_window(model.config)
        self.device = next(model.parameters()).device
        self.eos_ids = _eos_ids(model, tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_dir: str | Path,
        *,
        gguf_file: str | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        attn_implementation: str = "sdpa",
    ) -> TransformersLM:
        """Load a hub id or a local directory (with `gguf_file`, that GGUF inside it, de-quantised: slow, see
        `gguf_cache.load_gguf` for the cached conversion). Device: "cuda" when available; dtype: bf16 on GPU,
        fp32 on CPU."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        device = device or default_device()
        dtype = dtype or default_dtype(device)
        source = str(model_id_or_dir)
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        config = AutoConfig.from_pretrained(source, **extra)
        processor = None
        if _is_vision_language(config):
            from transformers import AutoModelForImageTextToText, AutoProcessor

            processor = AutoProcessor.from_pretrained(source, **extra)
            tokenizer = processor.tokenizer
            model_class = AutoModelForImageTextToText
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            model_class = AutoModelForCausalLM
        model = model_class.from_pretrained(
            source, dtype=dtype, attn_implementation=attn_implementation, **extra
        ).to(device)
        name = Path(gguf_file).stem if gguf_file else Path(source.rstrip("/")).name
        logger.info("loaded %s on %s (%s, %s)", name, device, dtype, model_class.__name__)
        return cls(model, tokenizer, name=name, processor=processor)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def accepts_images(self) -> bool:
        """Whether `stream` takes `images=`: a vision-language model loaded with its processor."""
        return self.processor is not None

    @property
    def image_placeholder(self) -> str:
        """What a prompt holds for each image (Gemma 3's begin-of-image token, else the processor's image
        token); the processor expands it into the image's tokens."""
        if self.processor is None:
            raise FieldError("images", f"{self.name} is a text-only model; it takes no images")
        return getattr(self.processor, "boi_token", None) or self.processor.image_token

    def count_image_tokens(self, images: Sequence[Any]) -> int:
        """Tokens the processor expands `images` into (the image tokens a prompt with them sends)."""
        if not images:
            return 0
        encoded = self.processor(
            text=self.image_placeholder * len(images), images=list(images), return_tensors="pt"
        )
        return int((encoded["input_ids"] == self.processor.image_token_id).sum())

    def _first_inputs(self, prompt: str, images: Sequence[Any] | None) -> dict[str, torch.Tensor]:
        if images:
            if self.processor is None:
                raise FieldError("images", f"{self.name} is a text-only model; it takes no images")
            encoded = self.processor(text=prompt, images=list(images), return_tensors="pt")
        else:
            encoded = self.tokenizer(prompt, return_tensors="pt")
        return {k: v.to(self.device) for k, v in encoded.items() if isinstance(v, torch.Tensor)}

    def _fit_to_window(self, inputs: dict[str, torch.Tensor], max_new_tokens: int) -> dict[str, torch.Tensor]:
        budget = self.context_window - max_new_tokens
        if budget < 1:
            raise FieldError(
                "max_new_tokens",
                f"must be below the context window ({self.context_window}), got {max_new_tokens}",
            )
        length = inputs["input_ids"].shape[1]
        if length <= budget:
            return inputs
        if "pixel_values" in inputs:
            raise FieldError("prompt", f"{length} tokens with images exceed the budget of {budget} tokens")
        logger.warning(
            "prompt of %d tokens cut to its last %d (context window %d)", length, budget, self.context_window
        )
        return {k: v[:, -budget:] for k, v in inputs.items()}

    def stream(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: threading.Event | None = None,
        *,
        images: Sequence[Any] | None = None,
    ) -> Iterator[str]:
        from transformers.generation import TemperatureLogitsWarper, TopPLogitsWarper

        inputs = self._fit_to_window(self._first_inputs(prompt, images), params.max_new_tokens)
        prompt_ids = inputs["input_ids"]
        context_ids = prompt_ids[0, -_DECODE_CONTEXT_TOKENS:].tolist()
        context_text = self.tokenizer.decode(context_ids, skip_special_tokens=True)
        warpers = []
        generator = None
        if params.temperature > 0:
            warpers = [TemperatureLogitsWarper(params.temperature)]
            if params.top_p < 1.0:
                warpers.append(TopPLogitsWarper(params.top_p))
            generator = torch.Generator(device=self.device)
            if params.seed is None:
                generator.seed()
            else:
                generator.manual_seed(params.seed)

        scanner = StopScanner(params.stop)
        reply_ids: list[int] = []
        emitted = ""
        cache = None
        step_inputs = inputs
        for _ in range(params.max_new_tokens):
            if cancel is not None and cancel.is_set():
                return
            with torch.inference_mode():
                # logits_to_keep=1: only the last position's logits (as generate does); a long prompt times a
                # 262k vocabulary would otherwise cost gigabytes.
                out = self.model(**step_inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache = out.past_key_values
                logits = out.logits[:, -1, :].float()  # (1, vocab)
                if generator is None:
                    token = logits.argmax(dim=-1, keepdim=True)  # (1, 1)
                else:
                    for warp in warpers:
                        logits = warp(prompt_ids, logits)
                    token = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (1, 1)
            token_id = int(token)
            if token_id in self.eos_ids:
                break
            reply_ids.append(token_id)
            step_inputs = {"input_ids": token}
            text = self.tokenizer.decode(context_ids + reply_ids, skip_special_tokens=True)
            text = text[len(context_text) :] if text.startswith(context_text) else text
            if text.endswith("\ufffd"):  # a character split across tokens: wait for its other bytes
                continue
            piece, emitted = text[len(emitted) :], text
            out_text, stopped = scanner.push(piece)
            if out_text:
                yield out_text
            if stopped:
                return
        if tail := scanner.flush():
            yield tail

    def complete(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: threading.Event | None = None,
        *,
        images: Sequence[Any] | None = None,
    ) -> str:
        return "".join(self.stream(prompt, params, cancel, images=images))

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
