"""Versioned prompt templates: one registry of completion-style prompts for every backend.

    render("chat", topic=topic_block("lipsticks"), memory=memory_block(lines), history=history_block(turns),
           message="Which shade suits me?")
    TEMPLATES["chat"].tag        # "chat@2": recorded with each output, so a reply says which prompt made it

Why completion style: the bundled LM (Gemma 3 270M) is a *base* model; it continues text, so every template is
a short instruction, one worked example where the format matters (few-shot), and an open cue ("Assistant:",
"Events:") that the model completes. Instruction-tuned models follow the same text. The instruction comes
*after* the material where the prompt is long, so a model that attends mostly to the end still sees it.

Our choices (the issue is silent on them):
- A template is (name, version, text) with `str.format` fields; `render` refuses missing or unknown fields
  (a `FieldError` naming the template), so a renamed field fails loudly instead of rendering "{history}".
- Changing a template's text means bumping its version; `TEMPLATES` holds only the current version of each.
- Blocks that may be empty (topic, memory, history, passages) are formatted by the helpers below and end with a
  newline when not empty, so an empty block leaves no blank line behind.
- Examples inside templates use names and things (Ana the baker, Leo) that the synthetic story set never uses,
  so a reader that copies from the example is caught by the evaluation rather than helped by it.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from generation.dialogue.types import Role, Turn
from libs.errors import FieldError

# A reply ends where the model starts writing the next turn or the next example.
REPLY_STOP: tuple[str, ...] = ("\nUser:", "\nQuestion:", "\nPassages:", "\n###")
# A structured (JSON) output is one line in every example; a blank line or a new example ends it.
STRUCTURED_STOP: tuple[str, ...] = ("\n\n", "\nClip:", "\n###")
# One line of reasoning (a ripple ring, a short answer) ends at the line break.
LINE_STOP: tuple[str, ...] = ("\n",)


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    text: str

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(f for _, f, _, _ in string.Formatter().parse(self.text) if f)


# Version 2: one worked exchange, so a base model answers the user instead of introducing itself (measured with
# Gemma 3 270M: version 1 replied "Hi, I'm a photographer." to "I just got back from the mountains.").
_CHAT = """\
A helpful assistant talks with a user about short videos, live streams and products. It answers briefly, \
in the user's language, and stays on the conversation's topic.

Example:
User: I watched a cooking stream last night.
Assistant: Nice! What did they cook? I can suggest similar streams if you like.

Conversation:
{topic}{memory}{history}User: {message}
Assistant:"""

_GROUNDED_ANSWER = """\
Answer the question from the passages only, and cite the passage ids you used in square brackets. If the \
passages do not hold the answer, say "I don't know" instead.

Passages:
[p1] Shipping: free above 50 euros.
Question: Is shipping free?
Answer: Shipping is free for orders above 50 euros [p1].

Passages:
{passages}Question: {question}
Answer:"""

_STEER_BACK = """\
{head}(The assistant's reply stays on the topic of the conversation: {topic}.)
{cue}"""

_EVENT_CHAIN = """\
Read one clip of a series and list its key events, in order, as a JSON list of short sentences.

Clip: Episode 1
Ana bakes bread at dawn. The oven hums in the dark. Ana gives a loaf to Leo.
Events: ["Ana bakes bread at dawn.", "Ana gives a loaf to Leo."]

Clip: {label}
{content}
Events:"""

_CHARACTER_CHAIN = """\
Read one clip of a series and list the people in it as JSON: each with "name", "aliases" (other names the \
clip uses for them) and "relations" (what they are of another person).

Clip: Episode 1
Ana is also called the baker. Leo is Ana's neighbour. Leo waves.
People: [{{"name": "Ana", "aliases": ["the baker"], "relations": []}}, {{"name": "Leo", "aliases": [], \
"relations": [{{"relation": "neighbour", "of": "Ana"}}]}}]

Clip: {label}
{content}
People:"""

_DCOT_ANSWER = """\
Answer the question about a series from its timeline (the key events of its clips, in order) and its \
characters. Answer in a few words.

Timeline:
{timeline}
Characters:
{characters}
Question: {question}
Answer:"""

_DIRECT_ANSWER = """\
Answer the question about a series from its clips. Answer in a few words.

{clips}
Question: {question}
Answer:"""

_ROT_CORE = """\
Describe the core of a live stream or video in one short sentence: what it is about.

Content:
{content}
Core:"""

_ROT_SCENE = """\
Content:
{content}
Core: {core}
In one short sentence, what happens and who is in it:
Scene:"""

_ROT_ASSOCIATIONS = """\
Content:
{content}
Core: {core}
Scene: {scene}
In one short sentence, what it brings to mind: associations, feelings, something funny about it:
Associations:"""

_ROT_COMMENTS = """\
Core: {core}
Scene: {scene}
Associations: {associations}
Write {n} different short viewer comments about it (accurate, friendly, some funny), as a JSON list of strings.
Comments:"""

_ROT_REPLY = """\
A viewer talks about a live stream or video. The assistant's reply is accurate about it, helpful and engaging.
Core: {core}
Scene: {scene}
Associations: {associations}
User: {message}
Assistant:"""

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("chat", 2, _CHAT),
        Template("grounded_answer", 1, _GROUNDED_ANSWER),
        Template("steer_back", 1, _STEER_BACK),
        Template("event_chain", 1, _EVENT_CHAIN),
        Template("character_chain", 1, _CHARACTER_CHAIN),
        Template("dcot_answer", 1, _DCOT_ANSWER),
        Template("direct_answer", 1, _DIRECT_ANSWER),
        Template("rot_core", 1, _ROT_CORE),
        Template("rot_scene", 1, _ROT_SCENE),
        Template("rot_associations", 1, _ROT_ASSOCIATIONS),
        Template("rot_comments", 1, _ROT_COMMENTS),
        Template("rot_reply", 1, _ROT_REPLY),
    )
}


def template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise FieldError("template", f"no template {name!r}; known: {', '.join(sorted(TEMPLATES))}") from None


def render(name: str, **fields: object) -> str:
    """The template `name` with its fields filled in; every field must be given, and no other."""
    t = template(name)
    missing, unknown = t.fields - fields.keys(), fields.keys() - t.fields
    if missing or unknown:
        raise FieldError(
            "template",
            f"{t.tag} takes fields {sorted(t.fields)}; missing {sorted(missing)}, unknown {sorted(unknown)}",
        )
    return t.text.format(**fields)


def topic_block(topic: str) -> str:
    return f"Topic: {topic.strip()}\n" if topic.strip() else ""


def memory_block(lines: Iterable[str]) -> str:
    """Remembered facts from turns that left the context window, one per line."""
    kept = [line.strip() for line in lines if line.strip()]
    return "".join(f"(Remembered: {line})\n" for line in kept)


def history_block(turns: Sequence[Turn]) -> str:
    """The conversation so far, as "User:"/"Assistant:" lines."""
    speaker = {Role.USER: "User", Role.ASSISTANT: "Assistant"}
    return "".join(f"{speaker[t.role]}: {t.text.strip()}\n" for t in turns)


def passages_block(passages: Iterable[tuple[str, str]]) -> str:
    """(source id, text) pairs as "[id] text" lines."""
    return "".join(f"[{source_id}] {' '.join(text.split())}\n" for source_id, text in passages)


__all__ = [
    "LINE_STOP",
    "REPLY_STOP",
    "STRUCTURED_STOP",
    "TEMPLATES",
    "Template",
    "history_block",
    "memory_block",
    "passages_block",
    "render",
    "template",
    "topic_block",
]
