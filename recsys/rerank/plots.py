"""Pictures of the rerank evaluation: each reranker's % of the brute-force optimum, per layout (PNG)."""

from __future__ import annotations

from pathlib import Path


def plot_pages(table: dict, path: str | Path) -> Path:
    """Horizontal bars: mean % of optimum per reranker and layout, the spread as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layouts = [layout for layout in table if layout != "ptar"]
    names = [name for name in table[layouts[0]] if name != "optimum"]
    figure, axis = plt.subplots(figsize=(8, 0.5 + 0.45 * len(names) * len(layouts)))
    height = 0.8 / len(layouts)
    for offset, layout in enumerate(layouts):
        means = [table[layout][name]["pct"][0] for name in names]
        spreads = [table[layout][name]["pct"][1] for name in names]
        rows = [index + offset * height for index in range(len(names))]
        axis.barh(rows, means, height=height, xerr=spreads, label=layout)
    axis.set_yticks([index + 0.4 - height / 2 for index in range(len(names))], names)
    axis.invert_yaxis()
    axis.axvline(100, color="black", linewidth=0.8)
    axis.set_xlabel("% of the brute-force optimum (mean utility ratio)")
    axis.set_xlim(left=min(40.0, axis.get_xlim()[0]))
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
