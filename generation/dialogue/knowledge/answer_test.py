import pytest

from generation.dialogue.knowledge.answer import NOT_IN_KNOWLEDGE, GroundedAnswerer
from generation.dialogue.types import Attachment, AttachmentKind

PRODUCT = Attachment(
    "kettle",
    AttachmentKind.DOCUMENT,
    title="Nimbus S5 kettle",
    uri="https://shop.example/nimbus-s5",
    text="Weight: 900 g\nCapacity: 1.7 L\nPower: 1800 W\n"
    "Does the Nimbus S5 kettle switch off by itself? Yes, it turns off 30 seconds after boiling.",
)
POLICY = Attachment(
    "policy",
    AttachmentKind.DOCUMENT,
    title="Shipping and returns",
    text="Orders ship within 2 business days of payment. Unused items can be returned within 14 days of delivery.",
)
LIVE = Attachment(
    "live",
    AttachmentKind.LIVE_STREAM,
    title="小丽的直播间：面霜",
    transcript="[00:05] 欢迎新来的朋友，记得点个关注！\n[02:00] 今天面霜只要99元，直播间专属价。\n[04:00] 今晚9点开始抽奖。",
    comments=("面霜多少钱？", "好便宜！"),
    start=1000.0,
    end=1600.0,
)
产品 = Attachment(
    "zh-kettle", AttachmentKind.DOCUMENT, title="云帆S5电水壶", text="重量：900克\n容量：1.7升\n功率：1800瓦"
)
KNOWLEDGE = (PRODUCT, POLICY, LIVE, 产品)


@pytest.fixture(scope="module")
def answerer(encoder):
    return GroundedAnswerer(encoder)


@pytest.mark.parametrize(
    ("question", "text", "source"),
    [
        ("How heavy is the Nimbus S5 kettle?", "900 g", "kettle"),
        ("How much water fits in the Nimbus S5 kettle?", "1.7 L", "kettle"),
        (
            "Does the Nimbus S5 kettle turn itself off?",
            "Yes, it turns off 30 seconds after boiling",
            "kettle",
        ),
        ("云帆S5电水壶有多重？", "900克", "zh-kettle"),
        ("云帆S5电水壶功率多大？", "1800瓦", "zh-kettle"),
    ],
)
def test_facts_answer_with_their_value_and_cite_their_source(answerer, question, text, source):
    reply = answerer.answer(question, KNOWLEDGE)
    assert not reply.abstained and reply.text == text
    (citation,) = reply.citations
    assert citation.source_id == source and text in citation.snippet
    assert reply.confidence >= answerer.threshold_for(question)


def test_a_stream_answer_is_a_clause_cited_with_its_time(answerer):
    reply = answerer.answer("直播间面霜今天卖多少钱？", KNOWLEDGE)
    assert reply.text == "今天面霜只要99元"  # the clause, not "直播间专属价" and never the viewer's comment
    (citation,) = reply.citations
    assert (citation.source_id, citation.start, citation.end) == ("live", 1120.0, 1240.0)
    assert citation.snippet == "今天面霜只要99元，直播间专属价。"  # Chinese text passes through unchanged


def test_a_policy_sentence_answers_a_customer_service_question(answerer):
    reply = answerer.answer("How long do I have to send an item back?", KNOWLEDGE)
    assert reply.citations[0].source_id == "policy" and "14 days" in reply.text


@pytest.mark.parametrize(
    ("question", "language"),
    [
        pytest.param(
            "What is the warranty on the Nimbus S5 kettle?",
            "en",
            # A known miss: the product's name and "kettle" lift "Power: 1800 W" to 0.412 against the calibrated
            # 0.406; the held-out abstention recall (evaluate_test) measures how often this happens.
            marks=pytest.mark.xfail(strict=True, reason="named-product questions can clear the threshold"),
        ),
        ("Which country is the Nimbus S5 kettle made in?", "en"),
        ("Can I pay in instalments?", "en"),
        ("云帆S5电水壶保修多久？", "zh"),
        ("主播多高？", "zh"),
    ],
)
def test_abstains_in_the_questions_language_when_the_knowledge_does_not_say(answerer, question, language):
    reply = answerer.answer(question, KNOWLEDGE)
    assert reply.abstained and reply.citations == ()
    assert reply.text == NOT_IN_KNOWLEDGE[language]
    assert reply.confidence < answerer.threshold_for(question)


def test_without_knowledge_it_abstains_in_the_sessions_language(answerer):
    reply = answerer.answer("??", (), language="zh")
    assert reply.abstained and reply.text == NOT_IN_KNOWLEDGE["zh"] and reply.confidence == 0.0


def test_passages_for_prompts_and_the_index_cache(answerer):
    hits = answerer.passages_for("面霜多少钱？", KNOWLEDGE, k=4)
    assert len(hits) == 4 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert any(p.kind == "comment" for p, _ in hits)  # comments reach prompts, though they never answer
    assert answerer.index(KNOWLEDGE) is answerer.index(list(KNOWLEDGE))
    assert answerer.index(KNOWLEDGE[:1]) is not answerer.index(KNOWLEDGE)


def test_an_uncalibrated_mode_needs_a_threshold(encoder):
    with pytest.raises(ValueError, match="retrieval"):
        GroundedAnswerer(encoder, retrieval="rrf")
    assert GroundedAnswerer(encoder, retrieval="rrf", threshold=0.01).thresholds == {
        "latin": 0.01,
        "cjk": 0.01,
    }
