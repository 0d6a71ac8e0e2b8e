"""Decoding pages from a policy's logits, and the masked per-step log-probabilities the losses use.

A *policy* is any model with `step_logits(batch, orders [B, K, m]) -> [B, K, m, n]` and a class attribute
`decodes_autoregressively`:
- False (NAR student, score-and-sort): `logits(batch) -> [B, m, n]`, one forward for the whole page; the NAR
  student's `__call__` also returns the candidate encodings (contrastive decoding).
- True (AR teacher): `start(batch) -> state` (candidates encoded once), `state.repeat(K)`, and
  `next_logits(state, placed [R, k]) -> [R, n]`.

Availability at slot k of a page: the candidate is valid, was not placed at slots < k, and its author
(authors >= 0) holds fewer than `author_cap` of slots < k (cap 0: no limit; author -1: never capped). Every
decoder takes only available candidates; `step_log_probs` is the log-softmax over the available candidates with
`UNAVAILABLE` (a large negative *finite* number, so that 0 · log p stays 0 in a KL and nothing turns NaN)
everywhere else; a step where nothing is available (a cap the page cannot meet) is `UNAVAILABLE` throughout.
Decoders refuse such requests up front (`ValueError`, see `check_feasible`; the service turns it into
FAILED_PRECONDITION).

All decoders are vectorised over requests and pages; the only Python loop is over the m slots. The exception
is a single row on the CPU (a served request, `FEW_ROWS`): there availability lives in Python lists, and masked
greedy over fixed logits (NAR) walks each slot's candidates in order of score until one is open, instead of a
dozen tensor ops per slot; both ways give the same pages (tested). Sampling is deterministic given the
`torch.Generator`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment

from recsys.data.pages import PageBatch

UNAVAILABLE = -1e9
"""Log-probability (and masked logit) of a candidate that cannot take the slot (finite: no NaN, no inf)."""

FEW_ROWS = 1
"""Up to this many rows (requests × pages) on the CPU, the decoders track availability in Python lists
(`_FewOpen`); above it, in tensor ops (`_Open`), a dozen per slot whatever the number of rows. Measured at
m = 10, n = 50, cap 2, one thread: NAR masked greedy over a ready matrix takes 0.04 ms in lists against 0.16 ms
in tensors for one row and 0.08 against 0.18 ms for four, and breaks even at eight; the AR masking of a page
(ten steps) 0.165 against 0.18 ms for one row, but 0.25 against 0.19 ms for two. One row, then: the served
request, for both."""


@dataclass
class Decoded:
    """One page per request: the candidate index at each slot and its probability when it was chosen."""

    orders: torch.Tensor  # long [B, m]
    probs: torch.Tensor  # float [B, m]


# --- availability -------------------------------------------------------------------------------------------


def available(orders: torch.Tensor, batch: PageBatch) -> torch.Tensor:
    """Which candidates may take each slot of each page, given the slots before it: [B, K, m] -> bool
    [B, K, m, n]."""
    size, pages, slots = orders.shape
    one_hot = torch.nn.functional.one_hot(orders, batch.num_candidates)  # [B, K, m, n]
    placed_before = one_hot.cumsum(dim=2) - one_hot
    result = batch.valid[:, None, None, :] & (placed_before == 0)
    if bool((batch.author_cap > 0).any()):
        placed_authors = batch.authors.gather(1, orders.reshape(size, -1)).view(size, pages, slots, 1)
        same = ((placed_authors == batch.authors[:, None, None, :]) & (placed_authors >= 0)).long()
        held_before = same.cumsum(dim=2) - same  # items by the candidate's author at slots < k: [B, K, m, n]
        cap = batch.author_cap.view(size, 1, 1, 1)
        result &= (cap <= 0) | (held_before < cap)
    return result


class _Open:
    """Availability while decoding slot by slot, for R rows (requests, or requests × pages in a row): `mask`
    is bool [R, n]; `place(picks [R])` updates it in a handful of tensor ops (this runs m times per decode)."""

    def __init__(self, batch: PageBatch, repeats: int = 1) -> None:
        self.mask = batch.valid.repeat_interleave(repeats, dim=0).clone()  # [R, n]
        self.capped = bool((batch.author_cap > 0).any())
        if self.capped:
            candidates = batch.num_candidates
            # authorless candidates get an author of their own (-1 - index): they only ever match themselves
            own = -1 - torch.arange(candidates, device=batch.authors.device)
            self.authors = torch.where(batch.authors >= 0, batch.authors, own).repeat_interleave(
                repeats, dim=0
            )
            cap = batch.author_cap.repeat_interleave(repeats, dim=0)
            room = torch.where(cap > 0, cap, candidates + 1)  # cap 0: more room than slots
            self.room = (
                room.unsqueeze(-1).expand_as(self.mask).clone()
            )  # slots left to each candidate's author

    def place(self, picks: torch.Tensor) -> None:
        self.mask.scatter_(1, picks.unsqueeze(-1), False)
        if self.capped:
            self.room -= (self.authors == self.authors.gather(1, picks.unsqueeze(-1))).long()
            self.mask &= self.room > 0


class _FewOpen:
    """`_Open` in plain Python lists, for a few rows on the CPU (a served request is one row): placing an item
    costs a few list operations instead of a dozen tensor ops, and `closed_at` records when each candidate
    stopped being available, which gives the availability at every slot at once (`blocked`).

    closed_at[r][c]: the first slot at which candidate c is unavailable (0: invalid; m: never placed nor capped
    out). Availability only ever shrinks, so c is available at slot k iff k < closed_at[r][c]."""

    def __init__(self, batch: PageBatch, repeats: int = 1) -> None:
        def rows(values: torch.Tensor) -> list:
            return [row for row in values.tolist() for _ in range(repeats)]

        self.slots = batch.num_slots
        self.open = [list(row) for row in rows(batch.valid)]  # [R][n], one list per row
        self.closed_at = [[self.slots if valid else 0 for valid in row] for row in self.open]
        self.authors = rows(batch.authors)
        self.caps = rows(batch.author_cap)
        self.held: list[dict[int, int]] = [{} for _ in self.open]  # items placed so far per author, per row
        self.by_author: list[dict[int, list[int]] | None] = [None for _ in self.open]  # candidates per author
        self.slot = 0  # the slot the next `place` fills

    @property
    def mask(self) -> torch.Tensor:
        """Availability at the slot being decoded: bool [R, n]."""
        return torch.tensor(self.open)

    def blocked(self) -> torch.Tensor:
        """Unavailability at every slot of the page: bool [R, m, n] (True: the candidate cannot take the slot)."""
        return torch.arange(self.slots).unsqueeze(-1) >= torch.tensor(self.closed_at).unsqueeze(1)

    def place(self, picks: torch.Tensor) -> None:
        """Each row's pick takes the current slot (picks long [R])."""
        for row, pick in enumerate(picks.tolist()):
            self.place_at(row, pick, self.slot)
        self.slot += 1

    def place_at(self, row: int, pick: int, slot: int) -> None:
        is_open, closed_at = self.open[row], self.closed_at[row]
        is_open[pick] = False
        closed_at[pick] = slot + 1
        cap, authors = self.caps[row], self.authors[row]
        author = authors[pick]
        if cap <= 0 or author < 0:
            return
        held = self.held[row]
        held[author] = held.get(author, 0) + 1
        if held[author] == cap:  # the author is full: its other candidates close from the next slot on
            if self.by_author[row] is None:  # built once per row, when a cap first binds
                self.by_author[row] = defaultdict(list)
                for candidate, other in enumerate(authors):
                    self.by_author[row][other].append(candidate)
            for candidate in self.by_author[row][author]:
                if is_open[candidate]:
                    is_open[candidate] = False
                    closed_at[candidate] = slot + 1


