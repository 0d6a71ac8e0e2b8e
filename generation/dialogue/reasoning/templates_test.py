import pytest

from generation.dialogue.reasoning.templates import (
    TEMPLATES,
    history_block,
    memory_block,
    passages_block,
    render,
    topic_block,
)
from generation.dialogue.types import Role, Turn
from libs.errors import FieldError


def test_every_template_renders_all_its_fields_and_nothing_is_left_in_braces():
    for t in TEMPLATES.values():
        values = {f: f"<{f}-value>" for f in t.fields}
        out = render(t.name, **values)
        assert all(v in out for v in values.values()), t.tag
        assert "{" + next(iter(t.fields)) + "}" not in out
        assert t.tag == f"{t.name}@{t.version}"


def test_render_refuses_missing_and_unknown_fields_naming_the_template():
    with pytest.raises(FieldError, match="chat@2.*missing.*message"):
        render("chat", topic="", memory="", history="")
    with pytest.raises(FieldError, match="unknown.*extra"):
        render("rot_core", content="x", extra="y")
    with pytest.raises(FieldError, match="no template"):
        render("nope")


def test_field_values_with_braces_pass_through_unchanged():
    assert '{"a": 1}' in render("rot_core", content='{"a": 1}')


def test_empty_blocks_leave_no_lines_and_full_blocks_end_with_newlines():
    assert topic_block("  ") == memory_block(["", " "]) == history_block([]) == passages_block([]) == ""
    turns = [Turn("t1", Role.USER, "hi", 0.0), Turn("t2", Role.ASSISTANT, "hello", 1.0)]
    assert history_block(turns) == "User: hi\nAssistant: hello\n"
    assert passages_block([("p1", "a\n b")]) == "[p1] a b\n"
    chat = render("chat", topic="", memory="", history="", message="你好")
    assert chat.endswith("Conversation:\nUser: 你好\nAssistant:")
    assert "\n\n" not in chat.split("Conversation:")[1]
