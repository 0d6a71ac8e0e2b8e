"""The small LM of the recall task and the two training stages of the memory recipe.

Stage 1 (`train_lm`), a memory-augmented LM: our own tiny Llama (a word-level tokenizer built from the task's
vocabulary, `task.vocabulary`) is trained from scratch TOGETHER with a Contextformer memory of the final sizes.
Its loss: next-token loss on whole dialogues cropped to start at a random turn at or before the first fact,
with questions about every fact left in them (`answer_weight` more on the answers), so it answers from its
context; plus the answer loss through the memory, on questions whose fact is outside its window; plus the
fact-token loss (`memory_losses`). The LM is saved as a standard HF directory (model and tokenizer) and frozen.

Stage 2 (`train_memory`): the memory (turn encoder and Contextformer, `train.py` starts it from stage 1's; +
LoRA when `ContextformerConfig.lora_rank > 0`) is trained over the frozen LM on new dialogues (their own
generator stream): the LM sees `<bos>` + the
last `window_tokens` tokens of the history + the question, the memory holds every turn (the last
`memory_slots`), the loss is on the answer tokens plus the fact-token loss.

Why stage 1 trains the LM with the memory (measured on the shared 2-core CPU, 1 thread): an LM trained on text
alone, frozen, with LoRA or even fully unfrozen in stage 2, never learned to read a prefix it had not seen in
training (the answer loss stayed at chance, about 1.59 nats: right kind of value, value unknown), and an LM
trained from scratch only learns to copy a value from its context after an abrupt plateau that easy examples
shorten. So both stages share one curriculum (`_phase`): "reader", the fact-token loss alone, so that the prefix
states the facts before the LM is asked to read it; "short", one fact in dialogues of two or four turns;
"pair", two facts; then the task's dialogues.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from generation.dialogue.memory.contextformer import IGNORE_INDEX, ContextformerConfig, ContextformerLM
from generation.dialogue.memory.task import (
    ASSISTANT,
    EOS,
    FACT_KEYS,
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
    """The tiny Llama and its stage-1 (memory-augmented) training: `reader_steps` of the memory's fact loss alone,
    then `short_steps` on one-fact dialogues of two or four turns, then the task's dialogues."""

    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 192
    steps: int = 1400
    batch_size: int = 32
    learning_rate: float = 3e-3
    answer_weight: float = 4.0
    reader_steps: int = 100
    short_steps: int = 150
    pair_steps: int = 600


