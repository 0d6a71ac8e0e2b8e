"""`kmono rerank eval`: every reranker's page utility as % of the brute-force optimum, teacher–student agreement,
the MovieLens held-out pages, and LDRO against GRPO under drift — numbers over seeds, with the spread.

Pages: n = 8 candidates, m = 4 slots (1680 possible pages, so the optimum is exact), default utility options,
each layout separately. "% of optimum" is the ratio of means, mean utility(model pages) / mean utility(optimal
pages), over the requests of one evaluation set; the spread is the std over (model folder × evaluation seed)
runs. Evaluation requests are drawn with seeds far from the training ones (`EVAL_SEED_BASE`).

PTAR (teacher–student agreement rate): the share of slots where the student's greedy page holds the same item
as the teacher's greedy page (position-wise); `ptar_page` the share of identical whole pages.

The issue's claims are checked in `claims()` and printed beside the numbers, with the papers' own figures
(NAR4Rec reports Recall@6 65.05%, Recall@10 73.16% on Kuaishou data — another metric on other data, printed for
reference only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.data.pages import LAYOUTS, PageBatch
from recsys.rerank.models import (
    RerankModels,
    ScoreAndSort,
    assignment,
    contrastive,
    greedy,
    load_model_folder,
)
from recsys.rerank.pipeline import SKD_STAGE
from recsys.rerank.simulator import brute_force_optimum, generate_requests, random_orders

logger = logging.getLogger(__name__)

EVAL_SEED_BASE = 1_000_000
PAPER_FIGURES = {"NAR4Rec Recall@6 (Kuaishou)": 65.05, "NAR4Rec Recall@10 (Kuaishou)": 73.16}

Decoder = Callable[[PageBatch], torch.Tensor]
"""A page maker: a batch -> orders long [B, m]."""


@dataclass
class Trained:
    """A trained folder: the LDRO student's models, and the student before LDRO (after SKD)."""

    models: RerankModels
    skd_student: torch.nn.Module

    @classmethod
    def load(cls, folder: Path) -> Trained:
        models = load_model_folder(folder)
        skd = folder / SKD_STAGE
        skd_student = load_model_folder(skd).student if skd.exists() else models.student
        return cls(models, skd_student)


def decoders(trained: Trained, seed: int) -> dict[str, Decoder]:
    """Every page maker of the table, in display order (the optimum is added by `page_utilities`)."""
    generator = torch.Generator().manual_seed(seed)
    models = trained.models
    return {
        "random": lambda batch: random_orders(batch, 1, generator)[:, 0],
        "score-and-sort": lambda batch: greedy(ScoreAndSort(), batch).orders,
        "AR teacher": lambda batch: greedy(models.teacher, batch).orders,
        "NAR after SKD": lambda batch: greedy(trained.skd_student, batch).orders,
        "NAR after LDRO": lambda batch: greedy(models.student, batch).orders,
        "NAR after LDRO, assignment": lambda batch: assignment(models.student, batch).orders,
        "NAR after LDRO, contrastive": lambda batch: contrastive(models.student, batch).orders,
    }


@torch.inference_mode()
def page_utilities(trained: Trained, batch: PageBatch, truth, seed: int) -> dict[str, float]:
    """Mean true utility of each decoder's pages and of the optimal pages on one evaluation set."""
    _, optimum = brute_force_optimum(batch, truth)
    values = {
        name: float(truth.utility(make(batch)[:, None]).mean())
        for name, make in decoders(trained, seed).items()
    }
    values["optimum"] = float(optimum.mean())
    return values


@torch.inference_mode()
def ptar(trained: Trained, batch: PageBatch) -> dict[str, float]:
    teacher = greedy(trained.models.teacher, batch).orders
    result = {}
    for name, student in (("after SKD", trained.skd_student), ("after LDRO", trained.models.student)):
        pages = greedy(student, batch).orders
        result[f"ptar {name}"] = float((pages == teacher).float().mean())
        result[f"ptar_page {name}"] = float((pages == teacher).all(dim=1).float().mean())
    return result


