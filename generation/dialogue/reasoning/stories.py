"""A synthetic multi-clip story set (the project's own), and `ScriptedReader`, a reader with a short attention span.

    stories = make_stories(8, seed=0)
    story.clips              # 3-5 `Attachment`s titled "Episode N", shuffled
    story.questions          # ORDER, EPISODE and CHARACTER questions with gold answers; `is_correct(q, answer)`

A story has four characters, each with a name and an alias ("Mei is also called the chef."), two relations
("Jun is Mei's cousin."), two events per episode ("Mei burns the soup.") and scenery sentences that carry nothing
("The lanterns sway in the evening wind."). The facts a question needs are spread over episodes: a character
question needs the alias from one episode and the relation from another; an order question names events of two
different episodes. Everything is drawn from a `numpy.random.Generator` seeded per story set.

`ScriptedReader` is a deterministic `LanguageModel` standing in for a small model, so the DCoT evaluation measures
the *orchestration*; it is not a language model and its numbers say nothing about one. What it does, literally:
- it reads only the last `span_words` words of its prompt (a limited attention span; everything before is unseen);
- it looks at the prompt's last line, the template's cue, and does what that template asks:
  "Events:" -> a JSON list of the clip's event sentences (a sentence whose first word is a capitalised word other
  than an article, and that is not an "X is ..." statement); "People:" -> JSON people from the sentences
  "X is also called Y." and "X is Y's R."; "Answer:" -> an answer from the text it read;
- answering, it looks the question's events, aliases and relations up in the text it read, in exactly the phrasing
  the stories and the DCoT character chain use. If what it read does not settle the question it guesses the
  first option of an either/or question, and otherwise says "I don't know".
So direct answering fails when the facts lie outside the last `span_words` words of the clips, and DCoT succeeds
when its per-clip chains bring them, distilled, into the final prompt: the effect DCoT claims, in miniature.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass

import numpy as np

from generation.dialogue.backends.scripted import ScriptedLM
from generation.dialogue.types import Attachment, AttachmentKind

# Disjoint from the names in the templates' examples (Ana, Leo, the baker).
NAMES = (
    "Mei",
    "Jun",
    "Lin",
    "Hao",
    "Yan",
    "Rui",
    "Tao",
    "Kai",
    "Nora",
    "Omar",
    "Iris",
    "Pablo",
    "Sofia",
    "Ravi",
)
ALIASES = (
    "the chef",
    "the doctor",
    "the driver",
    "the singer",
    "the teacher",
    "the fisherman",
    "the tailor",
    "the painter",
    "the mechanic",
    "the florist",
)
RELATIONS = ("cousin", "boss", "neighbour", "mentor", "landlord", "rival", "roommate")
ACTIONS = (
    "opens a noodle stall",
    "finds a lost wallet",
    "burns the soup",
    "wins a cooking contest",
    "breaks a shop window",
    "buys a red bicycle",
    "loses the shop keys",
    "writes a secret letter",
    "fixes the old radio",
    "misses the last train",
    "adopts a stray cat",
    "sells the family boat",
    "paints the harbour wall",
    "hides a golden ring",
    "plants a cherry tree",
    "cancels the wedding",
    "borrows a camera",
    "returns the stolen map",
    "catches a huge fish",
    "sings at the night market",
    "repairs the wooden bridge",
    "forgets the birthday cake",
    "opens the locked box",
    "rescues a drowning dog",
)
SCENERY = (
    "The rain taps on the tin roofs of the old harbour.",
    "The market smells of ginger, smoke and fried dough.",
    "A ferry horn sounds somewhere across the grey bay.",
    "The paper lanterns sway in the evening wind.",
    "The neon signs flicker above the narrow street.",
    "The radio in the corner plays an old love song.",
    "The gulls circle slowly over the fish stalls.",
    "The steam rises from a long row of bamboo baskets.",
    "The clock tower strikes nine over the square.",
    "The children chase each other along the wooden pier.",
    "A cold wind pushes the clouds towards the hills.",
    "The street vendors call out their prices all night.",
    "The tide comes in and covers the black rocks.",
    "A stray dog sleeps under the bench by the bus stop.",
    "The moon hangs low above the quiet water.",
    "The old tram rattles past the shuttered shops.",
)
EVENTS_PER_EPISODE = 2
NUM_CHARACTERS = 4
NUM_RELATIONS = 2
SCENERY_PER_EPISODE = 7
DEFAULT_SPAN_WORDS = 150


class QuestionKind(enum.StrEnum):
    ORDER = "order"
    EPISODE = "episode"
    CHARACTER = "character"


@dataclass(frozen=True)
class Question:
    kind: QuestionKind
    text: str
    gold: str
    wrong: tuple[str, ...]


@dataclass(frozen=True)
class Story:
    story_id: str
    clips: tuple[Attachment, ...]
    questions: tuple[Question, ...]


def _sentence(name: str, action: str) -> str:
    return f"{name} {action}."


def make_story(story_id: str, rng: np.random.Generator) -> Story:
    episodes = int(rng.integers(3, 6))
    names = [str(x) for x in rng.choice(NAMES, NUM_CHARACTERS, replace=False)]
    alias = dict(
        zip(names, (str(x) for x in rng.choice(ALIASES, NUM_CHARACTERS, replace=False)), strict=True)
    )
    actions = [str(x) for x in rng.choice(ACTIONS, episodes * EVENTS_PER_EPISODE, replace=False)]
    # events[e] = the (name, action) pairs of episode e, in the order they happen.
    events = [
        [
            (names[int(rng.integers(NUM_CHARACTERS))], actions[e * EVENTS_PER_EPISODE + k])
            for k in range(EVENTS_PER_EPISODE)
        ]
        for e in range(episodes)
    ]
    relations = []  # (subject, relation, object): subject is object's relation
    for relation in rng.choice(RELATIONS, NUM_RELATIONS, replace=False):
        subject, obj = (str(x) for x in rng.choice(names, 2, replace=False))
        relations.append((subject, str(relation), obj))

    facts: list[list[str]] = [[] for _ in range(episodes)]
    for name in names:
        facts[int(rng.integers(episodes))].append(f"{name} is also called {alias[name]}.")
    for subject, relation, obj in relations:
        facts[int(rng.integers(episodes))].append(f"{subject} is {obj}'s {relation}.")

    texts = []
    for e in range(episodes):
        others = facts[e] + [str(x) for x in rng.choice(SCENERY, SCENERY_PER_EPISODE, replace=False)]
        others = [others[i] for i in rng.permutation(len(others))]
        # Events keep their order; the other sentences go in between at random places.
        slots = sorted(rng.choice(len(others) + EVENTS_PER_EPISODE, EVENTS_PER_EPISODE, replace=False))
        sentences, queue = [], iter(others)
        event_iter = iter(events[e])
        for i in range(len(others) + EVENTS_PER_EPISODE):
            sentences.append(_sentence(*next(event_iter)) if i in slots else next(queue))
        texts.append(" ".join(sentences))

    shuffled = rng.permutation(episodes)
    clips = tuple(
        Attachment(
            attachment_id=f"{story_id}-clip{position}",
            kind=AttachmentKind.VIDEO,
            title=f"Episode {int(e) + 1}",
            transcript=texts[int(e)],
        )
        for position, e in enumerate(shuffled)
    )
    return Story(story_id, clips, _questions(rng, events, relations, alias))


def _questions(rng, events, relations, alias) -> tuple[Question, ...]:
    episodes = len(events)
    first, second = sorted(int(x) for x in rng.choice(episodes, 2, replace=False))
    early = _sentence(*events[first][int(rng.integers(EVENTS_PER_EPISODE))])[:-1]
    late = _sentence(*events[second][int(rng.integers(EVENTS_PER_EPISODE))])[:-1]
    options = [early, late] if rng.random() < 0.5 else [late, early]
    order = Question(
        QuestionKind.ORDER, f"What happened first: {options[0]} or {options[1]}?", early, (late,)
    )
    e = int(rng.integers(episodes))
    event = events[e][int(rng.integers(EVENTS_PER_EPISODE))]
    episode = Question(
        QuestionKind.EPISODE,
        f"In which episode does this happen: {_sentence(*event)[:-1]}?",
        f"Episode {e + 1}",
        tuple(f"Episode {k + 1}" for k in range(episodes) if k != e),
    )
    subject, relation, obj = relations[int(rng.integers(len(relations)))]
    character = Question(
        QuestionKind.CHARACTER,
        f"Who is {alias[obj]}'s {relation}?",
        subject,
        tuple(name for name in alias if name != subject),
    )
    return (order, episode, character)


def make_stories(num_stories: int, seed: int) -> list[Story]:
    rng = np.random.default_rng(seed)
    return [make_story(f"s{seed}-{i}", rng) for i in range(num_stories)]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def is_correct(question: Question, answer: str) -> bool:
    """ORDER: the answer shares more words with the gold event than with the other; EPISODE: it names the gold
    episode's number and no other; CHARACTER: it names the gold person and no other."""
    if question.kind is QuestionKind.ORDER:
        said = _words(answer)
        return len(said & _words(question.gold)) > max(len(said & _words(w)) for w in question.wrong)
    if question.kind is QuestionKind.EPISODE:
        numbers = set(re.findall(r"\d+", answer))
        return numbers == set(re.findall(r"\d+", question.gold))
    said = _words(answer)
    return question.gold.casefold() in said and not any(w.casefold() in said for w in question.wrong)


