import torch

from generation.mvideo.pipelines.phrases import bind_slots, noun_phrases, overlap, slot_order


def test_noun_phrases_split_at_commas_and_and_without_articles():
    assert noun_phrases("a red circle, a blue square and a green triangle") == [
        "red circle",
        "blue square",
        "green triangle",
    ]
    assert noun_phrases("The dog") == ["dog"]
    assert noun_phrases("") == []
    assert noun_phrases(", and ,") == []


def test_overlap_is_word_jaccard():
    assert overlap("red circle", "a red circle") == 1.0
    assert overlap("circle", "red circle") == 0.5
    assert overlap("dog", "red circle") == 0.0
    assert overlap("", "red circle") == 0.0


def test_labels_move_objects_to_the_slot_of_their_phrase():
    prompt = "a blue square and a red circle"
    assert slot_order(prompt, ["red circle", "blue square"], 3) == [1, 0, None]
    # partial labels ("square") still bind; the unlabelled object takes the free phrase
    assert slot_order(prompt, [None, "square"], 3) == [1, 0, None]


def test_without_labels_objects_bind_in_order():
    assert slot_order("a blue square and a red circle", [None, None], 3) == [0, 1, None]
    assert slot_order("a dog", ["cat", None], 2) == [0, 1]


def test_assignment_maximises_total_overlap():
    # "red circle" overlaps both phrases; the best total puts the plain "circle" label on "blue circle".
    prompt = "a red circle and a blue circle"
    assert slot_order(prompt, ["blue circle", "red circle"], 2) == [1, 0]


def test_more_objects_than_slots_is_an_error():
    try:
        slot_order("a red circle", ["a", "b", "c"], 2)
    except ValueError as error:
        assert "mask slots" in str(error)
    else:
        raise AssertionError("expected ValueError")


def test_bind_slots_permutes_masks_and_shares_one_mask_item_across_prompts():
    masks = torch.zeros(1, 2, 3, 4, 4)
    masks[0, :, 0, 0, 0] = 1  # object labelled "red circle"
    masks[0, :, 1, 3, 3] = 1  # object labelled "blue square"
    prompts = ["a blue square and a red circle", "a red circle and a blue square"]
    bound = bind_slots(masks, prompts, [["red circle", "blue square"]])
    assert bound.shape == (2, 2, 3, 4, 4)
    assert bound[0, 0, 0, 3, 3] == 1 and bound[0, 0, 1, 0, 0] == 1  # swapped for the first prompt
    assert bound[1, 0, 0, 0, 0] == 1 and bound[1, 0, 1, 3, 3] == 1  # kept for the second
    assert bound[:, :, 2].sum() == 0


def test_many_objects_and_phrases_match_quickly_and_exactly():
    names = [f"object{i}" for i in range(12)]
    prompt = ", ".join(f"a {n}" for n in names)
    labels = list(reversed(names))
    order = slot_order(prompt, labels, 12)
    assert order == list(reversed(range(12)))