def simulator_table(
    folders: list[Path], *, seeds: tuple[int, ...] = (0, 1, 2), requests: int = 1000, options: str = "default"
) -> dict:
    """{layout: {decoder: {"utility": (mean, std), "pct": (mean, std)}}, "ptar": {...}} over folders × seeds."""
    runs: dict[str, dict[str, list[float]]] = {layout: {} for layout in LAYOUTS}
    agreement: dict[str, list[float]] = {}
    for folder in folders:
        trained = Trained.load(folder)
        for seed in seeds:
            for layout in LAYOUTS:
                made = generate_requests(
                    requests, 8, 4, seed=EVAL_SEED_BASE + seed, layout=layout, options=options
                )
                values = page_utilities(trained, made.batch, made.user, seed)
                _collect(runs[layout], values)
                for name, value in ptar(trained, made.batch).items():
                    agreement.setdefault(name, []).append(value)
    table = {layout: _summarise(per) for layout, per in runs.items()}
    table["ptar"] = {name: _spread(values) for name, values in agreement.items()}
    return table


def movielens_table(folders: list[Path], *, seeds: tuple[int, ...] = (0, 1, 2), pages: int = 1000) -> dict:
    """The same decoders on the MovieLens-100k held-out pages (preferences the simulator did not plant)."""
    from recsys.data.movielens_pages import movielens_pages

    runs: dict[str, dict[str, list[float]]] = {layout: {} for layout in LAYOUTS}
    for folder in folders:
        trained = Trained.load(folder)
        for seed in seeds:
            for layout in LAYOUTS:
                held_out = movielens_pages(pages, seed=seed, layout=layout)
                _collect(runs[layout], page_utilities(trained, held_out.batch, held_out.truth, seed))
    return {layout: _summarise(per) for layout, per in runs.items()}


def claims(table: dict) -> list[tuple[str, bool]]:
    """The issue's "done when" points on the simulator's pages, per layout (mean % of optimum)."""
    checks = []
    for layout in LAYOUTS:
        pct = {name: row["pct"][0] for name, row in table[layout].items()}
        teacher, skd, ldro = pct["AR teacher"], pct["NAR after SKD"], pct["NAR after LDRO"]
        sort = pct["score-and-sort"]
        checks += [
            (
                f"{layout}: NAR after SKD >= 98% of the AR teacher ({skd / teacher:.1%})",
                skd >= 0.98 * teacher,
            ),
            (f"{layout}: NAR after LDRO beats the teacher ({ldro:.1f}% vs {teacher:.1f}%)", ldro > teacher),
            (f"{layout}: teacher >= 95% of optimum ({teacher:.1f}%)", teacher >= 95),
            (f"{layout}: NAR after SKD >= 95% of optimum ({skd:.1f}%)", skd >= 95),
            (f"{layout}: NAR after LDRO >= 95% of optimum ({ldro:.1f}%)", ldro >= 95),
            (
                f"{layout}: NAR after LDRO clearly above score-and-sort ({ldro:.1f}% vs {sort:.1f}%, "
                f"beyond the spread)",
                ldro - table[layout]["NAR after LDRO"]["pct"][1]
                > sort + table[layout]["score-and-sort"]["pct"][1],
            ),
        ]
    return checks


def _collect(per: dict[str, list[float]], values: dict[str, float]) -> None:
    """Append one run's utilities and % of optimum (ratio of means) per decoder."""
    for name, value in values.items():
        per.setdefault(name, []).append(value)
        per.setdefault(f"{name}%", []).append(100.0 * value / values["optimum"])


def _summarise(per: dict[str, list[float]]) -> dict[str, dict[str, tuple[float, float]]]:
    names = [name for name in per if not name.endswith("%")]
    return {name: {"utility": _spread(per[name]), "pct": _spread(per[f"{name}%"])} for name in names}


def _spread(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def drift_comparison(
    folder: Path, *, seeds: tuple[int, ...] = (0, 1, 2), steps: int = 300, progress: bool = True
) -> dict:
    """LDRO against GRPO from the folder's SKD student on drifting streams (`training.drift`), 3 phases, with
    `drift.DRIFT_CONFIGS` (LDRO anchored to this SKD student, GRPO textbook). The folder is read once; every run
    starts from its own copy of the student, which is also LDRO's anchor."""
    import copy

    from recsys.rerank.training.drift import compare_under_drift

    student = Trained.load(folder).skd_student
    return compare_under_drift(
        lambda seed: copy.deepcopy(student).requires_grad_(True), seeds, steps, progress=progress
    )