def _few_capacities(batch: PageBatch) -> list[int]:
    """`page_capacity` as a list, request by request in Python."""
    rows = zip(batch.valid.tolist(), batch.authors.tolist(), batch.author_cap.tolist(), strict=True)
    return [_row_capacity(*row) for row in rows]


def _row_capacity(valid: list[bool], authors: list[int], cap: int) -> int:
    """`page_capacity` of one request in Python: its valid candidates, at most `cap` per known author."""
    counts = Counter(author for is_valid, author in zip(valid, authors, strict=True) if is_valid)
    return sum(count if author < 0 or cap <= 0 else min(count, cap) for author, count in counts.items())


def page_capacity(batch: PageBatch) -> torch.Tensor:
    """The most slots a page of each request can fill within its author cap: long [B]."""
    if _few_rows(batch, 1):
        return torch.tensor(_few_capacities(batch), dtype=torch.long)
    same = (batch.authors.unsqueeze(-1) == batch.authors.unsqueeze(-2)) & batch.valid.unsqueeze(-2)
    earlier = torch.ones_like(same[0]).tril(-1)  # [n, n]: j < i
    rank = (same & earlier).sum(dim=-1)  # valid same-author candidates before each candidate
    cap = batch.author_cap.unsqueeze(-1)
    fits = (batch.authors < 0) | (cap <= 0) | (rank < cap)
    return (batch.valid & fits).sum(dim=-1)


