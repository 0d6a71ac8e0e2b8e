import torch

from recsys.data.batches import METAPATH_SOURCE, METAPATH_TARGET, METAPATHS, random_batch


def test_to_moves_every_tensor_including_the_neighbour_lists():
    batch = random_batch(3).to("meta")
    assert batch.users.device.type == "meta" and batch.labels.device.type == "meta"
    assert {tensor.device.type for tensor in batch.neighbours.values()} == {"meta"}
    assert len(batch) == 3


def test_history_mask_follows_the_padding_index():
    batch = random_batch(4)
    assert torch.equal(batch.history_mask, batch.history_authors > 0)


def test_random_batch_ids_stay_in_the_space_of_their_metapath():
    batch = random_batch(64, num_users=10, num_authors=5)
    for name in METAPATHS:
        limit = 10 if METAPATH_TARGET[name] == "user" else 5
        assert int(batch.neighbours[name].max()) <= limit
    assert set(METAPATH_SOURCE.values()) == {"user", "author"}
