"""Which mask object takes which words of the prompt: noun phrases, label matching and slot order.

MVideo's mask condition has K object slots and its text encoder knows the k-th noun phrase of the prompt (the
shapes default embeds a phrase index per token; `ShapesTextEncoder`); the model was trained with slot k holding
the object the k-th phrase describes. So binding an object to its words means putting it in the right slot:

    slot_order("a blue square and a red circle", ["red circle", "blue square"], num_slots=3)
    # -> [1, 0, None]: slot 0 ("blue square") holds object 1, slot 1 ("red circle") object 0, slot 2 is empty

Our rules (the issue leaves them to us):

- **Phrases** are the prompt cut at "," and the word "and" (the separators the shapes text encoder counts),
  lower-cased, articles dropped: "a red circle, a blue square and a green triangle" -> ["red circle",
  "blue square", "green triangle"].
- **Labelled objects** (`MaskObject.label`, e.g. "red circle" from the shapes world or "dog" from GroundingDINO)
  are matched to phrases by word overlap (Jaccard of their words, articles ignored), one object per phrase,
  choosing the assignment with the largest total overlap (exact, by dynamic programming over phrases).
- **Objects without a label or whose label shares no word with any phrase** take the phrases left free, in
  ascending object order: with no labels at all, the k-th object (ascending id) binds to the k-th phrase, the
  convention of every mask input before labels were read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

ARTICLES = frozenset({"a", "an", "the"})
SEPARATORS = frozenset({",", "and"})
MAX_MATCHED_PHRASES = 16
"""Phrases considered for label matching (the subsets of taken phrases are enumerated: 2^16 at most); later phrases
are never matched by label (no model here has that many mask slots)."""


def words(text: str) -> list[str]:
    """Lower-cased words, with "," kept as its own token (as the shapes tokenizer splits it)."""
    return re.findall(r"[\w']+|,", text.lower())


def noun_phrases(prompt: str) -> list[str]:
    """The prompt's phrases, split at "," and "and", articles dropped, empty phrases skipped."""
    phrases, current = [], []
    for word in words(prompt) + [","]:
        if word in SEPARATORS:
            if current:
                phrases.append(" ".join(current))
            current = []
        elif word not in ARTICLES:
            current.append(word)
    return phrases


def overlap(label: str, phrase: str) -> float:
    """Jaccard overlap of the two texts' words (articles and separators ignored); 0 when either is empty."""
    a = set(words(label)) - ARTICLES - SEPARATORS
    b = set(words(phrase)) - ARTICLES - SEPARATORS
    return len(a & b) / len(a | b) if a and b else 0.0


def _best_assignment(scores: list[list[float]]) -> dict[int, int]:
    """object -> phrase maximising the summed score over pairs with a positive score, one object per phrase.

    Dynamic programming over the subsets of phrases taken (objects in order, each takes a free phrase or none):
    exact, and cheap for the few phrases a prompt has (`MAX_MATCHED_PHRASES`)."""
    num_objects = len(scores)
    num_phrases = min(len(scores[0]) if scores else 0, MAX_MATCHED_PHRASES)
    best: dict[int, tuple[float, dict[int, int]]] = {0: (0.0, {})}  # taken-phrase bits -> (total, assignment)
    for obj in range(num_objects):
        nxt: dict[int, tuple[float, dict[int, int]]] = {}
        for taken, (total, pairs) in best.items():
            options = [(taken, total, pairs)]  # the object takes no phrase
            for p in range(num_phrases):
                if not taken >> p & 1 and scores[obj][p] > 0:
                    options.append((taken | 1 << p, total + scores[obj][p], {**pairs, obj: p}))
            for key, value, assignment in options:
                if key not in nxt or value > nxt[key][0] + 1e-12:
                    nxt[key] = (value, assignment)
        best = nxt
    return max(best.values(), key=lambda item: item[0])[1] if best else {}


def slot_order(prompt: str, labels: Sequence[str | None], num_slots: int) -> list[int | None]:
    """Slot k -> index (into `labels`) of the object it holds, or None for an empty slot (module docstring)."""
    if len(labels) > num_slots:
        raise ValueError(f"{len(labels)} mask objects but only {num_slots} mask slots")
    phrases = noun_phrases(prompt)[:num_slots]
    scores = [[overlap(label, p) if label else 0.0 for p in phrases] for label in labels]
    matched = _best_assignment(scores) if phrases else {}
    slots: list[int | None] = [None] * num_slots
    for obj, phrase in matched.items():
        slots[phrase] = obj
    free = iter(k for k in range(num_slots) if slots[k] is None)
    for obj in range(len(labels)):
        if obj not in matched:
            slots[next(free)] = obj
    return slots


def bind_slots(
    mask_video: torch.Tensor, prompts: Sequence[str], labels: Sequence[Sequence[str | None]]
) -> torch.Tensor:
    """(B, T, K, H, W) masks whose slot j holds the object labelled `labels[b][j]` -> the same masks reordered
    so that each object sits in the slot of its phrase of `prompts[b]`. A mask batch of 1 is shared by all
    prompts and is bound to each of them (the result has one item per prompt)."""
    batch, _, num_slots = mask_video.shape[:3]
    if len(labels) != batch:
        raise ValueError(f"mask_labels has {len(labels)} entries for a mask batch of {batch}")
    if batch == 1 and len(prompts) > 1:
        mask_video, labels = (
            mask_video.expand(len(prompts), *mask_video.shape[1:]),
            list(labels) * len(prompts),
        )
    elif batch != len(prompts):
        raise ValueError(f"{len(prompts)} prompts for a mask batch of {batch}")
    bound = torch.zeros_like(mask_video)
    for b, (prompt, item_labels) in enumerate(zip(prompts, labels, strict=True)):
        item_labels = list(item_labels)
        if len(item_labels) > num_slots:
            raise ValueError(f"mask_labels[{b}] has {len(item_labels)} labels for {num_slots} mask slots")
        # Slots past the labels given are objects without a label (or empty): they bind by order too.
        filled = [j for j in range(num_slots) if j < len(item_labels) or bool(mask_video[b, :, j].any())]
        order = slot_order(
            prompt, [item_labels[j] if j < len(item_labels) else None for j in filled], num_slots
        )
        for k, obj in enumerate(order):
            if obj is not None:
                bound[b, :, k] = mask_video[b, :, filled[obj]]
    return bound
