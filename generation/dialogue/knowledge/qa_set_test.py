import pytest

from generation.dialogue.knowledge.passages import fact_parts, passages_of
from generation.dialogue.knowledge.qa_set import ATTRIBUTES, BRANDS, qa_sessions


def test_sessions_are_deterministic_by_seed_and_split():
    assert qa_sessions("dev", 3, 2) == qa_sessions("dev", 3, 2)
    assert qa_sessions("dev", 3, 2) != qa_sessions("dev", 4, 2)
    assert qa_sessions("dev", 3, 2) != qa_sessions("test", 3, 2)
    with pytest.raises(ValueError, match="split"):
        qa_sessions("train", 0, 1)


def test_dev_and_test_share_no_product():
    dev_brands = {name for pair in BRANDS["dev"] for name in pair}
    test_brands = {name for pair in BRANDS["test"] for name in pair}
    assert not dev_brands & test_brands
    titles = {
        split: {
            a.title for s in qa_sessions(split, 0, 6) for a in s.attachments if "product" in a.attachment_id
        }
        for split in ("dev", "test")
    }
    assert titles["dev"] and titles["test"] and not titles["dev"] & titles["test"]


def test_both_languages_and_both_kinds_of_question():
    sessions = qa_sessions("test", 0, 4)
    assert [s.language for s in sessions] == ["en", "zh", "en", "zh"]
    for session in sessions:
        categories = {(i.category, i.answerable) for i in session.items}
        assert {
            ("product", True),
            ("product", False),
            ("faq", True),
            ("policy", True),
            ("stream", True),
        } <= categories
        assert {("policy", False), ("stream", False)} <= categories
        assert all(i.language == session.language for i in session.items)


def test_gold_answers_are_stated_in_their_source_and_unanswerable_attributes_are_not():
    for session in qa_sessions("dev", 1, 6):
        by_id = {a.attachment_id: a for a in session.attachments}
        keys_of = {
            a.title: {fact_parts(p.text)[0] for p in passages_of([a]) if p.kind == "fact"}
            for a in session.attachments
        }
        for item in session.items:
            if item.answerable:
                assert item.answer and item.answer in by_id[item.source_id].content()
            elif item.category == "product":
                (title,) = [t for t in keys_of if t and t in item.question]
                asked = [
                    a
                    for a in ATTRIBUTES
                    if any(q.format(name=title) == item.question for q in a.questions[session.language])
                ]
                assert asked and asked[0].key[session.language] not in keys_of[title]


def test_questions_are_mostly_paraphrases_not_the_keys_words():
    items = [
        (session.language, item)
        for session in qa_sessions("dev", 2, 8)
        for item in session.items
        if item.category == "product" and item.answerable
    ]
    literal = [
        item
        for language, item in items
        if any(a.key[language].lower() in item.question.lower() for a in ATTRIBUTES)
    ]
    assert len(literal) <= len(items) / 3
