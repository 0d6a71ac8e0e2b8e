"""The synthetic long-dialogue recall task the Contextformer memory is trained and measured on.

A dialogue alternates user (`<u>`) and assistant (`<a>`) turns. Early user turns state facts ("my sister 's
name is mara .", "the parcel number is 4821 ."), then many distractor turns follow (chit-chat, other facts),
then the user asks about one fact ("what is my parcel number ?") and the assistant's answer is the value followed
by `<eos>`. With a context window of the last K tokens, the asked fact has left the window.

Text is lower-case words separated by single spaces, so a word-level tokenizer covers it exactly (`vocabulary`).
Every key ("sister", "parcel") and every value (a name "mara", a number "4821") is ONE word, so one token: the
tiny self-trained LM has to copy one token from its context or its memory, not learn to copy spans in order
(with two-syllable names and four-digit numbers spelled out token by token, a 3-layer LM trained for minutes
answered from the whole history with exact match 0.03).

Held out, so that recall cannot be memorised (our choice of how):
- values: each dialogue draws its values at random from the key's pool (`VALUES`, twelve per key), so no key
  has a value to memorise and the asked value must come from the dialogue itself. The pools
  are NOT split into train and test values: an earlier version held one value in five out, but with one-token
  values a held-out value is a token the LM never outputs in training, and its output embedding stays where
  initialisation left it, so it cannot be produced at all;
- templates: each fact kind has statement templates only test dialogues use (`TEST_STATEMENTS`);
- seeds: splits draw from their own generator streams (`split_seed`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

USER, ASSISTANT, EOS = "<u>", "<a>", "<eos>"
SPLITS = ("train", "test")

# Each key has its own pool of one-word values (our choice, measured): with one pool of names and one of
# numbers shared by the keys, the tiny LM learned which KIND of value was asked for but not which of two facts
# of that kind (recall 0.54 with memory and 0.52 from the whole history after 1500 stage-1 steps, about what
# picking at random among the facts of the asked kind gives). Real facts are typed the same way: an order
# number does not look like a seat. Recall still needs the memory: the value is drawn at random per dialogue.
VALUES: dict[str, tuple[str, ...]] = {
    "sister": ("anna", "carla", "elena", "gina", "ines", "karla", "mara", "olga", "rosa", "tina", "vera", "yara"),
    "brother": ("bruno", "dario", "felix", "hugo", "jonas", "leon", "nico", "pablo", "sami", "ugo", "willy", "zeno"),
    "dog": ("rex", "bella", "max", "luna", "rocky", "daisy", "buddy", "coco", "milo", "lola", "toby", "nala"),
    "cat": ("kitty", "simba", "tiger", "misty", "oreo", "shadow", "pumpkin", "smokey", "ginger", "mittens", "salem", "pepper"),
    "parcel": ("1047", "2065", "2718", "3141", "3580", "4096", "4821", "5273", "6034", "7385", "8150", "9468"),
    "order": ("503917", "618204", "274650", "931086", "845213", "162739", "390561", "757028", "486392", "209874", "671345", "928456"),
    "room": ("101", "117", "204", "213", "308", "315", "402", "419", "506", "512", "601", "623"),
    "seat": ("3a", "5c", "7f", "9b", "12d", "14e", "17a", "21c", "23f", "26b", "28d", "31e"),
}  # fmt: skip
DIGITS = tuple("0123456789")  # chit-chat only ("i slept 7 hours")

# fact key -> (kind of value, the noun phrase the templates use)
FACT_KEYS: dict[str, tuple[str, str]] = {
    "sister": ("name", "sister"),
    "brother": ("name", "brother"),
    "dog": ("name", "dog"),
    "cat": ("name", "cat"),
    "parcel": ("number", "parcel"),
    "order": ("number", "order"),
    "room": ("number", "room"),
    "seat": ("number", "seat"),
}

# Training templates vary where the key and the value sit in the turn (value first, words before the key, no
# verb): with the key always at the start and the value after "is", the memory's turn encoder learned where the
# value sits and recalled 0.65-0.71 on the held-out templates, against 1.00 on its own.
TRAIN_STATEMENTS = {
    "name": (
        "my {key} 's name is {value} .",
        "my {key} is called {value} .",
        "you know my {key} ? it is {value} .",
        "{value} , you know , is my {key} .",
        "it is {value} , the name of my {key} .",
        "please remember : my {key} is {value} .",
    ),
    "number": (
        "the {key} number is {value} .",
        "my {key} number is {value} .",
        "{key} number : {value} , remember it .",
        "{value} is my {key} number .",
        "remember {value} , it is the {key} number .",
        "ok , note that my {key} number is {value} .",
        "please remember : {key} number {value} .",
    ),
}
TEST_STATEMENTS = {
    "name": ("{value} is the name of my {key} .",),
    "number": ("please note my {key} number {value} .",),
}
QUESTIONS = {
    "name": ("what is my {key} 's name ?", "what is my {key} called ?"),
    "number": ("what is my {key} number ?", "tell me my {key} number ?"),
}

ACKS = ("ok , noted .", "got it .", "thanks , i will remember .", "sure .", "nice to know .", "i see .")
THINGS = (
    "the sea",
    "rainy days",
    "green tea",
    "old movies",
    "the park",
    "noodles",
    "the market",
    "jazz music",
)
ADJECTIVES = ("nice", "cold", "busy", "quiet", "long", "fun", "strange", "lovely")
CHIT_CHAT = (
    "i like {thing} .",
    "the weather is {adj} today .",
    "did you see {thing} yesterday ?",
    "my day was {adj} .",
    "i slept {digit} hours .",
    "we talked about {thing} for a while .",
    "is {thing} {adj} ?",
    "it was {adj} at {thing} .",
    "note that {thing} is {adj} .",
    "i forgot the name of {thing} .",
)
REPLIES = (
    "that sounds {adj} .",
    "tell me more about {thing} .",
    "i also like {thing} .",
    "how {adj} !",
    "yes , it was {adj} .",
    "i think {thing} is {adj} .",
    "please tell me more about {thing} .",
)


def value_pool(key: str) -> tuple[str, ...]:
    """Every value the fact `key` can take, each one word."""
    if key not in VALUES:
        raise ValueError(f"key must be one of {sorted(VALUES)}, got {key!r}")
    return VALUES[key]


def split_seed(split: str, seed: int) -> np.random.SeedSequence:
    """The generator stream of (split, seed): the splits never share draws even with equal seeds."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.SeedSequence([SPLITS.index(split), seed])


