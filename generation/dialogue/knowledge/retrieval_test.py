import numpy as np
import pytest

from generation.dialogue.knowledge.passages import passages_of
from generation.dialogue.knowledge.retrieval import BM25, KnowledgeIndex, terms
from generation.dialogue.types import Attachment, AttachmentKind

EARBUDS = Attachment(
    "earbuds",
    AttachmentKind.DOCUMENT,
    title="Aurora X2 earbuds",
    text="Weight: 48 g\nBattery life: 30 hours\nColors: black and white\nMade in: Vietnam",
)
KETTLE = Attachment(
    "kettle",
    AttachmentKind.DOCUMENT,
    title="Nimbus S5 kettle",
    text="Weight: 900 g\nCapacity: 1.7 L\nPower: 1800 W\nMade in: Germany",
)
耳机 = Attachment(
    "zh-earbuds", AttachmentKind.DOCUMENT, title="极光X2耳机", text="重量：48克\n续航：30小时\n产地：越南"
)
水壶 = Attachment(
    "zh-kettle", AttachmentKind.DOCUMENT, title="云帆S5电水壶", text="重量：900克\n容量：1.7升\n功率：1800瓦"
)


def test_terms_are_words_and_cjk_character_ngrams_without_stop_words():
    assert terms("How many returns does the Aurora X2 have?") == ["return", "aurora", "x2"]
    assert terms("面霜多少钱") == [
        "面",
        "霜",
        "多",
        "少",
        "钱",
        "面霜",
        "霜多",
        "少钱",
    ]  # the bigram 多少 is a stop word
    assert terms("重量：180克 AirPods") == ["重", "量", "重量", "180", "克", "airpod"]


def test_bm25_is_normalised_and_prefers_the_matching_document():
    bm25 = BM25([terms("battery life thirty hours"), terms("weight forty grams"), terms("made in vietnam")])
    scores = bm25.scores(terms("battery life"))
    assert np.argmax(scores) == 0 and scores[1] == scores[2] == 0
    assert 0 < scores[0] <= 1
    assert np.all(bm25.scores(terms("warranty")) == 0)


@pytest.mark.parametrize(
    ("question", "source", "fact"),
    [
        ("How heavy is the Nimbus S5 kettle?", "kettle", "Weight: 900 g"),
        ("Which country produces the Aurora X2 earbuds?", "earbuds", "Made in: Vietnam"),
        ("How much water can the Nimbus S5 kettle hold?", "kettle", "Capacity: 1.7 L"),
        ("云帆S5电水壶有多重？", "zh-kettle", "重量：900克"),
        ("极光X2耳机是哪里产的？", "zh-earbuds", "产地：越南"),
        ("云帆S5电水壶功率多大？", "zh-kettle", "功率：1800瓦"),
    ],
)
def test_search_finds_the_right_products_fact_in_both_languages(encoder, question, source, fact):
    index = KnowledgeIndex(passages_of([EARBUDS, KETTLE, 耳机, 水壶]), encoder)
    (best, score), *rest = index.search(question, k=3)
    assert (best.source_id, best.text) == (source, fact)
    assert len(rest) == 2 and all(score >= s for _, s in rest)


def test_modes_rank_with_their_own_signal(encoder):
    passages = passages_of([EARBUDS, KETTLE])
    question = "What does the Nimbus S5 kettle weigh?"
    lexical = KnowledgeIndex(passages, encoder, mode="lexical")
    dense = KnowledgeIndex(passages, encoder, mode="dense")
    hybrid = KnowledgeIndex(passages, encoder, mode="hybrid", dense_weight=0.5)
    np.testing.assert_allclose(
        hybrid.scores(question), 0.5 * dense.scores(question) + 0.5 * lexical.scores(question), rtol=1e-5
    )
    assert lexical.vectors.size == 0  # the lexical baseline never runs the encoder over passages
    rrf = KnowledgeIndex(passages, encoder, mode="rrf").search(question, k=1)
    assert rrf[0][0].source_id == "kettle"
    assert KnowledgeIndex([], encoder).search(question) == []
    with pytest.raises(ValueError, match="mode"):
        KnowledgeIndex(passages, encoder, mode="sparse")
