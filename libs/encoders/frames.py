"""Image/frame embeddings from CLIP or SigLIP vision towers (transformers), with our own preprocessing.

    enc = FrameEncoder.from_pretrained("openai/clip-vit-base-patch32")     # or google/siglip-..., or a dir
    vecs = enc.encode(frames)                 # frames: (T, H, W, 3) uint8, PIL images or image paths -> (T, D)
    out = enc.encode_tokens(frames)           # out.tokens (T, P, H) patch tokens, out.pooled (T, D)
    idx = uniform_frame_indices(num_frames=90, k=3)   # [15, 45, 75]: MMBee's 3 frames per segment

Our choices:

- **Preprocessing without torchvision** (it does not load beside the CPU torch here): PIL bicubic resize
  (CLIP: shortest edge to `size.shortest_edge`, long edge `int(s * long / short)`, then a centre crop;
  SigLIP: straight to `size.height x size.width`), rescale by 1/255, normalise with the checkpoint's
  `image_mean` / `image_std` from `preprocessor_config.json` (the model family's defaults when it has none).
  This is the arithmetic of transformers' PIL image processors (tested equal to `CLIPImageProcessorPil`).
- **Pooled vector**: CLIP's projected `image_embeds` (the joint image-text space), SigLIP's attention-pooled
  `pooler_output` (its joint space), a plain `CLIPVisionModel`'s post-layernorm CLS; L2-normalised unless
  `normalize=False`. **Tokens**: the tower's `last_hidden_state` (CLIP: CLS + patches; SigLIP: patches).
- Frames must be RGB `uint8` (H, W, 3): other dtypes are rejected rather than guessed at (a float frame could
  be 0..1 or 0..255).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from libs.encoders.base import Encoder, as_float32, pick_device, torch_dtype
from libs.encoders.cache import CacheEntry, EmbeddingCache, content_digest
from libs.encoders.errors import DecodeError, EmptyInputError, InputTypeError, UnsupportedModelError
from libs.encoders.hub import checkpoint_name, optional_json

logger = logging.getLogger(__name__)

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
SUPPORTED_MODEL_TYPES = ("clip", "clip_vision_model", "siglip", "siglip_vision_model")

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
_PIL_RESAMPLE_IDS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}

FrameLike = np.ndarray | Image.Image | str | os.PathLike


def uniform_frame_indices(num_frames: int, k: int) -> list[int]:
    """k indices spread evenly over `num_frames` frames: the centre of each of k equal bins.

    With fewer frames than k, indices repeat (a 2-frame clip sampled at k=3 gives [0, 1, 1]), so a segment
    always yields exactly k frames.
    """
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    if num_frames < 1:
        raise EmptyInputError("frames", "no frames to sample from")
    return [min(num_frames - 1, int((i + 0.5) * num_frames / k)) for i in range(k)]


@dataclass(frozen=True)
class FramePreprocessor:
    """Resize (+ centre crop), rescale and normalise RGB uint8 frames to model pixel values."""

    shortest_edge: int | None = None  # resize the short side to this, keeping the aspect ratio
    size: tuple[int, int] | None = None  # or resize straight to (height, width)
    crop_size: tuple[int, int] | None = None  # then centre-crop to (height, width)
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    rescale_factor: float = 1 / 255
    resample: str = "bicubic"

    def __post_init__(self) -> None:
        if (self.shortest_edge is None) == (self.size is None):
            raise ValueError("FramePreprocessor: set exactly one of shortest_edge and size")
        if self.resample not in _RESAMPLE:
            raise ValueError(f"resample: expected one of {sorted(_RESAMPLE)}, got {self.resample!r}")

    @classmethod
    def for_model(
        cls, model_type: str, image_size: int, config: dict[str, Any] | None = None
    ) -> FramePreprocessor:
        """From a checkpoint's `preprocessor_config.json` (may be None) and the model family's defaults."""
        config = config or {}
        siglip = model_type.startswith("siglip")
        mean = tuple(config.get("image_mean") or (SIGLIP_MEAN if siglip else OPENAI_CLIP_MEAN))
        std = tuple(config.get("image_std") or (SIGLIP_STD if siglip else OPENAI_CLIP_STD))
        resample = _PIL_RESAMPLE_IDS.get(config.get("resample", 3), "bicubic")
        rescale = float(config.get("rescale_factor", 1 / 255))
        size = config.get("size")
        if isinstance(size, int):
            size = {"shortest_edge": size} if not siglip else {"height": size, "width": size}
        size = size or (
            {"height": image_size, "width": image_size} if siglip else {"shortest_edge": image_size}
        )
        crop = config.get("crop_size")
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        do_crop = config.get("do_center_crop", not siglip)
        crop_size = (int(crop["height"]), int(crop["width"])) if crop else (image_size, image_size)
        resize = (
            {"shortest_edge": int(size["shortest_edge"])}
            if "shortest_edge" in size
            else {"size": (int(size["height"]), int(size["width"]))}
        )
        return cls(
            **resize,
            crop_size=crop_size if do_crop else None,
            mean=mean,
            std=std,
            rescale_factor=rescale,
            resample=resample,
        )

    @property
    def output_size(self) -> tuple[int, int]:
        if self.crop_size is not None:
            return self.crop_size
        if self.size is not None:
            return self.size
        raise ValueError("output_size: a shortest-edge resize without a crop has no fixed size")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        s = self.shortest_edge
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(s * long / short)
        return (new_long, s) if width <= height else (s, new_long)

    def __call__(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, 3, H, W) float32 pixel values of N RGB uint8 (h, w, 3) frames."""
        out = [self._one(f) for f in frames]
        return torch.from_numpy(np.stack(out)) if out else torch.zeros((0, 3, *self.output_size))

    def _one(self, frame: np.ndarray) -> np.ndarray:
        height, width = self.resized_size(frame.shape[0], frame.shape[1])
        image = Image.fromarray(frame)
        if (height, width) != (frame.shape[0], frame.shape[1]):
            image = image.resize((width, height), resample=_RESAMPLE[self.resample])
        array = np.asarray(image)
        if self.crop_size is not None:
            array = _center_crop(array, self.crop_size)
        scaled = array.astype(np.float32) * np.float32(self.rescale_factor)  # (H, W, 3)
        normed = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(normed.transpose(2, 0, 1))  # (3, H, W)


