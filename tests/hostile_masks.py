"""Hostile mask files for the CLI tests (tests/masks_cli_test.py, tests/video_cli_test.py): what an attacker could
hand to `kmono masks info|render|...` or `kmono video generate --masks`, each of which must end in one line
naming the file and exit code 2, never a traceback; and `run_capped`, which runs `kmono` in a process that cannot
map more than a few GiB (for the RLE bomb, whatever the loader of the day does with it)."""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from generation.masks.testing import moving_boxes
from libs.media import dumps
from libs.media.testing import patch_zip_headers

REPO_ROOT = Path(__file__).resolve().parents[1]

RLE_BOMB = "rle-bomb.json"
"""A 341-byte COCO JSON whose one mask decodes to 4 GiB: test it only in a process with a memory cap
(`run_capped`), whatever the loader of the day does with it."""


def hostile_mask_files(directory: Path) -> dict[str, Path]:
    """Mask files an attacker could hand to `kmono masks` or `kmono video generate --masks`, by name."""
    directory.mkdir(parents=True, exist_ok=True)
    png_zip = dumps(moving_boxes(), "zip")  # PNG id frames, stored (not deflated)
    with zipfile.ZipFile(io.BytesIO(png_zip)) as archive:
        first = archive.infolist()[0]
    bad_crc = bytearray(png_zip)
    data_at = first.header_offset + 30 + len(first.filename.encode()) + len(first.extra)
    bad_crc[data_at + first.compress_size // 2] ^= 0xFF
    fps_pair = io.BytesIO()
    np.savez(fps_pair, id_maps=np.zeros((2, 4, 4), np.int32), fps=np.array([8.0, 8.0]))
    bomb = json.loads(dumps(moving_boxes(), "json"))
    side = 1 << 16
    bomb.update(width=side, height=side, num_frames=1)
    bomb["frames"] = [
        {"frame_index": 0, "annotations": [
            {"object_id": 1, "segmentation": {"size": [side, side], "counts": [0, side * side]}}]}
    ]  # fmt: skip
    contents = {
        "empty.npz": b"",
        "corrupt.npz": b"PK\x03\x04" + bytes(range(256)) * 4,
        "fps-pair.npz": fps_pair.getvalue(),
        "bad-crc.zip": bytes(bad_crc),
        "encrypted.zip": patch_zip_headers(png_zip, flags=0x1),
        "unknown-method.zip": patch_zip_headers(png_zip, method=99),
        "nested.json": b'{"format": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        RLE_BOMB: json.dumps(bomb).encode(),
    }
    files = {}
    for name, data in contents.items():
        files[name] = directory / name
        files[name].write_bytes(data)
    return files


HOSTILE = [
    "empty.npz",
    "corrupt.npz",
    "fps-pair.npz",
    "bad-crc.zip",
    "encrypted.zip",
    "unknown-method.zip",
    "nested.json",
]
"""The hostile files safe to read in the test process (the RLE bomb is read by `run_capped`)."""

CLI = (
    "import sys; from libs.cli.main import main; from generation.masks.cli import register as masks; "
    "from services.video.cli import register as video; "
    "sys.exit(main(sys.argv[1:], registrars=[('masks', masks), ('video', video)]))"
)


def run_capped(argv: list[str], memory: int = 3 << 30) -> subprocess.CompletedProcess:
    """`kmono ARGV` in a process that cannot map more than `memory` bytes."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-c", CLI, *argv], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
        preexec_fn=cap,
    )  # fmt: skip


def assert_one_line(err: str, prefix: str) -> None:
    err = err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(prefix), err
