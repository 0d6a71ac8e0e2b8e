from __future__ import annotations

import time

import pytest
import torch

from generation.dialogue.backends.base import GenerationParams
from generation.dialogue.backends.testing import (
    IMAGE_TOKEN,
    TINY_CONTEXT,
    tiny_causal_lm_dir,
    tiny_vision_language_dir,
)
from generation.dialogue.backends.transformers_lm import TransformersLM
from libs.errors import FieldError

PROMPT = "Welcome to the live stream! Today we cook"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_causal_lm_dir(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture(scope="module")
def lm(model_dir):
    return TransformersLM.from_pretrained(model_dir)


def test_tiny_directory_builds_fast_and_its_tokenizer_round_trips_any_text(tmp_path, model_dir):
    start = time.perf_counter()
    tiny_causal_lm_dir(tmp_path / "again")
    assert time.perf_counter() - start < 2.0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = "Le canapé est bleu. 这个沙发是蓝色的 😀"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_loads_fp32_on_cpu_with_the_config_context_window(lm):
    assert lm.device.type == "cpu"
    assert next(lm.model.parameters()).dtype == torch.float32
    assert lm.context_window == TINY_CONTEXT
    assert lm.name == "lm"


def test_greedy_reply_equals_transformers_generate(lm):
    """The explicit KV-cache loop decodes exactly what `generate` decodes greedily on the same model."""
    ids = lm.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        generated = lm.model.generate(
            ids, do_sample=False, max_new_tokens=16, min_new_tokens=16, eos_token_id=None
        )
    expected_ids = generated[0, ids.shape[1] :].tolist()
    ours = lm.complete(PROMPT, GenerationParams(max_new_tokens=16))
    eos = sorted(lm.eos_ids)
    cut = min((expected_ids.index(e) for e in eos if e in expected_ids), default=len(expected_ids))
    assert ours == lm.tokenizer.decode(expected_ids[:cut], skip_special_tokens=True)


def test_different_seeds_sample_different_replies(lm):
    replies = {
        lm.complete(PROMPT, GenerationParams(max_new_tokens=12, temperature=1.5, seed=s)) for s in range(4)
    }
    assert len(replies) > 1


def test_counts_tokens_with_the_tokenizer(lm):
    text = "the sofa is blue"
    assert lm.count_tokens(text) == len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert lm.count_tokens("沙发是蓝色的") > 1  # one whitespace word, several tokens


def test_a_prompt_longer_than_the_window_keeps_its_end(lm, caplog):
    long_prompt = "quick comments wow so cute " * 200
    assert lm.count_tokens(long_prompt) > TINY_CONTEXT
    params = GenerationParams(max_new_tokens=4)
    reply = lm.complete(long_prompt, params)
    assert "cut to its last" in caplog.text
    # What fell out of the window cannot change the reply.
    assert reply == lm.complete("Le canapé est bleu. " + long_prompt, params)


def test_rejects_a_budget_the_window_cannot_hold_and_images_for_a_text_model(lm):
    with pytest.raises(FieldError, match="max_new_tokens"):
        lm.complete("hi", GenerationParams(max_new_tokens=TINY_CONTEXT))
    with pytest.raises(FieldError, match="images"):
        list(lm.stream("hi", GenerationParams(max_new_tokens=2), images=[object()]))


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return TransformersLM.from_pretrained(
        tiny_vision_language_dir(tmp_path_factory.mktemp("tiny-vlm") / "vlm")
    )


def test_a_vision_language_model_sees_the_images_it_is_given(vlm):
    import numpy as np
    from PIL import Image

    assert vlm.processor is not None and vlm.context_window == TINY_CONTEXT
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]
    params = GenerationParams(max_new_tokens=8)
    prompt = f"{IMAGE_TOKEN} Describe the product:"
    replies = [vlm.complete(prompt, params, images=[image]) for image in images]
    assert len(set(replies)) > 1  # the reply depends on the image
    assert vlm.complete(prompt, params, images=[images[0]]) == replies[0]
    # The KV-cache loop agrees with generate given the same pixels.
    inputs = vlm.processor(text=prompt, images=[images[0]], return_tensors="pt")
    with torch.no_grad():
        generated = vlm.model.generate(**inputs, do_sample=False, max_new_tokens=8, min_new_tokens=8)
    expected_ids = generated[0, inputs["input_ids"].shape[1] :].tolist()
    assert replies[0] == vlm.tokenizer.decode(expected_ids, skip_special_tokens=True)
    assert vlm.complete("Describe the product:", params)  # text alone works too