def _center_crop(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    crop_h, crop_w = size
    h, w = array.shape[:2]
    if h < crop_h or w < crop_w:  # pad with zeros, centred, as transformers does
        padded = np.zeros((max(h, crop_h), max(w, crop_w), array.shape[2]), dtype=array.dtype)
        top, left = -(-(padded.shape[0] - h) // 2), -(-(padded.shape[1] - w) // 2)
        padded[top : top + h, left : left + w] = array
        array, h, w = padded, padded.shape[0], padded.shape[1]
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return array[top : top + crop_h, left : left + crop_w]


def load_image(path: str | os.PathLike[str], *, field: str = "frames") -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); `DecodeError` naming `field` when it is missing or corrupt."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).copy()
    except FileNotFoundError:
        raise DecodeError(field, f"no such image file: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(field, f"cannot decode image {path}: {exc}") from None


def as_rgb_frames(frames: Any, *, field: str = "frames") -> list[np.ndarray]:
    """Normalise frame inputs to a list of RGB uint8 (H, W, 3) arrays.

    Accepts a (T, H, W, 3) or (H, W, 3) uint8 array, PIL images, image file paths, or a sequence of these.
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim == 4:
            return [_check_frame(f, f"{field}[{i}]") for i, f in enumerate(frames)]
        return [_check_frame(frames, field)]
    if isinstance(frames, Image.Image | str | os.PathLike):
        frames = [frames]
    if not isinstance(frames, Sequence):
        raise InputTypeError(
            field, f"expected frames (array, PIL images or paths), got {type(frames).__name__}"
        )
    return [as_rgb_frame(frame, field=f"{field}[{i}]") for i, frame in enumerate(frames)]


def as_rgb_frame(frame: Any, *, field: str = "frame") -> np.ndarray:
    """One frame (array, PIL image or image path) as RGB uint8 (H, W, 3); errors name `field`."""
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if isinstance(frame, str | os.PathLike):
        return load_image(Path(frame), field=field)
    if isinstance(frame, np.ndarray):
        return _check_frame(frame, field)
    raise InputTypeError(field, f"expected an array, PIL image or path, got {type(frame).__name__}")


def _check_frame(frame: np.ndarray, name: str) -> np.ndarray:
    if frame.dtype != np.uint8:
        raise InputTypeError(
            name,
            f"expected RGB uint8 frames, got dtype {frame.dtype}; convert first, e.g. "
            "(x * 255).round().clip(0, 255).astype(np.uint8) for floats in [0, 1]",
        )
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputTypeError(name, f"expected shape (H, W, 3), got {tuple(frame.shape)}")
    return frame


@dataclass(frozen=True)
class FrameEncoderConfig:
    normalize: bool = True
    batch_size: int = 16
    device: str | None = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        torch_dtype(self.dtype)


@dataclass(frozen=True)
class FrameEncoding:
    """Outputs of N frames: pooled (N, D) and tokens (N, P, H)."""

    pooled: np.ndarray
    tokens: np.ndarray = field(repr=False)


class FrameEncoder(Encoder):
    """Pooled and token-level embeddings of frames from a CLIP or SigLIP vision tower."""

    VERSION = "1"

    def __init__(
        self,
        model: torch.nn.Module,
        preprocessor: FramePreprocessor | None = None,
        *,
        name: str = "frames",
        config: FrameEncoderConfig | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        model_type = getattr(model.config, "model_type", "")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"model: expected a CLIP or SigLIP vision model, got model_type={model_type!r}"
            )
        self.config = config or FrameEncoderConfig()
        self.name = name
        self.cache = cache
        self.family = "siglip" if model_type.startswith("siglip") else "clip"
        self.preprocessor = preprocessor or FramePreprocessor.for_model(model_type, model.config.image_size)
        self.device = pick_device(self.config.device)
        self.model = model.to(device=self.device, dtype=torch_dtype(self.config.dtype)).eval()
        self.forward_calls = 0

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        config: FrameEncoderConfig | None = None,
        cache: EmbeddingCache | None = None,
        **model_kwargs: Any,
    ) -> FrameEncoder:
        """Load the vision tower of a CLIP / SigLIP checkpoint (full model or vision-only; hub id or dir)."""
        from transformers import (
            AutoConfig,
            CLIPVisionConfig,
            CLIPVisionModel,
            CLIPVisionModelWithProjection,
            SiglipVisionModel,
        )

        full = AutoConfig.from_pretrained(name_or_path)
        model_type = full.model_type
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"{name_or_path}: model_type {model_type!r} is not a CLIP or SigLIP checkpoint "
                f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        if model_type == "clip":
            vision = CLIPVisionConfig(
                **(full.vision_config.to_dict() | {"projection_dim": full.projection_dim})
            )
            model = CLIPVisionModelWithProjection.from_pretrained(name_or_path, config=vision, **model_kwargs)
        elif model_type == "clip_vision_model":
            architectures = full.architectures or []
            model_cls = (
                CLIPVisionModelWithProjection
                if "CLIPVisionModelWithProjection" in architectures
                else CLIPVisionModel
            )
            model = model_cls.from_pretrained(name_or_path, **model_kwargs)
        else:
            vision = full.vision_config if model_type == "siglip" else full
            model = SiglipVisionModel.from_pretrained(name_or_path, config=vision, **model_kwargs)
        preprocessor = FramePreprocessor.for_model(
            model.config.model_type,
            model.config.image_size,
            optional_json(name_or_path, "preprocessor_config.json"),
        )
        return cls(model, preprocessor, name=checkpoint_name(name_or_path), config=config, cache=cache)

    @property
    def embedding_dim(self) -> int:
        """Size of the pooled vector."""
        if hasattr(self.model, "visual_projection"):
            return int(self.model.config.projection_dim)
        return int(self.model.config.hidden_size)

    @property
    def token_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_tokens(self) -> int:
        """Tokens per frame in `encode_tokens` (CLIP: patches + CLS; SigLIP: patches)."""
        patches = (self.model.config.image_size // self.model.config.patch_size) ** 2
        return patches + (1 if self.family == "clip" else 0)

    def _fingerprint_config(self) -> dict[str, Any]:
        return {
            "encoder": asdict(self.config) | {"device": None},
            "preprocessor": asdict(self.preprocessor),
            "model_config": self.model.config.to_dict(),
            "model_class": type(self.model).__name__,
        }

    def encode(self, frames: Any, *, field: str = "frames") -> np.ndarray:
        """Pooled embeddings (N, D) float32."""
        return self._run(frames, field, with_tokens=False).pooled

    def encode_tokens(self, frames: Any, *, field: str = "frames") -> FrameEncoding:
        """Token-level (N, P, H) and pooled (N, D) outputs."""
        return self._run(frames, field, with_tokens=True)

    def _run(self, frames: Any, field: str, *, with_tokens: bool) -> FrameEncoding:
        rgb = as_rgb_frames(frames, field=field)
        kind = "tokens" if with_tokens else "pooled"
        entries = self._cached_map(
            kind, rgb, [content_digest(f) for f in rgb], lambda items: self._compute(items, with_tokens)
        )
        pooled = (
            np.stack([e.arrays["pooled"] for e in entries])
            if entries
            else np.zeros((0, self.embedding_dim), np.float32)
        )
        if with_tokens:
            tokens = (
                np.stack([e.arrays["tokens"] for e in entries])
                if entries
                else np.zeros((0, self.num_tokens, self.token_dim), np.float32)
            )
        else:
            tokens = np.zeros((len(entries), 0, self.token_dim), np.float32)
        return FrameEncoding(pooled=pooled, tokens=tokens)

    @torch.inference_mode()
    def _compute(self, frames: list[np.ndarray], with_tokens: bool) -> list[CacheEntry]:
        out: list[CacheEntry] = []
        dtype = torch_dtype(self.config.dtype)
        for start in range(0, len(frames), self.config.batch_size):
            chunk = frames[start : start + self.config.batch_size]
            pixels = self.preprocessor(chunk).to(device=self.device, dtype=dtype)  # (B, 3, H, W)
            self.forward_calls += 1
            result = self.model(pixel_values=pixels)
            tokens = result.last_hidden_state  # (B, P, H)
            pooled = getattr(result, "image_embeds", None)
            if pooled is None:
                pooled = result.pooler_output if result.pooler_output is not None else tokens.mean(dim=1)
            pooled = pooled.float()  # (B, D)
            if self.config.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
            pooled_np = as_float32(pooled)
            tokens_np = as_float32(tokens) if with_tokens else None
            for row in range(len(chunk)):
                arrays = {"pooled": pooled_np[row]}
                if tokens_np is not None:
                    arrays["tokens"] = tokens_np[row]
                out.append(CacheEntry(arrays, {}))
        return out