@dataclass(frozen=True)
class TaskConfig:
    """Shape of the generated dialogues. `num_turns` counts the turns before the question (user and assistant),
    `facts_in_first_turns` how early the facts are stated (user turns among the first ones)."""

    num_turns: int = 16
    num_facts: int = 4
    facts_in_first_turns: int = 10
    same_kind: bool = (
        False  # all facts names or all numbers (training's curriculum: the kind alone can't answer)
    )


@dataclass(frozen=True)
class Dialogue:
    """`turns` before the question, each starting with its role token; the asked fact was stated in
    `turns[fact_turn]`; `answer` is the value (without `<eos>`). `facts` maps every stated fact's key to its
    value and `fact_turns` to the turn that states it."""

    turns: tuple[str, ...]
    question: str
    answer: str
    fact_turn: int
    facts: dict[str, str] = field(default_factory=dict)
    fact_turns: dict[str, int] = field(default_factory=dict)

    def history(self) -> str:
        return " ".join(self.turns)

    def prompt(self) -> str:
        """The question turn and the assistant marker the answer follows."""
        return f"{USER} {self.question} {ASSISTANT}"

    def target(self) -> str:
        return f"{self.answer} {EOS}"


def _fill(template: str, rng: np.random.Generator, **values: str) -> str:
    picks = {
        "thing": THINGS[rng.integers(len(THINGS))],
        "adj": ADJECTIVES[rng.integers(len(ADJECTIVES))],
        "digit": DIGITS[rng.integers(1, len(DIGITS))],
    }
    return template.format(**{**picks, **values})


def generate_dialogue(rng: np.random.Generator, split: str, config: TaskConfig = TaskConfig()) -> Dialogue:
    keys = list(FACT_KEYS)
    if config.same_kind:
        kind = ("name", "number")[rng.integers(2)]
        keys = [k for k in keys if FACT_KEYS[k][0] == kind]
    chosen = [keys[i] for i in rng.choice(len(keys), size=config.num_facts, replace=False)]
    user_turns = list(range(0, config.num_turns, 2))
    early = [t for t in user_turns if t < config.facts_in_first_turns]
    fact_turns = sorted(rng.choice(early, size=config.num_facts, replace=False).tolist())
    statements = TRAIN_STATEMENTS if split == "train" else TEST_STATEMENTS
    facts: dict[str, str] = {}
    fact_at: dict[int, str] = {}
    for key, turn in zip(chosen, fact_turns, strict=True):
        kind, noun = FACT_KEYS[key]
        pool = value_pool(key)
        facts[key] = pool[rng.integers(len(pool))]
        fact_at[turn] = _fill(
            statements[kind][rng.integers(len(statements[kind]))], rng, key=noun, value=facts[key]
        )
    turns = []
    for t in range(config.num_turns):
        if t in fact_at:
            turns.append(f"{USER} {fact_at[t]}")
        elif t % 2 == 0:
            turns.append(f"{USER} {_fill(CHIT_CHAT[rng.integers(len(CHIT_CHAT))], rng)}")
        elif t - 1 in fact_at:
            turns.append(f"{ASSISTANT} {ACKS[rng.integers(len(ACKS))]}")
        else:
            turns.append(f"{ASSISTANT} {_fill(REPLIES[rng.integers(len(REPLIES))], rng)}")
    asked = int(rng.integers(config.num_facts))
    return Dialogue(
        tuple(turns),
        question(chosen[asked], rng),
        facts[chosen[asked]],
        fact_turns[asked],
        facts,
        dict(zip(chosen, fact_turns, strict=True)),
    )


def question(key: str, rng: np.random.Generator) -> str:
    """A question asking for the fact `key`."""
    kind, noun = FACT_KEYS[key]
    return _fill(QUESTIONS[kind][rng.integers(len(QUESTIONS[kind]))], rng, key=noun)


def generate_dialogues(n: int, *, split: str, seed: int, config: TaskConfig = TaskConfig()) -> list[Dialogue]:
    """`n` dialogues of `split`, the same for the same (split, seed, config)."""
    rng = np.random.default_rng(split_seed(split, seed))
    return [generate_dialogue(rng, split, config) for _ in range(n)]


def vocabulary() -> list[str]:
    """Every word a dialogue of either split can contain, sorted (the word-level tokenizer's vocabulary)."""
    words = {USER, ASSISTANT, EOS, *itertools.chain.from_iterable(VALUES.values()), *DIGITS}
    templates = [
        *itertools.chain.from_iterable(TRAIN_STATEMENTS.values()),
        *itertools.chain.from_iterable(TEST_STATEMENTS.values()),
        *itertools.chain.from_iterable(QUESTIONS.values()),
        *ACKS, *THINGS, *ADJECTIVES, *CHIT_CHAT, *REPLIES,
        *(noun for _, noun in FACT_KEYS.values()),
    ]  # fmt: skip
    for text in templates:
        words.update(w for w in text.split() if not w.startswith("{"))
    return sorted(words)
