"""The rerankers of Dual-Rerank: score-and-sort, the AR teacher, the NAR student, the page evaluator, their
decoders and their model folder.

from recsys.rerank.models import NARStudent, greedy, sample, load_model_folder
"""

from recsys.rerank.models.config import TINY, RerankModelConfig
from recsys.rerank.models.decoding import (
    UNAVAILABLE,
    Decoded,
    assignment,
    available,
    check_feasible,
    chosen_log_probs,
    contrastive,
    greedy,
    page_capacity,
    sample,
    sample_sequentially,
    step_log_probs,
)
from recsys.rerank.models.encoder import CandidateEncoder, item_inputs, weighted_scores
from recsys.rerank.models.evaluator import PageEvaluator
from recsys.rerank.models.folder import RerankModels, load_model_folder, new_models, save_model_folder
from recsys.rerank.models.score_sort import ScoreAndSort
from recsys.rerank.models.student import NARStudent
from recsys.rerank.models.teacher import ARTeacher, TeacherState

__all__ = [
    "TINY",
    "UNAVAILABLE",
    "ARTeacher",
    "CandidateEncoder",
    "Decoded",
    "NARStudent",
    "PageEvaluator",
    "RerankModelConfig",
    "RerankModels",
    "ScoreAndSort",
    "TeacherState",
    "assignment",
    "available",
    "check_feasible",
    "chosen_log_probs",
    "contrastive",
    "greedy",
    "item_inputs",
    "load_model_folder",
    "new_models",
    "page_capacity",
    "sample",
    "sample_sequentially",
    "save_model_folder",
    "step_log_probs",
    "weighted_scores",
]
