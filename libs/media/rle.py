"""COCO run-length encoding of binary masks (the convention of pycocotools and of `kmono.common.v1.RleMask`).

A mask of height H and width W is flattened in column-major (Fortran) order, so pixel (y, x) sits at index
`x * H + y`. Its run lengths alternate starting with background: `counts[0]` zeros, `counts[1]` ones, ...,
summing to H * W (`counts[0]` is 0 when the first pixel is foreground).

Encoding goes through pycocotools (C, fast), which always produces the canonical form (no empty runs
after the first), so two equal masks have byte-identical compressed counts. Decoding of counts that come
from outside (files, protos) goes through `counts_from_string` / `decode_counts`, which check the run
lengths before anything is written: pycocotools' own decoder trusts them and writes past its buffer when
they sum to more than H * W. A run is at most H * W and each compressed value at most `MAX_VALUE_CHARS`
characters long (pycocotools writes at most 7 for any 32-bit run), so a short string can never name a huge
number: every malformed input is a ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

MAX_VALUE_CHARS = 8
"""Longest compressed value read: 8 characters hold 40 bits, more than any run of a 2**31-pixel mask."""


def encode_masks(masks: np.ndarray) -> list[bytes]:
    """Compressed COCO counts of each mask in `masks` (H, W, N) bool/uint8 (pycocotools `mask.encode`)."""
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape (H, W, N), got shape {masks.shape}")
    if masks.shape[2] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks, dtype=np.uint8))
    return [rle["counts"] for rle in rles]


def encode_mask(mask: np.ndarray) -> bytes:
    """Compressed COCO counts (ASCII bytes) of one (H, W) boolean mask."""
    return encode_masks(mask[:, :, None])[0]


def decode_mask(counts: bytes, height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of canonical compressed counts produced by `encode_mask` (trusted input)."""
    return mask_utils.decode({"size": [height, width], "counts": counts}).astype(bool)


def bbox_xywh(counts: bytes, height: int, width: int) -> tuple[int, int, int, int]:
    """Tight COCO box (x, y, w, h) of compressed counts, without decoding; (0, 0, 0, 0) when empty."""
    x, y, w, h = mask_utils.toBbox({"size": [height, width], "counts": counts})
    return int(x), int(y), int(w), int(h)


def counts_to_string(counts: Sequence[int]) -> bytes:
    """COCO's compressed string of uncompressed run lengths (the inverse of `counts_from_string`)."""
    out = bytearray()
    for i, run in enumerate(counts):
        x = int(run)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(c + 48)
    return bytes(out)


def counts_from_string(data: bytes | str) -> list[int]:
    """Uncompressed run lengths of a COCO compressed counts string; ValueError when it is malformed."""
    raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
    counts: list[int] = []
    p = 0
    while p < len(raw):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(raw):
                raise ValueError("truncated compressed RLE counts (last value has a continuation bit)")
            if k >= MAX_VALUE_CHARS:
                raise ValueError(
                    f"a compressed RLE value at offset {p} is longer than {MAX_VALUE_CHARS} characters"
                )
            c = raw[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character at offset {p} of compressed RLE counts")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise ValueError("compressed RLE counts decode to a negative run length")
        counts.append(x)
    return counts


def decode_counts(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of uncompressed run lengths, checking that they are valid for H x W."""
    try:
        runs = np.asarray(counts)
    except (ValueError, TypeError, OverflowError):
        raise ValueError("RLE counts must be a flat list of non-negative integers") from None
    if runs.size == 0:
        runs = runs.astype(np.int64)
    if runs.ndim != 1 or runs.dtype.kind not in "iu":
        raise ValueError("RLE counts must be a flat list of non-negative integers")
    if runs.size and runs.min() < 0:
        raise ValueError("RLE counts must be non-negative")
    if runs.size and int(runs.max()) > height * width:
        raise ValueError(f"an RLE run is longer than height * width = {height * width}")
    runs = runs.astype(np.int64)
    total = int(runs.sum())  # no overflow: at most len(runs) * H * W
    if total != height * width:
        raise ValueError(
            f"RLE counts sum to {total}, expected height * width = {height} * {width} = {height * width}"
        )
    values = (np.arange(runs.size) % 2).astype(bool)
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T


def decode_untrusted(counts: bytes | str | Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode compressed (bytes/str) or uncompressed (list of ints) counts from outside, validating them."""
    if isinstance(counts, bytes | str):
        counts = counts_from_string(counts)
    return decode_counts(counts, height, width)
