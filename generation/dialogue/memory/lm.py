"""The small LM of the recall task and the two training stages of the memory recipe.

Stage 1 (`train_lm`): our own tiny Llama with a word-level tokenizer built from the task's vocabulary
(`task.vocabulary`) learns the dialogues and to answer a question from a fact IN its context: dialogues are
cropped to start at a random turn at or before the asked fact, so it sees every context length up to the whole
history. It is saved as a standard HF directory (`save_pretrained` of model and tokenizer).

Stage 2 (`train_memory`): the LM frozen (+ LoRA when `ContextformerConfig.lora_rank > 0`), the Contextformer
is trained so facts OUTSIDE the window are recalled: the LM sees `<bos>` + the last `window_tokens` tokens of the
history + the question, and the memory holds every turn of the history (the last `memory_slots`); the loss is
on the answer tokens only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from generation.dialogue.memory.contextformer import IGNORE_INDEX, ContextformerLM
from generation.dialogue.memory.task import (
    ASSISTANT,
    EOS,
    USER,
    Dialogue,
    TaskConfig,
    generate_dialogue,
    question,
    vocabulary,
)

logger = logging.getLogger(__name__)

PAD, UNK, BOS = "<pad>", "<unk>", "<bos>"
Progress = Callable[[int, float], None]


def build_tokenizer():
    """A word-level tokenizer over the task's vocabulary (whitespace-split words; specials first)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [PAD, UNK, BOS] + [w for w in vocabulary() if w not in (PAD, UNK, BOS)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS
    )


@dataclass(frozen=True)
class LMConfig:
    """The tiny Llama and its stage-1 training."""

    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 192
    steps: int = 1200
    batch_size: int = 32
    learning_rate: float = 3e-3
    answer_weight: float = 4.0
    short_steps: int = 500


@dataclass(frozen=True)
class MemoryTrainConfig:
    """Stage-2 training of the Contextformer (and LoRA)."""

    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 2e-3
    short_steps: int = 400


