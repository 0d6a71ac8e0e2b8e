from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs.media import MaskObject, MaskSequence
from libs.serving.operations.payload import dump_job, load_job


@dataclass(frozen=True)
class Inner:
    video: bytes | str
    threshold: float = 0.5


@dataclass(frozen=True)
class Job:
    prompt: str
    inner: Inner | None
    masks: MaskSequence | None
    sizes: tuple[int, ...] = ()


def test_a_job_round_trips_with_bytes_nested_dataclasses_and_masks():
    id_maps = np.zeros((2, 4, 6), np.int32)
    id_maps[:, 1:3, 2:4] = 1
    masks = MaskSequence.from_id_maps(id_maps, [MaskObject(1, "ball", 0.9)], 8.0)
    job = Job("a ball", Inner(b"\x00\xffmp4", 0.25), masks)
    back = load_job(Job, dump_job(job))
    assert back.prompt == "a ball" and back.inner == Inner(b"\x00\xffmp4", 0.25)
    assert np.array_equal(np.stack(list(back.masks.iter_id_maps())), id_maps)
    assert back.masks.objects == masks.objects
    assert load_job(Job, dump_job(Job("p", Inner("/data/v.mp4"), None))).inner.video == "/data/v.mp4"


def test_the_payload_is_deterministic():
    job = Job("p", Inner(b"x"), None)
    assert dump_job(job) == dump_job(Job("p", Inner(b"x"), None))
