"""The whole-page utility simulator (issue 13, point 1): requests, the user who browses a page, brute-force optima,
logs for the AR teacher and drifting request streams for online RL. Deterministic by seed, vectorised torch."""

from recsys.rerank.simulator.calibration import calibration_report, percent_of_optimum
from recsys.rerank.simulator.logs import LoggedPages, log_pages
from recsys.rerank.simulator.optimum import (
    MAX_PAGES,
    all_pages,
    brute_force_optimum,
    capped_greedy_orders,
    feasible,
    random_orders,
    score_sort_orders,
    weighted_scores,
)
from recsys.rerank.simulator.stream import DriftingStream
from recsys.rerank.simulator.user import PageUser, UserParams
from recsys.rerank.simulator.world import Requests, WorldParams, generate_requests, with_taste

__all__ = [
    "MAX_PAGES",
    "DriftingStream",
    "LoggedPages",
    "PageUser",
    "Requests",
    "UserParams",
    "WorldParams",
    "all_pages",
    "brute_force_optimum",
    "calibration_report",
    "capped_greedy_orders",
    "feasible",
    "generate_requests",
    "log_pages",
    "percent_of_optimum",
    "random_orders",
    "score_sort_orders",
    "weighted_scores",
    "with_taste",
]