@dataclass(frozen=True)
class MemoryTrainConfig:
    """Stage 2: the memory (and LoRA) trained over the frozen stage-1 LM on new dialogues; same phases as stage 1."""

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    reader_steps: int = 100
    short_steps: int = 50
    pair_steps: int = 100
    fact_weight: float = 1.0


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
    the answer's ids followed by <eos>; `fact_slots` (memory slot, key id, value id) of every fact whose turn
    is in the memory (the targets of `fact_token_loss`)."""

    history: list[int]
    window: list[int]
    turns: tuple[str, ...]
    answer: list[int]
    fact_in_window: bool
    fact_slots: tuple[tuple[int, int, int], ...] = ()


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
    turns = dialogue.turns[-memory_slots:]
    first_kept = len(dialogue.turns) - len(turns)
    fact_slots = tuple(
        (turn - first_kept, ids(tokenizer, FACT_KEYS[key][1])[0], ids(tokenizer, dialogue.facts[key])[0])
        for key, turn in dialogue.fact_turns.items()
        if turn >= first_kept
    )
    return Example(
        history=[bos, *history, *question],
        window=[bos, *window, *question],
        turns=turns,
        answer=ids(tokenizer, dialogue.target()),
        fact_in_window=fact_start >= len(history) - len(window),
        fact_slots=fact_slots,
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
    tokenizer, rng: np.random.Generator, task: TaskConfig
) -> tuple[list[int], list[tuple[int, int]]]:
    """A dialogue of `task`, cropped to start at a random turn at or before its first fact, then questions about
    every fact left in it, in random order (more answers per sequence: retrieval is what the LM must learn)."""
    dialogue = generate_dialogue(rng, "train", task)
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


def train_lm(
    tokenizer,
    config: LMConfig,
    task: TaskConfig,
    memory: ContextformerConfig,
    *,
    seed: int,
    progress: Progress | None = None,
) -> ContextformerLM:
    """Stage 1, the memory-augmented LM: a fresh LM and a fresh memory (`memory`'s sizes) learn together, the LM
    on whole dialogues (loss on every token, `answer_weight` more on answers) and, through the memory, on
    questions whose fact is outside its window. Returns the model with its LM frozen again."""
    lm = new_lm(tokenizer, config, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ContextformerLM(memory, lm, tokenizer)
    model.lm.requires_grad_(True)
    rng = np.random.default_rng(np.random.SeedSequence([1, seed]))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    schedule = _warmup_cosine(optimizer, config.steps)
    model.train()
    for step in range(config.steps):
        phase = _phase(step, config.reader_steps, config.short_steps, config.pair_steps)
        dialogues = [
            generate_dialogue(rng, "train", _phase_task(phase, task, rng)) for _ in range(config.batch_size)
        ]
        answer_loss, fact_loss = memory_losses(model, dialogues)
        if phase == "reader":
            loss = fact_loss
        else:
            sequences = [
                _stage1_sequence(tokenizer, rng, _phase_task(phase, task, rng))
                for _ in range(config.batch_size // 2)
            ]
            lm_loss = _lm_loss(model.lm, tokenizer, sequences, config.answer_weight)
            loss = lm_loss + config.answer_weight * answer_loss + fact_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step, answer_loss.item())
    model.lm.requires_grad_(False)
    model.eval()
    return model


def _lm_loss(lm, tokenizer, sequences, answer_weight: float) -> torch.Tensor:
    """Next-token loss on every token of whole dialogues, plus `answer_weight` times the loss on the answers."""
    input_ids, attention, labels = _batch(
        [s for s, _ in sequences], [n for _, n in sequences], tokenizer.pad_token_id
    )
    logits = lm(input_ids=input_ids, attention_mask=attention).logits[:, :-1].flatten(0, 1)
    every = input_ids[:, 1:].masked_fill(attention[:, 1:] == 0, IGNORE_INDEX)
    loss = F.cross_entropy(logits, every.reshape(-1), ignore_index=IGNORE_INDEX)
    answers = F.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    return loss + answer_weight * answers


def memory_losses(model: ContextformerLM, dialogues: list[Dialogue]) -> tuple[torch.Tensor, torch.Tensor]:
    """(answer loss, fact-token loss) of `dialogues` asked with their fact outside the window. The answer loss
    is the LM's on the answer tokens with the memory prefix. The fact-token loss is the cross-entropy of the soft
    token of query i against the key and the value of the fact in memory slot i (each half), or against `<pad>`
    where slot i holds a turn without a fact, so that the prefix states the remembered facts in the LM's own
    token embeddings and nothing else (needs `num_queries >= memory_slots`)."""
    config = model.config
    examples = [
        encode_example(model.tokenizer, d, config.window_tokens, config.memory_slots, fact_outside=True)
        for d in dialogues
    ]
    input_ids, attention, labels, turn_ids, turn_mask, slot_mask = memory_batch(model, examples)
    memory = model.encode_turn_ids(turn_ids, turn_mask)  # (B, C, memory_dim)
    answer_loss, _ = model(input_ids, attention, memory, slot_mask, labels=labels)
    slot_mask = slot_mask.to(model.device)
    log_probs = model.reader.token_logits(memory, slot_mask).log_softmax(dim=-1)  # (B, Nq, V)
    slots = slot_mask.shape[1]
    targets = torch.full((len(examples), slots, 2), model.tokenizer.pad_token_id, dtype=torch.long)
    for i, e in enumerate(examples):
        for slot, key, value in e.fact_slots:
            targets[i, slot] = torch.tensor([key, value])
    picked = log_probs[:, :slots].gather(2, targets.to(model.device))  # (B, C, 2)
    fact_loss = -(picked.mean(dim=2) * slot_mask).sum() / slot_mask.sum()
    return answer_loss, fact_loss


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
    """Stage 2: only the trainable parts of `model` (turn encoder, Contextformer, LoRA) learn, the LM frozen, on
    out-of-window questions of new dialogues (their own generator stream)."""
    rng = np.random.default_rng(np.random.SeedSequence([2, seed]))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    schedule = _warmup_cosine(optimizer, config.steps)
    model.train()
    for step in range(config.steps):
        phase = _phase(step, config.reader_steps, config.short_steps, config.pair_steps)
        dialogues = [
            generate_dialogue(rng, "train", _phase_task(phase, task, rng)) for _ in range(config.batch_size)
        ]
        answer_loss, fact_loss = memory_losses(model, dialogues)
        loss = config.fact_weight * fact_loss + (answer_loss if phase != "reader" else 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step, answer_loss.item())
    model.eval()
    return model


def _phase(step: int, reader_steps: int, short_steps: int, pair_steps: int = 0) -> str:
    """The curriculum: "reader" (the fact-token loss alone), "short" (one fact), "pair" (two facts), "full"."""
    for phase, end in (("reader", reader_steps), ("short", short_steps), ("pair", pair_steps)):
        if step < end:
            return phase
        step -= end
    return "full"


def _phase_task(phase: str, task: TaskConfig, rng: np.random.Generator) -> TaskConfig:
    """One fact in the first of two or four turns while "short"; two facts of the same kind in the first four of
    four to eight turns while "pair" (the kind of value asked for cannot tell them apart: the LM must match the
    key); the task's dialogues otherwise."""
    if phase == "short":
        return TaskConfig(2 * int(rng.integers(1, 3)), 1, 2)
    if phase == "pair":
        return TaskConfig(2 * int(rng.integers(2, 5)), 2, 4, same_kind=True)
    return task


def _warmup_cosine(optimizer, steps: int, warmup_fraction: float = 0.05):
    warmup = max(1, int(steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
