from generation.dialogue.knowledge.passages import (
    CAPTION,
    COMMENT,
    FACT,
    FAQ,
    SENTENCE,
    TRANSCRIPT,
    fact_parts,
    passages_of,
    split_sentences,
)
from generation.dialogue.types import Attachment, AttachmentKind


def test_sentences_split_in_english_and_chinese_but_not_inside_numbers():
    text = "Orders ship in 2 days. It weighs 3.5 kg! 这款面霜今天只要99元。还送小样！真的吗？"
    assert split_sentences(text) == [
        "Orders ship in 2 days.",
        "It weighs 3.5 kg!",
        "这款面霜今天只要99元。",
        "还送小样！",
        "真的吗？",
    ]
    assert split_sentences("one\n\ntwo") == ["one", "two"]


def test_documents_split_into_facts_faq_pairs_and_sentences():
    doc = Attachment(
        "d1",
        AttachmentKind.DOCUMENT,
        title="Aurora X2",
        text="Battery life: 30 hours\n重量：180克\nDoes it come with a charger? Yes, a 20 W one.\n"
        "We ship worldwide. Returns within 30 days.\nSee https://example.com/x for more",
    )
    passages = passages_of([doc])
    assert [(p.kind, p.text) for p in passages] == [
        (FACT, "Battery life: 30 hours"),
        (FACT, "重量：180克"),
        (FAQ, "Does it come with a charger? Yes, a 20 W one."),
        (SENTENCE, "We ship worldwide."),
        (SENTENCE, "Returns within 30 days."),
        (SENTENCE, "See https://example.com/x for more"),
    ]
    assert fact_parts(passages[1].text) == ("重量", "180克")
    assert {p.source_id for p in passages} == {"d1"} and len({p.passage_id for p in passages}) == len(
        passages
    )
    assert all(p.title == "Aurora X2" and p.start is None for p in passages)


def test_stamped_transcript_sentences_run_to_the_next_stamp():
    live = Attachment(
        "s1",
        AttachmentKind.LIVE_STREAM,
        transcript="[00:10] 大家好。今天面霜99元。\n[01:00] Next item.\n[1:00:00.5] Bye.",
        start=1000.0,
        end=5000.0,
    )
    timed = [(p.text, p.start, p.end) for p in passages_of([live])]
    assert timed == [
        ("大家好。", 1010.0, 1060.0),
        ("今天面霜99元。", 1010.0, 1060.0),
        ("Next item.", 1060.0, 4600.5),
        ("Bye.", 4600.5, 5000.0),
    ]


def test_unstamped_transcript_shares_the_span_by_characters():
    clip = Attachment("c", AttachmentKind.VIDEO, transcript="aaaa. bbbbbbbbbbbbbbb.", start=10.0, end=30.0)
    (first, second) = passages_of([clip])
    assert first.start == 10.0 and second.end == 30.0 and first.end == second.start
    assert first.end - first.start < second.end - second.start  # the longer sentence takes longer to say
    untimed = passages_of([Attachment("c", AttachmentKind.VIDEO, transcript="One. Two.")])
    assert all(p.kind == TRANSCRIPT and p.start is None and p.end is None for p in untimed)


def test_captions_and_comments_and_text_pass_through_unchanged():
    live = Attachment(
        "s1",
        AttachmentKind.LIVE_STREAM,
        title="小丽的直播间：口红",
        caption="限时秒杀：全场立减40%",
        comments=("好便宜！", "  ", "主播好美 😍"),
        transcript="今天口红只要99元，直播间专属价。",
    )
    passages = passages_of([live])
    assert [(p.kind, p.text) for p in passages] == [
        (CAPTION, "限时秒杀：全场立减40%"),
        (TRANSCRIPT, "今天口红只要99元，直播间专属价。"),
        (COMMENT, "好便宜！"),
        (COMMENT, "主播好美 😍"),
    ]
    content = live.content()
    assert all(p.text in content for p in passages)
