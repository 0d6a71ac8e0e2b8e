"""What an engine loads from a model folder, checked before a model is staged and again by `verify`.

Two layouts cover the engines of this repository:

- `diffusers`: a pipeline folder, as `DiffusionPipeline.from_pretrained` reads it: `model_index.json` naming one
  sub-folder per component (`"vae": ["diffusers", "AutoencoderKLWan"]`); a component folder with a `config.json`
  is a model and needs its weights beside it; schedulers, tokenizers and processors have their own configs.
  Components set to `[null, null]` are optional and absent.
- `transformers`: a model folder, as `PreTrainedModel.from_pretrained` reads it: `config.json` and its weights.

Weights are `*.safetensors` or torch pickles (`*.bin`, `*.pt`, ...); a sharded checkpoint's `*.index.json` must
name only shards that are there. A catalogue entry adds the files its engine also reads (`ModelSpec.requires`,
e.g. a processor config).

`select_files` decides what is staged from a source (a hub repository or a directory): what the engine loads,
not everything published beside it. Our choices: hidden files (`.git*`, huggingface_hub's `.cache/`) are left
out; weights of other frameworks (ONNX, TensorFlow, Flax, Core ML) are left out; in a folder that has
safetensors, torch pickles (`pytorch_model.bin`, SAM2's original `*.pt`, `training_args.bin`) are left out,
since both libraries load the safetensors first; precision variants (`*.fp16.safetensors`) are left out where
the plain weights are there (the engines load the plain ones unless told `variant=`). READMEs and licences stay.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from pathlib import Path

from libs.modelstore.errors import LayoutError
from libs.modelstore.manifest import MANIFEST_NAME

LAYOUTS = ("diffusers", "transformers")
LAYOUT_HELP = {
    "diffusers": "a diffusers pipeline folder (model_index.json and one folder per component)",
    "transformers": "a transformers model folder (config.json and its weights)",
}
KEY_FILE = {"diffusers": "model_index.json", "transformers": "config.json"}

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
TORCH_PICKLES = (".bin", ".pt", ".pth", ".ckpt")
OTHER_FRAMEWORKS = (".onnx", ".onnx_data", ".h5", ".msgpack", ".tflite", ".ot", ".mlmodel")
_VARIANT = re.compile(r".+\.(fp16|bf16|fp32|non_ema|ema)\.(safetensors|bin)")
_VARIANT_INDEX = re.compile(r".+\.(safetensors|bin)\.index\.(fp16|bf16|fp32|non_ema|ema)\.json")


def list_files(root: str | os.PathLike[str]) -> list[str]:
    """Every regular file under root (following links, as loaders do), as sorted relative POSIX paths."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            if Path(dirpath, name).is_file():
                found.append(name if rel == "." else f"{rel}/{name}")
    return sorted(found)


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/"))


def select_files(paths: Iterable[str]) -> list[str]:
    """The files of a source that are staged (see the module docstring), sorted."""
    candidates = [
        p for p in paths if not _hidden(p) and p != MANIFEST_NAME and not p.lower().endswith(OTHER_FRAMEWORKS)
    ]
    by_folder: dict[str, list[str]] = defaultdict(list)
    for path in candidates:
        by_folder[posixpath.dirname(path)].append(path)
    keep = []
    for paths_here in by_folder.values():
        names = [posixpath.basename(p) for p in paths_here]
        plain = [n for n in names if n.endswith(WEIGHT_SUFFIXES) and not _VARIANT.fullmatch(n)]
        has_safetensors = any(n.endswith(".safetensors") for n in plain)
        for path, name in zip(paths_here, names, strict=True):
            if has_safetensors and (name.endswith(TORCH_PICKLES) or name.endswith(".bin.index.json")):
                continue
            if plain and (_VARIANT.fullmatch(name) or _VARIANT_INDEX.fullmatch(name)):
                continue
            keep.append(path)
    return sorted(keep)


def detect_layout(files: Collection[str]) -> str | None:
    """The layout a file list looks like (its key file at the top), or None."""
    for layout in LAYOUTS:
        if KEY_FILE[layout] in files:
            return layout
    return None


def missing_key_file(layout: str, files: Collection[str]) -> str | None:
    """A one-line problem when the layout's key file is not in the list (a check before downloading)."""
    key = KEY_FILE[layout]
    if key in files:
        return None
    other = detect_layout(files)
    hint = f"; it looks like {LAYOUT_HELP[other]}" if other else ""
    return f"no {key}{hint}"


def check_layout(
    root: str | os.PathLike[str],
    layout: str,
    requires: Iterable[str] = (),
    files: Collection[str] | None = None,
) -> None:
    """Raise LayoutError listing every problem when `root` is not what an engine of this layout loads.

    `files` are the folder's files that count (relative POSIX paths; default: `select_files` of what is there).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    root = Path(root)
    files = set(select_files(list_files(root)) if files is None else files)
    problem = missing_key_file(layout, files)
    if problem:
        problems = [problem]
    elif layout == "diffusers":
        problems = _diffusers_problems(root, files)
    else:
        problems = _config_problems(root, "config.json") + _weight_problems(root, files, "")
    problems += [f"{path}: missing (the engine reads it)" for path in requires if path not in files]
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise LayoutError(f"{root} is not {LAYOUT_HELP[layout]}: {shown}", problems)


def _read_json(root: Path, rel: str) -> tuple[object, str | None]:
    try:
        return json.loads((root / rel).read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{rel}: not readable JSON ({exc})"


def _config_problems(root: Path, rel: str) -> list[str]:
    value, problem = _read_json(root, rel)
    if problem:
        return [problem]
    return [] if isinstance(value, dict) else [f"{rel}: not a JSON object"]


def _weight_problems(root: Path, files: Collection[str], folder: str) -> list[str]:
    """Weights in `folder` (relative, "" = top), and every shard that an index names."""
    prefix = f"{folder}/" if folder else ""
    here = {f[len(prefix) :] for f in files if f.startswith(prefix) and "/" not in f[len(prefix) :]}
    problems = []
    for index in sorted(n for n in here if n.endswith(".index.json") or _VARIANT_INDEX.fullmatch(n)):
        value, problem = _read_json(root, prefix + index)
        if problem:
            problems.append(problem)
            continue
        weight_map = value.get("weight_map") if isinstance(value, dict) else None
        if not isinstance(weight_map, dict):
            problems.append(f"{prefix}{index}: no weight_map")
            continue
        missing = sorted(set(map(str, weight_map.values())) - here)
        if missing:
            problems.append(f"{prefix}{index}: names shards that are missing: {', '.join(missing[:3])}")
    if not any(n.endswith(WEIGHT_SUFFIXES) for n in here):
        problems.append(f"{prefix or './'}: no weights (*.safetensors or *.bin) beside {prefix}config.json")
    return problems


def _diffusers_problems(root: Path, files: Collection[str]) -> list[str]:
    index, problem = _read_json(root, "model_index.json")
    if problem:
        return [problem]
    if not isinstance(index, dict) or "_class_name" not in index:
        return ["model_index.json: no _class_name (not a diffusers pipeline index)"]
    problems = []
    for component, value in index.items():
        if component.startswith("_") or not isinstance(value, list) or len(value) != 2 or not all(value):
            continue  # metadata, a plain config value, or an optional component set to [null, null]
        inside = [f for f in files if f.startswith(f"{component}/")]
        if not inside:
            problems.append(f"{component}/: missing (model_index.json names {value[0]}.{value[1]})")
        elif f"{component}/config.json" in files:
            problems += _config_problems(root, f"{component}/config.json")
            problems += _weight_problems(root, files, component)
    return problems
