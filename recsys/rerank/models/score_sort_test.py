import torch

from recsys.rerank.models.decoding import greedy
from recsys.rerank.models.encoder import weighted_scores
from recsys.rerank.models.score_sort import ScoreAndSort
from recsys.rerank.models.testing import random_page_batch


def test_greedy_is_the_sort_by_weighted_score_without_caps():
    batch = random_page_batch(5, 9, 4, torch.Generator().manual_seed(0), padding=2)
    scores = weighted_scores(batch).masked_fill(~batch.valid, -torch.inf)
    expected = scores.argsort(dim=-1, descending=True)[:, :4]
    assert torch.equal(greedy(ScoreAndSort(), batch).orders, expected)
    assert not list(ScoreAndSort().parameters())


def test_greedy_with_a_cap_takes_the_best_candidate_whose_author_has_room():
    batch = random_page_batch(6, 10, 5, torch.Generator().manual_seed(3), author_cap=1, authors=5)
    orders = greedy(ScoreAndSort(), batch).orders
    scores = weighted_scores(batch)
    for row in range(batch.size):
        taken, authors = [], []
        for index in scores[row].argsort(descending=True).tolist():
            author = int(batch.authors[row, index])
            if author < 0 or author not in authors:
                taken.append(index)
                authors.append(author)
        assert orders[row].tolist() == taken[:5]
