import torch

from recsys.data.pages import OBJECTIVES
from recsys.rerank.models.config import TINY
from recsys.rerank.models.encoder import CandidateEncoder, weighted_scores
from recsys.rerank.models.testing import random_page_batch


def _setup(**kwargs):
    torch.manual_seed(0)
    encoder = CandidateEncoder(TINY).eval()
    batch = random_page_batch(3, 7, 4, torch.Generator().manual_seed(1), **kwargs)
    return encoder, batch


def test_shapes_and_weighted_score():
    encoder, batch = _setup()
    items, context = encoder(batch)
    assert items.shape == (3, 7, TINY.d_model) and context.shape == (3, TINY.d_model)
    expected = sum(batch.options[:, o, None] * batch.features[..., o] for o in range(len(OBJECTIVES)))
    torch.testing.assert_close(weighted_scores(batch), expected)


def test_padding_changes_nothing_and_is_zero():
    encoder, batch = _setup(padding=2)
    items, context = encoder(batch)
    assert (items[:, -2:] == 0).all()
    batch.features[:, -2:] = 100.0
    batch.authors[:, -2:] = batch.authors[:, :1]  # padding that would duplicate an author
    encoder.same_author_bias.data.fill_(2.0)
    items_before, context_before = encoder(
        random_page_batch(3, 7, 4, torch.Generator().manual_seed(1), padding=2)
    )
    items_after, context_after = encoder(batch)
    torch.testing.assert_close(items_after, items_before)
    torch.testing.assert_close(context_after, context_before)


def test_unordered_set_permutation_equivariant():
    encoder, batch = _setup()
    permutation = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    shuffled = batch.select(slice(None))
    shuffled.features, shuffled.authors = batch.features[:, permutation], batch.authors[:, permutation]
    items, context = encoder(batch)
    items_shuffled, context_shuffled = encoder(shuffled)
    torch.testing.assert_close(items_shuffled, items[:, permutation], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(context_shuffled, context, atol=1e-5, rtol=1e-5)


def test_same_author_bias_lets_the_encoder_see_duplicates():
    encoder, batch = _setup()
    batch.authors[:] = torch.arange(7)  # all distinct
    duplicated = batch.select(slice(None))
    duplicated.authors = batch.authors.clone()
    duplicated.authors[:, 1] = duplicated.authors[:, 0]
    # zero-initialised: an untrained encoder ignores authors
    torch.testing.assert_close(encoder(duplicated)[0], encoder(batch)[0])
    encoder.same_author_bias.data.fill_(3.0)
    assert not torch.allclose(encoder(duplicated)[0][:, 0], encoder(batch)[0][:, 0], atol=1e-4)
