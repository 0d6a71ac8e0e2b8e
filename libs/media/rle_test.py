import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pycocotools import mask as mask_utils

from libs.media import rle


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.bool_, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)))
def test_string_codec_matches_pycocotools(mask):
    counts = rle.encode_mask(mask)
    runs = rle.counts_from_string(counts)
    assert rle.counts_to_string(runs) == counts
    assert sum(runs) == mask.size
    np.testing.assert_array_equal(rle.decode_counts(runs, *mask.shape), mask)
    np.testing.assert_array_equal(rle.decode_mask(counts, *mask.shape), mask)
    # pycocotools reads our uncompressed runs back to the same compressed string.
    assert mask_utils.frPyObjects({"size": list(mask.shape), "counts": runs}, *mask.shape)["counts"] == counts


def test_column_major_runs():
    mask = np.zeros((2, 3), dtype=bool)
    mask[0, 1] = True  # (y=0, x=1) -> index x * H + y = 2
    assert rle.counts_from_string(rle.encode_mask(mask)) == [2, 1, 3]
    mask[0, 0] = True
    assert rle.counts_from_string(rle.encode_mask(mask)) == [0, 1, 1, 1, 3]


def test_box_without_decoding():
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:3, 2:5] = True
    counts = rle.encode_mask(mask)
    assert rle.bbox_xywh(counts, 5, 6) == (2, 1, 3, 2)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([1, 2], "sum to 3, expected"),
        ([7, -1, 0], "non-negative"),
        (b"a\x7f", "invalid character"),
        (b"o", "truncated"),
    ],
)
def test_untrusted_counts_are_checked(counts, message):
    with pytest.raises(ValueError, match=message):
        rle.decode_untrusted(counts, 2, 3)


@given(st.lists(st.integers(0, 5000), min_size=1, max_size=20))
def test_string_codec_round_trips_any_runs(runs):
    assert rle.counts_from_string(rle.counts_to_string(runs)) == runs
