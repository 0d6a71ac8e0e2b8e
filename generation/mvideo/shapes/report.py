"""The result of `kmono mvideo eval`: its metrics, a readable table, the one-line summary and a family plot.

    report.summary_line()    # "miou_masked=0.6537 miou_unmasked=0.0063 color_acc=1.0000 miou_frame=... bg_noise=..."
    report.metrics()         # flat dict for metrics.json: today's keys, the new ones, "family/<F>/<metric>"
    save_plots(report, out)  # families.png: per-family per-frame mIoU (and pair-union mIoU) as bars

What each number means is the evaluation protocol (`generation.mvideo.shapes.evaluation` docstring). A metric
whose generations were skipped (`EvalConfig(extras=False)`, no multi-object sample for binding) is None and is
left out of `metrics()` and the summary line; one with nothing to average is NaN.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generation.mvideo.defaults.engine_file import TEXT_ONLY_LAYOUT, TEXT_ONLY_MODEL
from generation.mvideo.shapes.world import ShapesSample

SUMMARY_KEYS = (
    "miou_frame",
    "miou_pair_union",
    "miou_shifted",
    "iou_original_place",
    "binding_acc",
    "text_color_acc",
    "text_presence",
    "miou_mask_only",
    "bg_noise",
)
"""The keys the summary line appends after today's three (then each family's per-frame mIoU)."""

FAMILY_KEYS = ("miou_frame", "miou_pair_union", "color_acc")
"""What is reported per held-out motion family."""

_MEANINGS = {
    "miou_frame": "per-frame mIoU with masks",
    "miou_pair_union": "per-frame mIoU vs the frame pair's union",
    "miou_shifted": "per-frame mIoU, masks shifted 7-10 px",
    "iou_original_place": "IoU with the pre-shift place (want ~0)",
    "binding_acc": "colour accuracy, slot order shuffled",
    "text_color_acc": "text only: colour accuracy",
    "text_presence": "text only: object present (frames)",
    "miou_mask_only": "mask only (prompt ''): per-frame mIoU",
    "bg_noise": "background RMS noise (1/255)",
}


@dataclass
class EvalReport:
    """Metrics (see the evaluation module docstring) and the videos behind the main ones."""

    miou_masked: float
    miou_unmasked: float
    miou_random_masks: float
    miou_color_masked: float
    miou_color_unmasked: float
    color_acc: float
    color_acc_unmasked: float
    num_samples: int
    samples: list[ShapesSample] = field(default_factory=list, repr=False)
    masked: np.ndarray | None = field(default=None, repr=False)  # (N, T, H, W, 3) float in [0, 1]
    unmasked: np.ndarray | None = field(default=None, repr=False)
    miou_frame: float | None = None
    miou_pair_union: float | None = None
    text_color_acc: float | None = None
    text_presence: float | None = None
    text_presence_unmasked: float | None = None
    text_only: str = TEXT_ONLY_MODEL
    """How `text_color_acc` / `text_presence` were measured: "model" (mask dropped) or "layout" (planned masks)."""
    text_only_videos: np.ndarray | None = field(default=None, repr=False)
    bg_noise: float | None = None
    miou_shifted: float | None = None
    iou_original_place: float | None = None
    binding_acc: float | None = None
    binding_with_labels: bool = True
    """False when the pipeline takes no `mask_labels`: binding_acc then measures slot order alone."""
    miou_mask_only: float | None = None
    families: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per held-out motion family: {"miou_frame", "miou_pair_union", "color_acc", "num_samples"}."""

    def extra_metrics(self) -> dict[str, float]:
        """The new metrics that were measured, in `SUMMARY_KEYS` order, then per family."""
        out = {k: float(getattr(self, k)) for k in SUMMARY_KEYS if getattr(self, k) is not None}
        for name, scores in self.families.items():
            out.update({f"family/{name}/{k}": float(scores[k]) for k in FAMILY_KEYS})
        return out

    def metrics(self) -> dict[str, float]:
        return {
            "miou_masked": self.miou_masked,
            "miou_unmasked": self.miou_unmasked,
            "miou_random_masks": self.miou_random_masks,
            "miou_color_masked": self.miou_color_masked,
            "miou_color_unmasked": self.miou_color_unmasked,
            "color_acc": self.color_acc,
            "color_acc_unmasked": self.color_acc_unmasked,
            **(
                {}
                if self.text_presence_unmasked is None
                else {"text_presence_unmasked": self.text_presence_unmasked}
            ),
            "num_samples": float(self.num_samples),
            **self.extra_metrics(),
        }

    def table(self) -> str:
        rows = [
            ("", "with masks", "mask dropped"),
            ("mIoU (colour-agnostic)", f"{self.miou_masked:.4f}", f"{self.miou_unmasked:.4f}"),
            (
                "mIoU (by captioned colour)",
                f"{self.miou_color_masked:.4f}",
                f"{self.miou_color_unmasked:.4f}",
            ),
            ("prompt-colour accuracy", f"{self.color_acc:.4f}", f"{self.color_acc_unmasked:.4f}"),
            ("mIoU vs another sample's masks", f"{self.miou_random_masks:.4f}", "-"),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{a:<{width}}  {b:>12}  {c:>12}" for a, b, c in rows]
        extras = [(k, v) for k, v in self.extra_metrics().items() if not k.startswith("family/")]
        if extras:
            lines.append("")
            for key, value in extras:
                note = _MEANINGS[key]
                if key == "binding_acc" and not self.binding_with_labels:
                    note += " (no mask_labels: slot order only)"
                if key.startswith("text_"):
                    note += " (planned layout)" if self.text_only == TEXT_ONLY_LAYOUT else " (mask dropped)"
                lines.append(f"{key:<20} {value:>8.4f}  {note}")
        if self.families:
            lines.append("")
            lines.append(
                f"{'motion family':<14} {'mIoU frame':>10} {'pair union':>10} {'colour acc':>10} {'n':>4}"
            )
            for name, s in self.families.items():
                lines.append(
                    f"{name:<14} {s['miou_frame']:>10.4f} {s['miou_pair_union']:>10.4f} "
                    f"{s['color_acc']:>10.4f} {int(s['num_samples']):>4}"
                )
        return "\n".join(lines)

    def summary_line(self) -> str:
        head = f"miou_masked={self.miou_masked:.4f} miou_unmasked={self.miou_unmasked:.4f} color_acc={self.color_acc:.4f}"
        extras = self.extra_metrics()
        keys = [k for k in extras if not k.startswith("family/") or k.endswith("/miou_frame")]
        return " ".join([head, *(f"{k}={extras[k]:.4f}" for k in keys)])


def save_plots(report: EvalReport, out_dir: str | os.PathLike[str]) -> list[Path]:
    """families.png: per held-out motion family, per-frame mIoU and pair-union mIoU (bars), with the training
    motion's per-frame mIoU as a dashed line. Nothing (an empty list) when no family was evaluated."""
    if not report.families:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(report.families)
    x = np.arange(len(names))
    figure = Figure(figsize=(1.0 + 0.9 * len(names), 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(x - 0.2, [report.families[n]["miou_frame"] for n in names], 0.4, label="per-frame mIoU")
    axes.bar(
        x + 0.2, [report.families[n]["miou_pair_union"] for n in names], 0.4, label="vs frame-pair union"
    )
    if report.miou_frame is not None and not math.isnan(report.miou_frame):
        axes.axhline(report.miou_frame, color="black", linestyle="--", linewidth=1, label="training motion")
    axes.set_xticks(x, names, rotation=30, ha="right")
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("IoU")
    axes.set_title("held-out motion families (with masks)")
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "families.png"
    figure.savefig(path)
    return [path]
