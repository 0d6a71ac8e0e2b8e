import numpy as np
import pytest
import torch

from generation.mvideo.models.mask_encoder import MaskEncoder, mask_sequence_to_slots
from libs.media import MaskObject, MaskSequence


def test_output_matches_the_causal_latent_grid():
    encoder = MaskEncoder(num_mask_slots=3, mask_in_channels=5, hidden_channels=8, num_layers=1)
    out = encoder(torch.rand(2, 9, 3, 32, 48))
    assert out.shape == (2, 3, 5, 4, 6)
    assert encoder.num_latent_frames(49) == 13


def test_pixel_space_encoder_keeps_frames_and_size():
    encoder = MaskEncoder(
        num_mask_slots=1, mask_in_channels=2, spatial_compression_ratio=1, temporal_compression_ratio=1
    )
    assert encoder(torch.rand(1, 8, 1, 16, 16)).shape == (1, 8, 2, 16, 16)


def test_latent_frames_see_only_their_own_frames():
    """Causal grouping: latent frame 0 = frame 0 alone, latent frame j = frames 4j-3 .. 4j."""
    encoder = MaskEncoder(num_mask_slots=1, mask_in_channels=4, hidden_channels=8, num_layers=0)
    masks = torch.zeros(1, 9, 1, 16, 16)
    base = encoder(masks)
    masks[:, 6, :, 3, 3] = 1.0  # a single pixel in frame 6 -> latent frame 2, cell (0, 0)
    changed = (encoder(masks) - base).abs().sum(dim=2)[0]  # (F, h, w)
    assert changed[2, 0, 0] > 0
    changed[2, 0, 0] = 0
    assert torch.count_nonzero(changed) == 0


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 8, 2, 16, 16), "1 \\+ k"), ((1, 9, 3, 16, 16), "slots"), ((1, 9, 2, 12, 16), "multiples of 8")],
)
def test_bad_mask_videos_raise(shape, message):
    encoder = MaskEncoder(num_mask_slots=2, mask_in_channels=4)
    with pytest.raises(ValueError, match=message):
        encoder(torch.zeros(shape))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = MaskEncoder(num_mask_slots=2, mask_in_channels=4, hidden_channels=8)
    encoder.save_pretrained(tmp_path)
    loaded = MaskEncoder.from_pretrained(tmp_path)
    x = torch.rand(1, 5, 2, 16, 16)
    assert torch.equal(encoder(x), loaded(x))


def _sequence():
    id_maps = np.zeros((3, 8, 8), dtype=np.int32)
    id_maps[:, 1:3, 1:3] = 7
    id_maps[1:, 5:7, 5:7] = 2
    return MaskSequence.from_id_maps(id_maps, fps=8, objects=[MaskObject(2, "cat"), MaskObject(7, "dog")])


def test_mask_sequence_slots_follow_ascending_ids_and_frame_range():
    slots = mask_sequence_to_slots(_sequence(), num_slots=3)
    assert slots.shape == (3, 3, 8, 8)
    assert slots[0, 0].sum() == 0 and slots[1, 0].sum() == 4  # id 2 appears in frame 1
    assert slots[:, 1].sum() == 12  # id 7 in every frame
    assert slots[:, 2].sum() == 0  # unused slot
    reordered = mask_sequence_to_slots(_sequence(), num_slots=2, object_ids=[7, 2], start=1, stop=3)
    assert reordered.shape == (2, 2, 8, 8)
    assert torch.equal(reordered[:, 0], slots[1:, 1])


def test_mask_sequence_with_too_many_objects_raises():
    with pytest.raises(ValueError, match="2 objects"):
        mask_sequence_to_slots(_sequence(), num_slots=1)
    with pytest.raises(ValueError, match="not in the mask sequence"):
        mask_sequence_to_slots(_sequence(), num_slots=2, object_ids=[3])
