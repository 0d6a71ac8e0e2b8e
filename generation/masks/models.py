"""The two models of the mask extractor, behind two small protocols: a text-prompted box `Detector`
(GroundingDINO) and a video mask `Propagator` (SAM2), with real (`load_models`) and tiny (`tiny_models`) faces.

Both wrap transformers' own classes (`GroundingDinoForObjectDetection`, `Sam2VideoModel`,
`Sam2VideoInferenceSession`), which load the published checkpoints (IDEA-Research/grounding-dino-tiny,
facebook/sam2.1-hiera-tiny, ...). transformers' SAM2 processors need torchvision, which is not usable here,
so frames are prepared as SAM2's video processor does (resize to image_size x image_size, /255, ImageNet
mean/std) and low-resolution mask logits are upsampled with `F.interpolate` (to image_size, then to the
frame size: the two steps of `Sam2VideoVideoProcessor.post_process_masks`). GroundingDINO's image processor
is used in its PIL form (`GroundingDinoImageProcessorPil`), which needs no torchvision.

*Our* choices where Grounded-SAM-2 and the papers say nothing:

- Query normalisation: lower case, phrases split on "." with inner whitespace collapsed, empty phrases
  dropped, joined as "a. b." (GroundingDINO's own rule is lower + strip + trailing "."); an empty or
  whitespace-only query is a ValueError, as is one longer than the text encoder's `max_text_len` tokens
  (truncation would silently drop phrases).
- Box score is GroundingDINO's: the highest token probability of the query. A detection's label is the
  query *phrase* whose tokens reach the highest probability (GroundingDINO decodes the above-threshold
  tokens, which gives fragments like "car dog"); a detection none of whose phrase tokens exceeds
  `text_threshold` is dropped. Defaults box 0.35 / text 0.25 are GroundingDINO's README values.
- SAM2 masks from box prompts use a single mask output (as Grounded-SAM-2's `multimask_output=False`).
- Memory hygiene in a SAM2 session: after each frame, processed frames other than the current one, and
  non-conditioning outputs further than max(num_maskmem, max_object_pointers_in_encoder) frames from the
  current one, are dropped: SAM2 never reads them again, and keeping them grows memory with video length.
- Device/dtype: CUDA when available, else CPU; bfloat16 on CUDA, float32 on CPU unless told otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    BertTokenizerFast,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    PreTrainedTokenizerBase,
    Sam2VideoConfig,
    Sam2VideoInferenceSession,
    Sam2VideoModel,
    SwinConfig,
)

from generation.masks.defaults import BOX_THRESHOLD, GROUNDING_DINO_MODEL, SAM2_MODEL, TEXT_THRESHOLD

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GROUNDING_DINO",
    "DEFAULT_SAM2",
    "Detections",
    "Detector",
    "EncodedFrame",
    "GroundingDinoDetector",
    "MaskModels",
    "PropagatedMasks",
    "Propagator",
    "Sam2VideoPropagator",
    "load_models",
    "normalize_query",
    "query_phrases",
    "resolve_device",
    "tiny_grounding_dino_config",
    "tiny_models",
    "tiny_sam2_video_config",
    "tiny_tokenizer",
]

DEFAULT_GROUNDING_DINO = GROUNDING_DINO_MODEL
DEFAULT_SAM2 = SAM2_MODEL
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_OBJECT_SCORE_BIAS = 2.0


# -- queries ---------------------------------------------------------------------------------------------


def query_phrases(query: str | Sequence[str]) -> list[str]:
    """The phrases of a GroundingDINO query: lower case, split on ".", whitespace collapsed, empties dropped."""
    if isinstance(query, str):
        text = query
    elif isinstance(query, Sequence) and all(isinstance(q, str) for q in query):
        text = ".".join(query)
    else:
        raise ValueError(f"query must be a str or a sequence of str, got {type(query).__name__}")
    if not text.strip():
        raise ValueError("query is empty: give a text query such as 'a dog.' or 'person. car.'")
    phrases = [" ".join(part.split()) for part in text.lower().split(".")]
    phrases = [p for p in phrases if p]
    if not phrases:
        raise ValueError(f"query {text!r} has no phrase: give words such as 'a dog.' or 'person. car.'")
    return phrases


def normalize_query(query: str | Sequence[str]) -> str:
    """A query in GroundingDINO form: lower-case phrases each ending with '.' ("person. red car.")."""
    return " ".join(f"{p}." for p in query_phrases(query))


# -- data passed between the extractor and the models -----------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """Boxes found for a text query on one frame: `boxes` (N, 4) float32 pixel x0, y0, x1, y1."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        labels = tuple(str(label) for label in self.labels)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"got {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), ())

    @classmethod
    def concatenate(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            tuple(label for p in parts for label in p.labels),
        )


