import pytest
import torch

from libs.errors import FieldError, UnknownModelVersion
from recsys.data.pages import CATEGORIES, FEATURES, LAYOUTS, OBJECTIVES, options_vector, within_author_cap
from recsys.rerank.models import chosen_log_probs, step_log_probs
from recsys.rerank.serving.engine import RerankEngine, page_batch
from recsys.rerank.serving.requests import AuthorCapInfeasible, FeatureInput, ItemInput, RerankRequest
from recsys.rerank.serving.testing import tiny_model_folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank-engine")
    tiny_model_folder(root / "a", seed=0)
    tiny_model_folder(root / "b", seed=1)
    return RerankEngine.load([root / "a", root / "b"])


def page(count: int = 8, authors: str = "aabbcdef", **fields) -> RerankRequest:
    items = tuple(
        ItemInput(
            f"v{i}",
            authors[i % len(authors)],
            {"ctr": 0.05 * (i + 1), "watch_time": 0.5, "gtr": 7.0},
            FeatureInput(categorical={"category": CATEGORIES[i % 3]}),
        )
        for i in range(count)
    )
    return RerankRequest(**{"user_id": "u1", "items": items, "num_slots": 4, **fields})


def test_page_batch_reads_scores_categories_authors_and_options():
    request = page(
        3,
        authors="xx",
        objective_weights={"ctr": 2.0},
        diversity_weight=0.25,
        max_items_per_author=1,
        layout="column",
    )
    items = list(request.items)
    items[2] = ItemInput("v2", "", {"satisfaction": -0.5}, FeatureInput(categorical={"category": "knitting"}))
    batch = page_batch(RerankRequest(**{**request.__dict__, "items": tuple(items)}))
    assert batch.features.shape == (1, 3, len(FEATURES)) and batch.num_slots == 4
    ctr, watch, satisfaction = (OBJECTIVES.index(name) for name in ("ctr", "watch_time", "satisfaction"))
    assert batch.features[0, 0, ctr] == pytest.approx(0.05) and batch.features[0, 0, satisfaction] == 0.0
    assert batch.features[0, 2, satisfaction] == -0.5 and batch.features[0, 2, watch] == 0.0  # missing: 0
    one_hot = batch.features[0, :, len(OBJECTIVES) :]
    assert one_hot[0].argmax() == CATEGORIES.index(CATEGORIES[0]) and one_hot[0].sum() == 1
    assert one_hot[2].sum() == 0  # unknown category: all zero
    assert batch.authors.tolist() == [[0, 0, -1]]  # same author, same index; none: -1
    assert torch.equal(batch.options[0], options_vector({"ctr": 2.0}, 0.25))
    assert batch.author_cap.tolist() == [1] and batch.layout.tolist() == [LAYOUTS.index("column")]


@pytest.mark.parametrize("decoder", ["nar", "ar"])
def test_rerank_fills_the_slots_with_distinct_items_and_probabilities(engine, decoder):
    request = page(decoder=decoder)
    result = engine.rerank(request)
    ids = [slot.item_id for slot in result.slots]
    assert [slot.position for slot in result.slots] == [0, 1, 2, 3]
    assert len(set(ids)) == 4 and set(ids) <= {item.item_id for item in request.items}
    assert all(0 < slot.probability <= 1 for slot in result.slots)
    assert result.decoder == decoder and result.model_version == engine.default.version
    assert torch.isfinite(torch.tensor([result.expected_utility, *(s.score for s in result.slots)])).all()
    assert engine.rerank(request) == result  # deterministic


@pytest.mark.parametrize("decoder", ["nar", "ar"])
def test_scores_are_the_chosen_logits_and_probabilities_the_masked_softmax_at_each_step(engine, decoder):
    """Checked against the policy's own teacher-forced `step_logits` along the returned page: slot k's score is
    the chosen item's logit given slots < k, its probability the softmax over the items still available."""
    request = page(decoder=decoder, authors="aaabbbcc", max_items_per_author=2)
    result = engine.rerank(request)
    models = engine.default.models
    policy = models.teacher if decoder == "ar" else models.student
    batch = page_batch(request)
    orders = torch.tensor([[[int(s.item_id[1:]) for s in result.slots]]])
    with torch.inference_mode():
        logits = policy.step_logits(batch, orders)  # [1, 1, m, n]
        probabilities = chosen_log_probs(step_log_probs(logits, orders, batch), orders).exp()[0, 0]
        utility = models.evaluator.utility(batch, orders)[0, 0]
    expected = logits[0, 0].gather(1, orders[0, 0, :, None])[:, 0]
    assert [s.score for s in result.slots] == pytest.approx(expected.tolist(), abs=1e-5)
    assert [s.probability for s in result.slots] == pytest.approx(probabilities.tolist(), abs=1e-5)
    assert result.expected_utility == pytest.approx(utility.item(), abs=1e-5)
    first = logits[0, 0, 0]
    assert result.slots[0].score == pytest.approx(
        first.max().item(), abs=1e-5
    )  # greedy: slot 0 is the argmax


def test_the_author_cap_is_kept_by_both_decoders(engine):
    for decoder in ("nar", "ar"):
        request = page(authors="aaaabbbb", num_slots=4, max_items_per_author=2, decoder=decoder)
        result = engine.rerank(request)
        authors = [request.items[int(s.item_id[1:])].author_id for s in result.slots]
        assert max(authors.count(a) for a in set(authors)) <= 2
        batch = page_batch(request)
        order = torch.tensor([[[int(s.item_id[1:]) for s in result.slots]]])
        assert within_author_cap(batch, order).all()


def test_an_infeasible_cap_is_refused_before_decoding(engine):
    with pytest.raises(AuthorCapInfeasible):
        engine.rerank(page(authors="aaaabbbb", num_slots=4, max_items_per_author=1))


def test_options_change_the_expected_utility_and_versions_are_pinned(engine):
    plain = engine.rerank(page())
    weighted = engine.rerank(page(objective_weights={"ctr": 10.0}))
    assert weighted.expected_utility != pytest.approx(plain.expected_utility)
    other = engine.versions[1]
    assert engine.rerank(page(model_version=other)).model_version == other
    with pytest.raises(UnknownModelVersion):
        engine.rerank(page(model_version="nope"))
    with pytest.raises(FieldError) as error:
        engine.rerank(page(num_slots=engine.default.spec.max_slots + 1, count=20))
    assert error.value.field == "num_slots"
