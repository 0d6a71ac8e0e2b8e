"""Build a training manifest from a folder of captioned videos with the mask extractor (`kmono mvideo annotate`).

    entries = annotate_folder("clips/", MaskExtractor.tiny(), manifest="clips/manifest.jsonl")

Captions come from `captions.jsonl` in the folder (`{"video": "name.mp4", "caption": "..."}` per line, paths
relative to the folder) or, for videos it does not list, from a sidecar `<video stem>.txt`. Videos with no
caption are skipped (logged). Masks are written to `masks/<video stem>.<format>` (any libs.media codec) and the
manifest lists (video, caption, masks, object_ids).

Our choices:

- **Query from the caption** when none is given: the noun phrases that follow a determiner ("a", "the", "two",
  ...), cut at function words, common verbs and (after the first word) "-ing" words, at most three words each; "a red circle and
  a blue square" -> "red circle. blue square.". A heuristic (no tagger is installed); `--query` overrides it.
- **Slot order** (`object_ids`): objects in the order their label's phrase appears in the query, then by id, so
  slot k tends to be the k-th object the caption names.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generation.mvideo.training.data import ManifestEntry, write_manifest
from libs.media import save as save_masks

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".gif")
MASK_FORMATS = ("json", "npz", "pb", "zip")

_DETERMINERS = set(
    "a an the one two three four some another his her their its this that these those my your our "
    "several many".split()
)
_STOP = set(
    "and or but with without on in at of to from by for is are was were be being while as into onto "
    "over under near behind across through around along toward towards past up down left right then "
    "who which that".split()
)
_VERBS = set(
    "runs walks jumps moves flies swims rolls bounces slides sits stands plays goes comes turns falls "
    "rides drives dances eats drinks holds looks spins floats crosses climbs chases follows enters "
    "leaves run walk jump move fly".split()
)


def caption_query(caption: str) -> str:
    """The extractor query for a caption (module docstring); "" when it names nothing."""
    words = re.findall(r"[a-z][a-z'-]*|[,.;:!?]", caption.lower())
    phrases: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in _DETERMINERS:
            phrase = []
            j = i + 1
            while j < len(words) and len(phrase) < 3:
                w = words[j]
                if not w[0].isalpha() or w in _STOP or w in _VERBS or w in _DETERMINERS:
                    break
                if phrase and len(w) > 4 and w.endswith("ing"):  # "a dog running" (but "a running dog")
                    break
                phrase.append(w)
                j += 1
            if phrase and " ".join(phrase) not in phrases:
                phrases.append(" ".join(phrase))
            i = j
        else:
            i += 1
    return " ".join(f"{p}." for p in phrases)


def find_captioned_videos(folder: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """(video path, caption) for every video in `folder` (recursively) that has a caption, sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {root}")
    listed: dict[Path, str] = {}
    captions_file = root / "captions.jsonl"
    if captions_file.is_file():
        for lineno, line in enumerate(captions_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                listed[(root / item["video"]).resolve()] = str(item["caption"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(
                    f'{captions_file}:{lineno}: expected {{"video": ..., "caption": ...}} ({e})'
                ) from None
    found = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
        caption = listed.get(path.resolve())
        sidecar = path.with_suffix(".txt")
        if caption is None and sidecar.is_file():
            caption = sidecar.read_text().strip()
        if not caption:
            logger.warning("skipping %s: no caption (captions.jsonl or %s)", path, sidecar.name)
            continue
        found.append((path, caption))
    return found


def slot_order(objects: Any, query: str) -> list[int]:
    """Object ids ordered by the position of their label among the query's phrases, then by id."""
    phrases = [p.strip() for p in query.split(".") if p.strip()]

    def key(obj: Any) -> tuple[int, int]:
        label = (obj.label or "").strip().lower().rstrip(".")
        return (phrases.index(label) if label in phrases else len(phrases), obj.id)

    return [obj.id for obj in sorted(objects, key=key)]


def annotate_folder(
    folder: str | os.PathLike[str],
    extractor: Any,
    *,
    manifest: str | os.PathLike[str] | None = None,
    masks_dir: str | os.PathLike[str] | None = None,
    query: str | None = None,
    mask_format: str = "json",
    progress: Callable[[int, int, Path], None] | None = None,
    **extract_kwargs: Any,
) -> list[ManifestEntry]:
    """Extract masks for every captioned video in `folder`, write them and the manifest; returns the entries."""
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask format must be one of {MASK_FORMATS}, got {mask_format!r}")
    root = Path(folder)
    manifest_path = Path(manifest) if manifest is not None else root / "manifest.jsonl"
    masks_root = Path(masks_dir) if masks_dir is not None else manifest_path.parent / "masks"
    videos = find_captioned_videos(root)
    if not videos:
        raise ValueError(f"no captioned videos in {root} (videos: {', '.join(VIDEO_EXTENSIONS)})")
    masks_root.mkdir(parents=True, exist_ok=True)
    entries = []
    for n, (video, caption) in enumerate(videos, start=1):
        video_query = query or caption_query(caption)
        if not video_query:
            logger.warning("skipping %s: no noun phrase in caption %r (pass --query)", video, caption)
            continue
        seq = extractor.extract(str(video), video_query, **extract_kwargs)
        name = video.relative_to(root).with_suffix("").as_posix().replace("/", "__")
        masks_path = masks_root / f"{name}.{mask_format}"
        save_masks(seq, masks_path)
        entries.append(
            ManifestEntry(
                video=video,
                caption=caption,
                masks=masks_path,
                object_ids=tuple(slot_order(seq.objects, video_query)),
            )
        )
        if progress is not None:
            progress(n, len(videos), video)
    if not entries:
        raise ValueError(f"no video in {root} could be annotated")
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest_path, entries)
    return entries