@dataclass(frozen=True)
class PropagatedMasks:
    """Masks of the objects of a propagation state on one frame.

    `logits` (N, H, W) float32 at frame size (mask = logits > 0); `scores` (N,) object presence in [0, 1].
    """

    object_ids: tuple[int, ...]
    logits: np.ndarray
    scores: np.ndarray

    @property
    def masks(self) -> np.ndarray:
        return self.logits > 0

    def select(self, keep: Sequence[int]) -> PropagatedMasks:
        """Only the objects whose id is in `keep` (order kept)."""
        wanted = set(keep)
        rows = [i for i, oid in enumerate(self.object_ids) if oid in wanted]
        return PropagatedMasks(tuple(self.object_ids[i] for i in rows), self.logits[rows], self.scores[rows])

    @classmethod
    def empty(cls, height: int, width: int) -> PropagatedMasks:
        return cls((), np.zeros((0, height, width), np.float32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class EncodedFrame:
    """A frame as a propagator prepared it (`data` is the propagator's own, e.g. image features)."""

    height: int
    width: int
    data: Any = field(repr=False)


@runtime_checkable
class Detector(Protocol):
    """Finds boxes for a normalised text query in one RGB uint8 (H, W, 3) frame."""

    def detect(
        self, image: np.ndarray, query: str, *, box_threshold: float, text_threshold: float
    ) -> Detections: ...


@runtime_checkable
class Propagator(Protocol):
    """Segments boxes in a frame and propagates object masks through frames (SAM2's video predictor shape).

    A *state* is the propagator's per-session memory; the extractor only creates and passes it around.
    `track` must be called on frames in order (increasing, or decreasing with reverse=True) and returns
    every object of the state; objects get their first masks through `add_masks` on the frame being tracked.
    """

    def encode(self, frame: np.ndarray) -> EncodedFrame: ...

    def segment_boxes(self, frame: EncodedFrame, boxes: np.ndarray) -> np.ndarray:
        """(N, H, W) bool masks of (N, 4) pixel boxes on this frame."""
        ...

    def new_state(self, height: int, width: int) -> Any: ...

    def add_masks(self, state: Any, frame_idx: int, masks: Mapping[int, np.ndarray]) -> None: ...

    def track(
        self, state: Any, frame_idx: int, frame: EncodedFrame, *, reverse: bool = False
    ) -> PropagatedMasks: ...


# -- devices ----------------------------------------------------------------------------------------------


def resolve_device(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """(device, dtype): CUDA if available else CPU; bfloat16 on CUDA, float32 elsewhere, unless given."""
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    return dev, dtype


# -- GroundingDINO ----------------------------------------------------------------------------------------


class GroundingDinoDetector:
    """`Detector` over transformers' GroundingDinoForObjectDetection (real or tiny)."""

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: GroundingDinoImageProcessorPil,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] = DEFAULT_GROUNDING_DINO,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> GroundingDinoDetector:
        from transformers import AutoTokenizer

        dev, dt = resolve_device(device, dtype)
        model = GroundingDinoForObjectDetection.from_pretrained(name_or_path, dtype=dt).to(dev)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        image_processor = GroundingDinoImageProcessorPil.from_pretrained(name_or_path)
        return cls(model, tokenizer, image_processor)

    @property
    def max_text_len(self) -> int:
        return int(self.model.config.max_text_len)

    def _tokenize(self, query: str) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """Token tensors and, per token, the index of its query phrase (-1 for special tokens and '.')."""
        phrase_of_char = np.full(len(query), -1, dtype=np.int64)
        phrase, start = 0, 0
        for i, ch in enumerate(query):
            if ch == ".":
                phrase_of_char[start:i] = phrase
                phrase, start = phrase + 1, i + 1
        encoded = self.tokenizer(query, return_tensors="pt", return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping")[0].tolist()
        if len(offsets) > self.max_text_len:
            raise ValueError(
                f"query {query!r} is {len(offsets)} tokens long; the detector reads at most {self.max_text_len}"
            )
        token_phrase = np.array(
            [phrase_of_char[a] if b > a and query[a:b].strip(" .") else -1 for a, b in offsets],
            dtype=np.int64,
        )
        return dict(encoded), token_phrase

    @torch.inference_mode()
    def detect(
        self,
        image: np.ndarray,
        query: str,
        *,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
    ) -> Detections:
        query = normalize_query(query)
        phrases = query_phrases(query)
        height, width = image.shape[:2]
        text_inputs, token_phrase = self._tokenize(query)
        pixels = self.image_processor(images=image, return_tensors="pt")
        device, dtype = self.model.device, self.model.dtype
        outputs = self.model(
            pixel_values=pixels["pixel_values"].to(device, dtype),
            pixel_mask=pixels["pixel_mask"].to(device),
            **{k: v.to(device) for k, v in text_inputs.items()},
        )
        probs = outputs.logits[0].float().sigmoid().cpu().numpy()  # (num_queries, max_text_len)
        boxes = outputs.pred_boxes[0].float().cpu().numpy()  # (num_queries, 4) normalised cx, cy, w, h
        scores = probs.max(axis=1)
        token_probs = probs[:, : len(token_phrase)]  # (num_queries, num_tokens)

        keep_boxes, keep_scores, keep_labels = [], [], []
        for q in np.nonzero(scores > box_threshold)[0]:
            phrase_best = [
                token_probs[q, token_phrase == p].max(initial=0.0) for p in range(len(phrases))
            ]  # best token probability per phrase
            best = int(np.argmax(phrase_best))
            if phrase_best[best] <= text_threshold:
                continue
            cx, cy, w, h = boxes[q]
            box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * [width, height, width, height]
            keep_boxes.append(np.clip(box, 0, [width, height, width, height]))
            keep_scores.append(scores[q])
            keep_labels.append(phrases[best])
        if not keep_boxes:
            return Detections.empty()
        return Detections(np.stack(keep_boxes), np.asarray(keep_scores), tuple(keep_labels))


# -- SAM2 -------------------------------------------------------------------------------------------------


class Sam2VideoPropagator:
    """`Propagator` over transformers' Sam2VideoModel, one `Sam2VideoInferenceSession` per state."""

    def __init__(self, model: Sam2VideoModel) -> None:
        self.model = model.eval()
        config = model.config
        self.image_size = int(config.image_size)
        self.history = max(int(config.num_maskmem), int(config.max_object_pointers_in_encoder))
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] = DEFAULT_SAM2,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Sam2VideoPropagator:
        dev, dt = resolve_device(device, dtype)
        return cls(Sam2VideoModel.from_pretrained(name_or_path, dtype=dt).to(dev))

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @torch.inference_mode()
    def encode(self, frame: np.ndarray) -> EncodedFrame:
        """Normalise a (H, W, 3) uint8 RGB frame and run the image encoder once (shared by all uses)."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB frame, got shape {frame.shape}")
        height, width = frame.shape[:2]
        x = (
            torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1).float()
        )  # (3, H, W)
        size = (self.image_size, self.image_size)
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[
            0
        ]  # (3, S, S)
        x = (x / 255.0 - self._mean.to(x.device)) / self._std.to(x.device)
        pixels = x.to(self.dtype)
        features = self.model.get_image_features(pixels[None], return_dict=True)
        data = {
            "pixel_values": pixels,
            "vision_feats": features.fpn_hidden_states,
            "vision_pos_embeds": features.fpn_position_encoding,
        }
        return EncodedFrame(height=height, width=width, data=data)

    def new_state(self, height: int, width: int) -> Sam2VideoInferenceSession:
        return Sam2VideoInferenceSession(
            video_height=height,
            video_width=width,
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=self.dtype,
            max_vision_features_cache_size=1,
        )

    def _run(
        self, state: Sam2VideoInferenceSession, frame_idx: int, frame: EncodedFrame, **kwargs: Any
    ) -> Any:
        state.cache.cache_vision_features(
            frame_idx,
            {
                "vision_feats": frame.data["vision_feats"],
                "vision_pos_embeds": frame.data["vision_pos_embeds"],
            },
        )
        return self.model(
            inference_session=state, frame_idx=frame_idx, frame=frame.data["pixel_values"], **kwargs
        )

    def _to_frame_size(self, low_res: torch.Tensor, frame: EncodedFrame) -> np.ndarray:
        """(N, 1, h, w) mask logits -> (N, H, W) float32 numpy at frame size."""
        size = (self.image_size, self.image_size)
        x = F.interpolate(low_res.float(), size=size, mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=(frame.height, frame.width), mode="bilinear", align_corners=False)
        return x[:, 0].cpu().numpy()

    def _add_new_inputs(self, state: Sam2VideoInferenceSession, object_ids: Sequence[int]) -> None:
        pending = list(state.obj_with_new_inputs)
        state.obj_with_new_inputs = pending + [oid for oid in object_ids if oid not in pending]

    @torch.inference_mode()
    def segment_boxes(self, frame: EncodedFrame, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, frame.height, frame.width), dtype=bool)
        state = self.new_state(frame.height, frame.width)
        scale = np.array(
            [self.image_size / frame.width, self.image_size / frame.height] * 2, dtype=np.float32
        )
        labels = torch.tensor(
            [[[2, 3]]], dtype=torch.int32
        )  # a box is two points: top-left 2, bottom-right 3
        ids = list(range(1, len(boxes) + 1))
        for oid, box in zip(ids, boxes * scale, strict=True):
            coords = torch.from_numpy(box.reshape(1, 1, 2, 2).copy())  # (1, 1, 2 points, xy)
            state.add_point_inputs(
                state.obj_id_to_idx(oid), 0, {"point_coords": coords, "point_labels": labels}
            )
        self._add_new_inputs(state, ids)
        out = self._run(state, 0, frame, run_mem_encoder=False)
        return self._to_frame_size(out.pred_masks, frame) > 0

    @torch.inference_mode()
    def add_masks(
        self, state: Sam2VideoInferenceSession, frame_idx: int, masks: Mapping[int, np.ndarray]
    ) -> None:
        size = (self.image_size, self.image_size)
        for oid, mask in masks.items():
            m = torch.from_numpy(np.asarray(mask, dtype=np.float32)).to(self.device)[
                None, None
            ]  # (1, 1, H, W)
            if m.shape[-2:] != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True)
                m = (m >= 0.5).float()
            obj_idx = state.obj_id_to_idx(int(oid))
            state.add_mask_inputs(obj_idx, frame_idx, m)
            state.remove_point_inputs(obj_idx, frame_idx)
        self._add_new_inputs(state, [int(oid) for oid in masks])

    @torch.inference_mode()
    def track(
        self, state: Sam2VideoInferenceSession, frame_idx: int, frame: EncodedFrame, *, reverse: bool = False
    ) -> PropagatedMasks:
        if state.get_obj_num() == 0:
            return PropagatedMasks.empty(frame.height, frame.width)
        out = self._run(state, frame_idx, frame, reverse=reverse)
        logits = self._to_frame_size(out.pred_masks, frame)
        scores = torch.sigmoid(out.object_score_logits.float().reshape(-1)).cpu().numpy()
        self._forget(state, frame_idx)
        return PropagatedMasks(tuple(int(i) for i in out.object_ids), logits, scores)

    def _forget(self, state: Sam2VideoInferenceSession, frame_idx: int) -> None:
        """Drop what SAM2 will not read again (see the module docstring): memory stays flat in video length."""
        for idx in [i for i in state.processed_frames or {} if i != frame_idx]:
            del state.processed_frames[idx]
        for obj_idx, outputs in state.output_dict_per_obj.items():
            non_cond = outputs["non_cond_frame_outputs"]
            for idx in [i for i in non_cond if abs(i - frame_idx) > self.history]:
                del non_cond[idx]
            tracked = state.frames_tracked_per_obj[obj_idx]
            for idx in [i for i in tracked if abs(i - frame_idx) > self.history]:
                del tracked[idx]


# -- model factories --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskModels:
    """A detector and a propagator that belong together."""

    detector: Detector
    propagator: Propagator


def load_models(
    grounding_dino: str | os.PathLike[str] = DEFAULT_GROUNDING_DINO,
    sam2: str | os.PathLike[str] = DEFAULT_SAM2,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MaskModels:
    """Real models from hub ids or local directories (`from_pretrained`)."""
    return MaskModels(
        detector=GroundingDinoDetector.from_pretrained(grounding_dino, device=device, dtype=dtype),
        propagator=Sam2VideoPropagator.from_pretrained(sam2, device=device, dtype=dtype),
    )


_TINY_WORDS = (
    "a an the of and with on in at left right small big red green blue yellow black white "
    "person man woman child people dog cat horse bird cow sheep car bus truck bike bicycle boat train "
    "ball chair table cup bottle phone tree flower hand face head shirt bag box toy circle square shape "
    "moving running walking jumping standing"
).split()


def tiny_tokenizer() -> BertTokenizerFast:
    """A BERT tokenizer built offline from a small lower-case vocabulary (other words become [UNK])."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","]
    vocab = {token: i for i, token in enumerate(specials + list(_TINY_WORDS))}
    # transformers 5: vocab= takes the dict; vocab_file= is ignored and would make every token [UNK].
    return BertTokenizerFast(vocab=vocab, do_lower_case=True)


def tiny_grounding_dino_config(vocab_size: int = 128) -> GroundingDinoConfig:
    """A GroundingDINO config that runs in ~0.05 s per 128 x 128 frame on CPU (see shared/TOOLCHAIN.md)."""
    backbone = SwinConfig(
        window_size=7, embed_dim=8, depths=[1] * 4, num_heads=[1] * 4, image_size=128, out_indices=[2, 3, 4]
    )
    text = {
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 8,
        "max_position_embeddings": 32,
    }
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=10,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )


def tiny_sam2_video_config() -> Sam2VideoConfig:
    """A SAM2 video config at 128 x 128: TOOLCHAIN.md's tiny config with one Hiera block per stage (windowed
    attention only), one two-way mask-decoder layer and 4 object pointers, about twice as fast on CPU."""
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    backbone = Sam2HieraDetConfig(
        hidden_size=12,
        image_size=128,
        patch_stride=4,
        blocks_per_stage=[1, 1, 1, 1],
        embed_dim_per_stage=[12, 24, 48, 96],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        global_attention_blocks=[],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
        fpn_hidden_size=128,
    )
    # memory_encoder_output_channels stays 64 and the hidden sizes are multiples of it (TOOLCHAIN.md).
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": 128, "image_size": 128},
        mask_decoder_config={
            "hidden_size": 128,
            "mlp_dim": 256,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": 128,
        },
        image_size=128,
        num_maskmem=3,
        max_object_pointers_in_encoder=4,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[8, 8],
        memory_encoder_hidden_size=128,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=256,
    )


def tiny_models(
    seed: int = 0, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> MaskModels:
    """Random-initialised tiny GroundingDINO + SAM2 (same seed, same weights; the global RNG is left alone)."""
    dev, dt = resolve_device(device, dtype)
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        detector_model = GroundingDinoForObjectDetection(
            tiny_grounding_dino_config(vocab_size=len(tokenizer))
        )
        sam2_model = Sam2VideoModel(tiny_sam2_video_config())
        # Random weights score every object as absent from the first tracked frame on, which would leave
        # the propagation paths untested: bias the object-score head towards "present" instead.
        with torch.no_grad():
            sam2_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(TINY_OBJECT_SCORE_BIAS)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 128})
    return MaskModels(
        detector=GroundingDinoDetector(detector_model.to(dev, dt), tokenizer, image_processor),
        propagator=Sam2VideoPropagator(sam2_model.to(dev, dt)),
    )