# ---- the scripted reader -------------------------------------------------------------------------------------

_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_ALIAS = re.compile(r"^(\w+) is also called (.+)\.$")
_RELATION = re.compile(r"^(\w+) is (\w+)'s (\w+)\.$")
_ARTICLES = {"The", "A", "An"}


class ScriptedReader(ScriptedLM):
    """See the module docstring: a literal reader of the last `span_words` words of each prompt."""

    name = "scripted-reader"

    def __init__(self, span_words: int = DEFAULT_SPAN_WORDS, *, delay: float = 0.0) -> None:
        super().__init__(self.read, delay=delay)
        self.span_words = span_words

    def visible(self, prompt: str) -> str:
        starts = [m.start() for m in re.finditer(r"\S+", prompt)]
        return prompt[starts[-self.span_words] :] if len(starts) > self.span_words else prompt

    def read(self, prompt: str) -> str:
        seen = self.visible(prompt)
        body, _, cue = seen.rstrip().rpartition("\n")
        if cue == "Events:":
            return json.dumps(events_in(_clip(body)))
        if cue == "People:":
            return json.dumps(people_in(_clip(body)))
        if cue == "Answer:":
            return answer_from(body)
        return ""


def _clip(body: str) -> str:
    """The clip's text: what follows the last "Clip: label" line (all of `body` if that line was not read)."""
    head, found, tail = body.rpartition("Clip:")
    return tail.partition("\n")[2] if found else body


