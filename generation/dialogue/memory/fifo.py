"""The fixed-length FIFO memory M of ContextQFormer (arXiv 2505.23121): one embedding per turn, oldest dropped.

    memory = FifoMemory(capacity=16, dim=384)
    memory.push("t1", vector, summary="my dog is called Rex")
    memory.tensor()          # (capacity, dim) float32, oldest first, zero rows where empty
    memory.mask()            # (capacity,) bool, True where a slot holds a turn

The Contextformer (`contextformer.py`) reads `tensor()`/`mask()`; the engine also ranks entries against the
current turn (`relevant`) to report which memories a reply used. Slots are filled oldest first, so slot i
holds the i-th oldest turn still remembered: the order the Contextformer's slot positions are trained on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemoryEntry:
    memory_id: str
    vector: np.ndarray
    summary: str = ""
    turn_id: str = ""


class FifoMemory:
    def __init__(self, capacity: int, dim: int) -> None:
        if capacity < 1 or dim < 1:
            raise ValueError(f"capacity and dim must be positive, got {capacity} and {dim}")
        self.capacity = capacity
        self.dim = dim
        self.entries: deque[MemoryEntry] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, memory_id: str, vector: np.ndarray, *, summary: str = "", turn_id: str = "") -> None:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ValueError(
                f"memory {memory_id!r} has {vector.shape[0]} dimensions, this memory holds {self.dim}"
            )
        self.entries.append(MemoryEntry(memory_id, vector, summary, turn_id))

    def tensor(self) -> np.ndarray:
        out = np.zeros((self.capacity, self.dim), dtype=np.float32)
        for i, entry in enumerate(self.entries):
            out[i] = entry.vector
        return out

    def mask(self) -> np.ndarray:
        out = np.zeros(self.capacity, dtype=bool)
        out[: len(self.entries)] = True
        return out

    def relevant(self, query: np.ndarray, k: int, min_score: float) -> list[tuple[MemoryEntry, float]]:
        """Up to `k` entries whose cosine similarity to `query` is at least `min_score`, best first."""
        if not self.entries:
            return []
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        vectors = np.stack([e.vector for e in self.entries])
        norms = np.linalg.norm(vectors, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
        scores = vectors @ query / np.maximum(norms, 1e-12)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.entries[i], float(scores[i])) for i in order if scores[i] >= min_score]