def check_feasible(batch: PageBatch) -> None:
    """Raise ValueError naming the requests whose page cannot be filled (too few valid candidates, or an author
    cap that leaves fewer than m placeable)."""
    capacity = page_capacity(batch).tolist()  # list-based for one request (`FEW_ROWS`)
    short = [row for row, fits in enumerate(capacity) if fits < batch.num_slots]
    if short:
        raise ValueError(
            f"requests {short} cannot fill {batch.num_slots} slots: at most {[capacity[row] for row in short]} "
            "candidates fit (valid candidates within the author cap)"
        )


# --- log-probabilities ----------------------------------------------------------------------------------------


def step_log_probs(step_logits: torch.Tensor, orders: torch.Tensor, batch: PageBatch) -> torch.Tensor:
    """Log-softmax at each slot over the candidates still available there (`UNAVAILABLE` elsewhere):
    [B, K, m, n], orders [B, K, m] -> [B, K, m, n]. No gradient reaches unavailable logits."""
    keep = available(orders, batch)
    masked = step_logits.masked_fill(~keep, UNAVAILABLE).log_softmax(dim=-1)
    return masked.masked_fill(~keep, UNAVAILABLE)


def chosen_log_probs(step_log_probs: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """The log-probability of the item each page placed at each slot: [B, K, m, n], [B, K, m] -> [B, K, m]."""
    return step_log_probs.gather(-1, orders.unsqueeze(-1)).squeeze(-1)


def _masked_log_softmax(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~keep, UNAVAILABLE).log_softmax(dim=-1).masked_fill(~keep, UNAVAILABLE)


# --- decoders ---------------------------------------------------------------------------------------------------


def _few_rows(batch: PageBatch, repeats: int) -> bool:
    return batch.size * repeats <= FEW_ROWS and batch.valid.device.type == "cpu"


def _open_state(batch: PageBatch, repeats: int = 1) -> _Open | _FewOpen:
    """The availability tracker that is cheaper for these rows (`FEW_ROWS`)."""
    return _FewOpen(batch, repeats) if _few_rows(batch, repeats) else _Open(batch, repeats)


def _walk(scores: torch.Tensor, state: _FewOpen) -> torch.Tensor:
    """Masked greedy over per-slot scores that do not depend on earlier choices, in Python: each slot takes the
    first open candidate in its order of descending score. The sort is stable, so ties go to the lowest index,
    as `argmax` breaks them: [R, m, n] -> orders long [R, m]. (Where every open candidate scores -inf, the
    tensor loop's argmax may return a closed one; this takes an open one. Logits are finite.)"""
    rows, slots, _ = scores.shape
    pages = []
    for row, ranking in enumerate(scores.argsort(dim=-1, descending=True, stable=True).tolist()):
        is_open, page = state.open[row], []
        for slot, ranked in enumerate(ranking):
            for pick in ranked:
                if is_open[pick]:
                    break
            state.place_at(row, pick, slot)
            page.append(pick)
        pages.append(page)
    state.slot = slots
    return torch.tensor(pages, dtype=torch.long).view(rows, slots)


def _argmax_loop(scores: torch.Tensor, state: _Open) -> torch.Tensor:
    """The same masked greedy as `_walk` in tensor ops over all rows at once (many rows, or an accelerator)."""
    picks = []
    for slot in range(scores.shape[1]):
        pick = scores[:, slot].masked_fill(~state.mask, -torch.inf).argmax(dim=-1)  # [R]
        state.place(pick)
        picks.append(pick)
    return torch.stack(picks, dim=1)


def _fixed_logits_orders(
    scores: torch.Tensor, batch: PageBatch, repeats: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Masked argmax slot by slot over per-slot scores that do not depend on earlier choices: [R, m, n] ->
    (orders long [R, m], blocked bool [R, m, n]: the candidates unavailable at each slot) (rows: requests ×
    `repeats`). `blocked` comes only from the Python path, which records it on the way; else it is None."""
    state = _open_state(batch, repeats)
    if isinstance(state, _FewOpen):
        return _walk(scores, state), state.blocked()
    return _argmax_loop(scores, state), None


def _autoregressive(
    policy: Any, batch: PageBatch, repeats: int, noise: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """AR decoding of `repeats` pages per request at once: masked argmax of (log-prob + noise) per slot ->
    (orders [R, m], chosen log-probs [R, m])."""
    state = policy.start(batch)
    if repeats > 1:
        state = state.repeat(repeats)
    open_ = _open_state(batch, repeats)
    orders = torch.zeros(batch.size * repeats, batch.num_slots, dtype=torch.long, device=batch.valid.device)
    chosen = []
    for slot in range(batch.num_slots):
        mask = open_.mask
        log_probs = _masked_log_softmax(policy.next_logits(state, orders[:, :slot]), mask)  # [R, n]
        if noise is None:  # unavailable log-probs are UNAVAILABLE, far below any available one's
            pick = log_probs.argmax(dim=-1)
        else:
            pick = (log_probs + noise[:, slot]).masked_fill(~mask, -torch.inf).argmax(dim=-1)
        open_.place(pick)
        orders[:, slot] = pick
        chosen.append(log_probs.gather(1, pick.unsqueeze(-1)).squeeze(-1))
    return orders, torch.stack(chosen, dim=1)


@torch.no_grad()
def greedy(policy: Any, batch: PageBatch) -> Decoded:
    """Masked greedy: the most probable available candidate at each slot. NAR policies: one forward, then m
    masked argmax steps; the AR teacher: incremental decoding (candidates encoded once, m decoder steps)."""
    check_feasible(batch)
    if policy.decodes_autoregressively:
        orders, chosen = _autoregressive(policy, batch, 1, None)
        return Decoded(orders, chosen.exp())
    logits = policy.logits(batch)  # [B, m, n]
    orders, blocked = _fixed_logits_orders(logits, batch, 1)
    if blocked is None:
        blocked = ~available(orders.unsqueeze(1), batch).squeeze(1)
    # -inf rather than UNAVAILABLE: the same log-probs at the available candidates (exp(UNAVAILABLE - max)
    # is 0 in float32 either way), in three ops fewer; only those are read
    log_probs = logits.masked_fill(blocked, -torch.inf).log_softmax(dim=-1)
    return Decoded(orders, log_probs.gather(-1, orders.unsqueeze(-1)).squeeze(-1).exp())


def _cap_can_bind(batch: PageBatch) -> torch.Tensor:
    """Requests where some author has more valid candidates than the cap allows on a page: bool [B]."""
    same = (batch.authors.unsqueeze(-1) == batch.authors.unsqueeze(-2)) & batch.valid.unsqueeze(-2)
    per_author = same.sum(dim=-1).masked_fill(~batch.valid | (batch.authors < 0), 0)  # [B, n]
    return (batch.author_cap > 0) & (per_author.max(dim=-1).values > batch.author_cap)


@torch.no_grad()
def assignment(student: Any, batch: PageBatch) -> Decoded:
    """Maximum-weight assignment of slots to distinct candidates on log-softmax(logits over the valid
    candidates) [m, n], per request (scipy's Hungarian `linear_sum_assignment`): the page with the highest
    sum of per-slot log-probs. An assignment cannot express a per-author cap, so requests whose cap can bind
    (an author with more valid candidates than the cap) fall back to masked greedy on the same logits (*our*
    choice). probs: each chosen item's softmax probability over the valid candidates at its slot."""
    check_feasible(batch)
    logits = student.logits(batch)  # [B, m, n]
    log_probs = _masked_log_softmax(logits, batch.valid.unsqueeze(1).expand_as(logits))
    orders = _fixed_logits_orders(logits, batch, 1)[0]  # the fallback; replaced where the cap cannot bind
    for row in (~_cap_can_bind(batch)).nonzero().flatten().tolist():
        columns = batch.valid[row].nonzero().flatten()
        weights = log_probs[row][:, columns].double().cpu().numpy()  # [m, n_valid]
        slots, picked = linear_sum_assignment(weights, maximize=True)
        orders[row, torch.from_numpy(slots).to(orders.device)] = columns[
            torch.from_numpy(picked).to(columns.device)
        ]
    return Decoded(orders, log_probs.gather(-1, orders.unsqueeze(-1)).squeeze(-1).exp())


@torch.no_grad()
def contrastive(student: Any, batch: PageBatch, alpha: float = 0.5) -> Decoded:
    """NAR4Rec's contrastive search: at each slot, the available candidate maximising
    (1 - alpha) · p(candidate | slot) - alpha · max cosine similarity of its encoding to the items already
    placed (0 at the first slot), p being the softmax over the available candidates. probs: that p."""
    check_feasible(batch)
    logits, items = student(batch)  # [B, m, n], [B, n, d]
    unit = torch.nn.functional.normalize(items, dim=-1)
    similarity = unit @ unit.transpose(1, 2)  # [B, n, n]
    state = _Open(batch)
    closest = torch.zeros_like(logits[:, 0])  # max similarity to the placed items: [B, n]
    picks, probs = [], []
    for slot in range(batch.num_slots):
        keep = state.mask
        p = logits[:, slot].masked_fill(~keep, -torch.inf).softmax(dim=-1)
        score = ((1 - alpha) * p - alpha * closest).masked_fill(~keep, -torch.inf)
        pick = score.argmax(dim=-1)
        picked_similarity = similarity.gather(
            1, pick.view(-1, 1, 1).expand(-1, 1, similarity.shape[-1])
        ).squeeze(1)
        closest = picked_similarity if slot == 0 else torch.maximum(closest, picked_similarity)
        state.place(pick)
        picks.append(pick)
        probs.append(p.gather(1, pick.unsqueeze(-1)).squeeze(-1))
    return Decoded(torch.stack(picks, dim=1), torch.stack(probs, dim=1))


def gumbel(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard Gumbel noise -log(-log U), U uniform in (0, 1) (clamped away from both ends)."""
    uniform = torch.rand(shape, generator=generator, device=device).clamp(1e-12, 1.0 - 1e-7)
    return -torch.log(-torch.log(uniform))


@torch.no_grad()
def sample(
    policy: Any, batch: PageBatch, num_samples: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """K pages per request from the policy (without repeats, within the caps) -> (orders long [B, K, m],
    log_probs [B, K, m]: the masked per-step log-prob of each sampled item).

    Vectorised Gumbel-max: noise G [B, K, m, n] is drawn once, then slot k takes the available candidate
    maximising logit + G[..., k, :]. This is an exact draw from the softmax over the available candidates at
    each step: the argmax of logits + i.i.d. Gumbel over a set is distributed as the softmax over that set,
    and slot k's noise is independent of the earlier slots' (which alone decided what is still available).
    NAR policies: one forward, then m masked argmax steps over all B×K pages at once; the AR teacher: slot by
    slot, the K pages of a request decoded in parallel as K rows of the batch. No gradient: the training
    objectives recompute the sampled pages' log-probs with `step_log_probs`."""
    check_feasible(batch)
    size, slots, candidates = batch.size, batch.num_slots, batch.num_candidates
    noise = gumbel((size * num_samples, slots, candidates), generator, batch.valid.device)
    if policy.decodes_autoregressively:
        orders, chosen = _autoregressive(policy, batch, num_samples, noise)
        return orders.view(size, num_samples, slots), chosen.view(size, num_samples, slots)
    logits = policy.logits(batch)  # [B, m, n]
    perturbed = logits.repeat_interleave(num_samples, dim=0) + noise  # [B*K, m, n]
    orders = _fixed_logits_orders(perturbed, batch, num_samples)[0].view(size, num_samples, slots)
    pages = logits.unsqueeze(1).expand(-1, num_samples, -1, -1)
    return orders, chosen_log_probs(step_log_probs(pages, orders, batch), orders)


@torch.no_grad()
def sample_sequentially(
    policy: Any, batch: PageBatch, num_samples: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive baseline of `sample` (same distribution, same outputs' meaning): K separate pages, each drawn
    slot by slot with `torch.multinomial` from the masked softmax. The candidates are still encoded once (NAR:
    one forward; AR: one `start`), so the comparison measures the decoding itself."""
    check_feasible(batch)
    if policy.decodes_autoregressively:
        state = policy.start(batch)
    else:
        logits = policy.logits(batch)
    pages, log_probs = [], []
    for _ in range(num_samples):
        open_ = _Open(batch)
        orders = torch.zeros(batch.size, 0, dtype=torch.long, device=batch.valid.device)
        chosen = []
        for slot in range(batch.num_slots):
            raw = policy.next_logits(state, orders) if policy.decodes_autoregressively else logits[:, slot]
            step = _masked_log_softmax(raw, open_.mask)
            pick = torch.multinomial(step.exp(), 1, generator=generator).squeeze(-1)
            open_.place(pick)
            orders = torch.cat([orders, pick.unsqueeze(-1)], dim=1)
            chosen.append(step.gather(1, pick.unsqueeze(-1)).squeeze(-1))
        pages.append(orders)
        log_probs.append(torch.stack(chosen, dim=1))
    return torch.stack(pages, dim=1), torch.stack(log_probs, dim=1)