def _split(text: str) -> list[str]:
    return [s.strip() for line in text.splitlines() for s in _SENTENCES.split(line) if s.strip()]


def events_in(text: str) -> list[str]:
    out = []
    for sentence in _split(text):
        first = sentence.split()[0]
        if first[:1].isupper() and first not in _ARTICLES and " is " not in sentence:
            out.append(sentence)
    return out


def people_in(text: str) -> list[dict]:
    people: dict[str, dict] = {}

    def person(name: str) -> dict:
        return people.setdefault(name, {"name": name, "aliases": [], "relations": []})

    for sentence in _split(text):
        if m := _ALIAS.match(sentence):
            person(m.group(1))["aliases"].append(m.group(2))
        elif m := _RELATION.match(sentence):
            person(m.group(1))["relations"].append({"relation": m.group(3), "of": m.group(2)})
    return list(people.values())


def answer_from(body: str) -> str:
    context, found, question = body.rpartition("Question:")
    question = question.strip() if found else ""
    lowered = context.casefold()
    if m := re.match(r"What happened first: (.+) or (.+)\?$", question):
        options = [m.group(1), m.group(2)]
        where = [lowered.find(o.casefold()) for o in options]
        if min(where) >= 0:
            return options[int(np.argmin(where))]
        return options[0]
    if m := re.match(r"In which episode does this happen: (.+)\?$", question):
        at = lowered.find(m.group(1).casefold())
        labels = re.findall(r"Episode \d+", context[:at]) if at >= 0 else []
        return labels[-1] if labels else "I don't know"
    if m := re.match(r"Who is (.+)'s (\w+)\?$", question):
        alias, relation = m.groups()
        named = re.findall(rf"(\w+) is also called {re.escape(alias)}\.", context)
        if named:
            holders = re.findall(rf"(\w+) is {re.escape(named[-1])}'s {re.escape(relation)}\.", context)
            if holders:
                return holders[-1]
    return "I don't know"


__all__ = [
    "DEFAULT_SPAN_WORDS",
    "Question",
    "QuestionKind",
    "ScriptedReader",
    "Story",
    "is_correct",
    "make_stories",
    "make_story",
]
