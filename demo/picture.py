"""Compose the README's `make demo` picture (docs/demo.png) from the side-by-side GIFs the demo wrote.

    .venv/bin/python -m demo --out out && .venv/bin/python -m demo.picture --out-dir out -o docs/demo.png

One row per demo video (drawn, edited, composed, bound, long, text: a prompt alone), four frames evenly spaced over each (for the long
video: the frames where its clips meet), each frame the generated frame beside its mask overlay, enlarged 4x
with nearest-neighbour so the pixels stay pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

ROWS = ("drawn", "edited", "composed", "bound", "long")
OPTIONAL_ROWS = ("text",)
"""Rows drawn when their GIF exists: the text-only row has masks (a planned layout) only on engines that plan one
(the shapes default; the tiny random engine of `--tiny-engine` does not)."""
FRAMES_PER_ROW = 4
SCALE = 4
GAP = 4  # pixels between cells, before scaling


def gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def picture(out_dir: Path) -> Image.Image:
    rows = []
    optional = [s for s in OPTIONAL_ROWS if (out_dir / f"{s}_side_by_side.gif").is_file()]
    for stem in (*ROWS, *optional):
        frames = gif_frames(out_dir / f"{stem}_side_by_side.gif")
        picks = np.linspace(0, len(frames) - 1, FRAMES_PER_ROW).round().astype(int)
        h = frames[0].shape[0]
        gap = np.full((h, GAP, 3), 255, np.uint8)
        cells = [part for i in picks for part in (frames[i], gap)][:-1]
        rows.append(np.concatenate(cells, axis=1))
        rows.append(np.full((GAP, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows[:-1], axis=0)
    return Image.fromarray(grid).resize((grid.shape[1] * SCALE, grid.shape[0] * SCALE), Image.NEAREST)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, default=Path("out"), help="where `make demo` wrote its GIFs")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/demo.png"))
    args = parser.parse_args(argv)
    missing = [s for s in ROWS if not (args.out_dir / f"{s}_side_by_side.gif").is_file()]
    if missing:
        parser.error(
            f"no side-by-side GIFs for {missing} in {args.out_dir}: run `python -m demo --out {args.out_dir}` first"
        )
    picture(args.out_dir).save(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
