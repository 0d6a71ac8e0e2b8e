"""Configuration of MMBee's offline graph expansion (Swing, metapath top-K lists, GraphCL pre-training).

Kept torch-free so the expansion's sparse algebra (and its Spark twin) can be configured without importing torch.
The defaults are *our* choices where the paper is silent; each field says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SwingConfig:
    """Swing item-item similarity s(i, j) = sum over ordered user pairs (u, v), u != v, who both interacted with
    i and j of w_u * w_v / (alpha + |I_u & I_v|), with w_u = (beta + |I_u|) ** -gamma.

    alpha smooths the pair term (1.0, as in the Swing paper); beta and gamma damp heavy users (our choice:
    beta=1.0, gamma=0.3, a mild damping). `user_block` and `pair_chunk` only bound memory, never change the result.
    """

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.3
    user_block: int = 2048
    """Users whose co-interaction counts (one block of B B^T) are materialised at once."""
    pair_chunk: int = 1 << 18
    """User pairs whose item intersections (one block of X) are materialised at once."""


@dataclass(frozen=True)
class GraphCLConfig:
    """GraphCL pre-training of node embeddings Theta (see graphcl.py for the loss and why these defaults)."""

    dim: int = 32
    layers: int = 2
    """LightGCN propagation steps over the bipartite graph."""
    epochs: int = 20
    """Passes over the observed edges (each step also draws one metapath positive per sampled node)."""
    batch_size: int = 1024
    lr: float = 0.02
    weight_decay: float = 1e-6
    lambda_nce: float = 0.1
    """Weight of the InfoNCE term against the edge cross-entropy: L = L_CE + lambda * L_NCE."""
    temperature: float = 0.2
    num_negatives: int = 16
    """Random same-type negatives per InfoNCE anchor."""
    seed: int = 0


@dataclass(frozen=True)
class ExpansionConfig:
    """The whole expansion job: K neighbours per metapath, Swing, GraphCL, and how rows are batched."""

    k: int = 10
    swing: SwingConfig = field(default_factory=SwingConfig)
    graphcl: GraphCLConfig = field(default_factory=GraphCLConfig)
    row_batch: int = 2048
    """Source rows whose products (e.g. one block of R R^T) are materialised at once; memory only."""
    score_bits: int = 30
    """Scores are rounded to this many significant bits (relative 2**-30, about 1e-9) before ranking, so that
    float sums taken in another order (the Spark job) rank and report identically (see metapaths.round_scores)."""