def new_lm(tokenizer, config: LMConfig, *, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    lm_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(lm_config)


def ids(tokenizer, text: str) -> list[int]:
    """Token ids of task text (whitespace-separated words): a dictionary look-up, far faster than encoding."""
    vocab, unk = _vocab(tokenizer)
    return [vocab.get(w, unk) for w in text.split()]


@functools.lru_cache(maxsize=8)
def _vocab(tokenizer) -> tuple[dict[str, int], int]:
    return tokenizer.get_vocab(), tokenizer.unk_token_id


@dataclass(frozen=True)
class Example:
    """One question as the three readers see it: `history` = <bos> + the whole history + question; `window` =
    <bos> + the last K history tokens + question; `turns` the memory's turns (texts, oldest first); `answer`
    the answer's ids followed by <eos>."""

    history: list[int]
    window: list[int]
    turns: tuple[str, ...]
    answer: list[int]
    fact_in_window: bool


def encode_example(
    tokenizer, dialogue: Dialogue, window_tokens: int, memory_slots: int, *, fact_outside: bool = False
) -> Example:
    """The readers' views of `dialogue`; `fact_outside` shortens the window to begin after the asked fact's
    turn (training: the answer must come from the memory)."""
    turn_ids = [ids(tokenizer, t) for t in dialogue.turns]
    history = [i for t in turn_ids for i in t]
    question = ids(tokenizer, dialogue.prompt())
    fact_start = sum(len(t) for t in turn_ids[: dialogue.fact_turn])
    keep = window_tokens if window_tokens > 0 else len(history)
    if fact_outside:
        keep = min(keep, len(history) - fact_start - len(turn_ids[dialogue.fact_turn]))
    window = history[len(history) - keep :]
    bos = tokenizer.bos_token_id
    return Example(
        history=[bos, *history, *question],
        window=[bos, *window, *question],
        turns=dialogue.turns[-memory_slots:],
        answer=ids(tokenizer, dialogue.target()),
        fact_in_window=fact_start >= len(history) - len(window),
    )


def _batch(sequences: list[list[int]], answer_spans: list[list[tuple[int, int]]], pad_id: int):
    """Right-padded ids (B, T), attention mask, and labels that keep only the answer spans [start, end)."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    attention = torch.zeros_like(input_ids)
    for i, (seq, spans) in enumerate(zip(sequences, answer_spans, strict=True)):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attention[i, : len(seq)] = 1
        for begin, end in spans:
            labels[i, begin:end] = input_ids[i, begin:end]
    return input_ids, attention, labels


def _stage1_sequence(
    tokenizer, rng: np.random.Generator, task: TaskConfig, max_turns: int
) -> tuple[list[int], list[tuple[int, int]]]:
    """A dialogue of up to `max_turns` turns, cropped to start at a random turn, then questions about every fact
    left in it, in random order (more answers per sequence: retrieval is what stage 1 must learn)."""
    turns = 2 * int(rng.integers(1, max_turns // 2 + 1))
    dialogue = generate_dialogue(rng, "train", TaskConfig(turns, min(task.num_facts, turns // 2), turns))
    start = int(rng.integers(min(dialogue.fact_turns.values()) + 1))
    sequence = [tokenizer.bos_token_id, *ids(tokenizer, " ".join(dialogue.turns[start:]))]
    spans = []
    kept = [key for key, turn in dialogue.fact_turns.items() if turn >= start]
    for k in rng.permutation(len(kept)):
        key = kept[k]
        sequence += ids(tokenizer, f"{USER} {question(key, rng)} {ASSISTANT}")
        answer = ids(tokenizer, f"{dialogue.facts[key]} {EOS}")
        spans.append((len(sequence), len(sequence) + len(answer)))
        sequence += answer
    return sequence, spans


def train_lm(tokenizer, config: LMConfig, task: TaskConfig, *, seed: int, progress: Progress | None = None):
    """Stage 1: the LM learns the dialogues (loss on every token) and answering (extra loss on the answer)."""
    model = new_lm(tokenizer, config, seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence([1, seed]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    schedule = _warmup_cosine(optimizer, config.steps)
    model.train()
    for step in range(config.steps):
        # Curriculum: short dialogues first, where retrieval is found fastest, then up to the task's length.
        max_turns = 4 if step < config.short_steps else task.num_turns
        batch = [_stage1_sequence(tokenizer, rng, task, max_turns) for _ in range(config.batch_size)]
        input_ids, attention, labels = _batch(
            [s for s, _ in batch], [n for _, n in batch], tokenizer.pad_token_id
        )
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
        every = input_ids[:, 1:].masked_fill(attention[:, 1:] == 0, IGNORE_INDEX)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), every.reshape(-1), ignore_index=IGNORE_INDEX
        )
        answer_loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
        )
        total = loss + config.answer_weight * answer_loss
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step, answer_loss.item())
    model.eval()
    return model


def memory_batch(model: ContextformerLM, examples: list[Example]):
    """(input_ids, attention, labels, memory turn ids (B, C, L), memory turn mask, slot mask) of window examples."""
    tokenizer, slots = model.tokenizer, model.config.memory_slots
    input_ids, attention, labels = _batch(
        [e.window + e.answer for e in examples],
        [[(len(e.window), len(e.window) + len(e.answer))] for e in examples],
        tokenizer.pad_token_id,
    )
    turn_ids = torch.zeros(len(examples), slots, model.config.max_turn_tokens, dtype=torch.long)
    turn_mask = torch.zeros(turn_ids.shape, dtype=torch.bool)
    slot_mask = torch.zeros(len(examples), slots, dtype=torch.bool)
    for i, e in enumerate(examples):
        t_ids, t_mask = model.turn_token_ids(list(e.turns))
        turn_ids[i, : len(e.turns)], turn_mask[i, : len(e.turns)] = t_ids, t_mask
        slot_mask[i, : len(e.turns)] = True
    return input_ids, attention, labels, turn_ids, turn_mask, slot_mask


def train_memory(
    model: ContextformerLM,
    config: MemoryTrainConfig,
    task: TaskConfig,
    *,
    seed: int,
    progress: Progress | None = None,
) -> ContextformerLM:
    """Stage 2: only the trainable parts of `model` (encoder, reader, LoRA) learn, on out-of-window questions."""
    rng = np.random.default_rng(np.random.SeedSequence([2, seed]))
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    schedule = _warmup_cosine(optimizer, config.steps)
    model.train()
    window, slots = model.config.window_tokens, model.config.memory_slots
    for step in range(config.steps):
        # Curriculum as in stage 1: memories of a few turns and one or two facts first (the prefix must learn
        # to carry a value before the LM can learn to pick the asked one), then the task's dialogues.
        dialogues = [
            generate_dialogue(rng, "train", task if step >= config.short_steps else _short_task(rng))
            for _ in range(config.batch_size)
        ]
        examples = [encode_example(model.tokenizer, d, window, slots, fact_outside=True) for d in dialogues]
        input_ids, attention, labels, turn_ids, turn_mask, slot_mask = memory_batch(model, examples)
        memory = model.encode_turn_ids(turn_ids, turn_mask)  # (B, C, memory_dim)
        loss, _ = model(input_ids, attention, memory, slot_mask, labels=labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step, loss.item())
    model.eval()
    return model


def _short_task(rng: np.random.Generator) -> TaskConfig:
    turns = 2 * int(rng.integers(1, 4))
    return TaskConfig(turns, min(turns // 2, 2), turns)


def _warmup_cosine(optimizer, steps: int, warmup_fraction: float = 0.05):
    warmup = max(1, int(steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
