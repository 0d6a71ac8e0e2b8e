"""The rerank models' one config (transformers' tenet: one config object passed everywhere).

Every model of `recsys.rerank.models` (candidate encoder, AR teacher, NAR student, page evaluator) is built from a
`RerankModelConfig`; the input sizes are not in it because they come from the page contract
(`recsys.data.pages`: `FEATURES`, `OPTIONS`, `LAYOUTS`), so a saved config cannot disagree with the code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RerankModelConfig:
    """Sizes of the rerank transformers.

    d_model: width of every token (candidates, slots, placed items); heads: attention heads (divides d_model);
    layers: transformer blocks of each stack (encoder, decoder, evaluator); student_layers: the NAR student's
    blocks (its encoder and its slot stack; 0: `layers`) — a student lighter than its teacher is what
    distillation is for; max_slots: the largest page m the slot embeddings cover; dropout: inside attention and
    MLPs (training only)."""

    d_model: int = 64
    heads: int = 4
    layers: int = 2
    max_slots: int = 20
    dropout: float = 0.0
    student_layers: int = 0

    def __post_init__(self) -> None:
        if self.d_model <= 0 or self.heads <= 0 or self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a positive multiple of heads ({self.heads})")
        if self.layers < 1 or self.max_slots < 1:
            raise ValueError(f"layers ({self.layers}) and max_slots ({self.max_slots}) must be >= 1")
        if self.student_layers < 0:
            raise ValueError(f"student_layers ({self.student_layers}) must be >= 0 (0: layers)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout ({self.dropout}) must be in [0, 1)")

    @property
    def student(self) -> RerankModelConfig:
        """The NAR student's config: `layers` replaced by `student_layers` when that is set."""
        return dataclasses.replace(self, layers=self.student_layers or self.layers, student_layers=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; `from_dict(to_dict())` round-trips."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerankModelConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RerankModelConfig fields: {sorted(unknown)}")
        return cls(**data)


TINY = RerankModelConfig(d_model=16, heads=2, layers=1, max_slots=12)
"""The tests' config: one layer of 16 wide tokens (a forward over a handful of requests takes milliseconds)."""
