import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kmono.common.v1 import media_pb2
from PIL import Image
from pycocotools import mask as mask_utils

from libs.errors import FieldError
from libs.media import (
    BoundingBox,
    MaskObject,
    MaskSequence,
    MaskSequenceBuilder,
    Visibility,
    dumps,
    from_coco_dict,
    from_proto,
    load,
    load_coco_video,
    load_npz,
    load_png_frames,
    loads,
    save,
    to_coco_dict,
    to_proto,
)

FORMATS = ("json", "npz", "pb", "zip")


@st.composite
def mask_sequences(draw):
    """Small random sequences: 0-4 objects (ids up to 65535), empty frames, objects absent on some frames,
    and sometimes per-frame scores, occlusion flags and box-only objects."""
    t, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    id_pool = st.one_of(st.integers(1, 300), st.sampled_from([255, 256, 1000, 65535]))
    ids = draw(st.lists(id_pool, max_size=4, unique=True))
    index = draw(hnp.arrays(np.int64, (t, h, w), elements=st.integers(0, len(ids))))
    maps = np.asarray([0, *ids], dtype=np.int64)[index]
    maps[draw(st.lists(st.booleans(), min_size=t, max_size=t))] = 0
    fps = draw(st.sampled_from([1, 8, 12.5, 24, 29.97, 30000 / 1001, 60]))
    labels = st.text(max_size=6)
    scores = st.floats(0, 1)
    objects = [MaskObject(i, draw(labels), draw(scores)) for i in ids]
    if draw(st.booleans()):  # an object absent from every frame
        ghost = max(ids, default=0) + 1
        objects.append(MaskObject(ghost, "ghost", 0.5))
        ids = [*ids, ghost]
    builder = MaskSequenceBuilder(w, h, fps)
    extras = draw(st.booleans())
    for id_map in maps:
        present = sorted(set(np.unique(id_map).tolist()) - {0})
        absent = [i for i in ids if i not in present]
        kwargs = {}
        if extras and ids:
            boxed = draw(st.lists(st.sampled_from(absent), unique=True)) if absent else []
            boxes = {}
            for i in boxed:
                x0, x1 = sorted(draw(st.lists(st.floats(0, w), min_size=2, max_size=2)))
                y0, y1 = sorted(draw(st.lists(st.floats(0, h), min_size=2, max_size=2)))
                boxes[i] = (x0, y0, x1, y1)
            alive = present + boxed
            kwargs = {
                "boxes": boxes,
                "scores": {i: draw(scores) for i in alive if draw(st.booleans())},
                "occluded": [i for i in alive if draw(st.booleans())],
            }
        builder.add_frame(id_map, **kwargs)
    return builder.build(objects), maps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask_sequences())
def test_every_codec_round_trips_exactly(case):
    seq, maps = case
    np.testing.assert_array_equal(seq.to_dense(), maps)
    for fmt in FORMATS:
        data = dumps(seq, fmt)
        assert loads(data, fmt) == seq, fmt
        assert loads(data) == seq, f"{fmt} (sniffed)"
    assert from_proto(to_proto(seq, compressed=False)) == seq
    assert from_coco_dict(json.loads(json.dumps(to_coco_dict(seq)))) == seq


@settings(max_examples=25, deadline=None)
@given(mask_sequences())
def test_coco_json_decodes_independently_with_pycocotools(case):
    seq, maps = case
    data = json.loads(dumps(seq, "json"))
    assert data["fps"] == seq.fps and [o["label"] for o in data["objects"]] == [o.label for o in seq.objects]
    for t, frame in enumerate(data["frames"]):
        assert frame["frame_index"] == t
        for ann in frame["annotations"]:
            oid = ann["object_id"]
            if ann["segmentation"] is None:
                assert seq.rle_counts(t, oid) is None
                continue
            decoded = mask_utils.decode(ann["segmentation"])
            np.testing.assert_array_equal(decoded.astype(bool), maps[t] == oid)
            assert ann["area"] == int(mask_utils.area(ann["segmentation"]))
            assert ann["bbox"] == mask_utils.toBbox(ann["segmentation"]).tolist()
        listed = {a["object_id"] for a in frame["annotations"] if a["segmentation"] is not None}
        assert listed == set(np.unique(maps[t]).tolist()) - {0}


def example_sequence():
    maps = np.zeros((3, 6, 8), dtype=np.int64)
    maps[0, 1:3, 1:4] = 1
    maps[0, 4:6, 5:8] = 2
    maps[1, 2:4, 2:5] = 1
    b = MaskSequenceBuilder(8, 6, 8)
    b.add_frame(maps[0], scores={1: 0.75}, occluded=[2])
    b.add_frame(maps[1], boxes={2: (1.5, 0, 4, 2.25)})
    b.add_frame(maps[2])
    return b.build([MaskObject(1, "dog", 0.9), MaskObject(2, "ball")])


@pytest.mark.parametrize(
    "name", ["seq.json", "seq.npz", "seq.pb", "seq.binpb", "seq.zip", "seq_dir", "seq.d/"]
)
def test_save_load_dispatch_by_extension(tmp_path, name):
    seq = example_sequence()
    path = f"{tmp_path}/{name}"  # a str keeps the trailing slash of "seq.d/"
    save(seq, path)
    assert load(path) == seq
    assert load(tmp_path / name) == seq


def test_unknown_extension_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"unknown mask sequence extension '\.txt'.*\.json"):
        save(example_sequence(), tmp_path / "seq.txt")
    with pytest.raises(ValueError, match="unknown mask sequence extension"):
        load(tmp_path / "seq.txt")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown mask sequence format"):
        dumps(example_sequence(), "gif")


def test_proto_fields_follow_the_contract():
    seq = example_sequence()
    msg = to_proto(seq)
    assert (msg.width, msg.height, msg.num_frames, msg.fps) == (8, 6, 3, 8.0)
    assert [(o.id, o.label) for o in msg.objects] == [(1, "dog"), (2, "ball")]
    assert [f.frame_index for f in msg.frames] == [0, 1, 2]
    first = {om.object_id: om for om in msg.frames[0].object_masks}
    assert (
        first[2].visibility == media_pb2.VISIBILITY_OCCLUDED
        and first[1].visibility == media_pb2.VISIBILITY_VISIBLE
    )
    assert first[1].score == 0.75
    assert (first[1].box.x0, first[1].box.y0, first[1].box.x1, first[1].box.y1) == (1, 1, 4, 3)
    rle = first[1].rle
    assert (rle.height, rle.width) == (6, 8) and not rle.counts
    coco = {"size": [6, 8], "counts": rle.compressed_counts}
    np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), seq.mask(0, 1))
    # Uncompressed counts: column-major runs starting with background.
    runs = list(to_proto(seq, compressed=False).frames[0].object_masks[0].rle.counts)
    flat = seq.mask(0, 1).flatten(order="F")
    assert runs[0] == int(np.argmax(flat)) and sum(runs) == 48
    box_only = msg.frames[1].object_masks[1]
    assert not box_only.HasField("rle") and box_only.box.x0 == 1.5
    assert from_proto(media_pb2.MaskSequence.FromString(msg.SerializeToString())) == seq


def test_proto_visibility_unspecified_and_absent():
    msg = to_proto(example_sequence())
    for om in msg.frames[0].object_masks:
        om.visibility = media_pb2.VISIBILITY_UNSPECIFIED
    absent = msg.frames[2].object_masks.add(object_id=2, visibility=media_pb2.VISIBILITY_ABSENT)
    seq = from_proto(msg)
    assert seq.visibility(0, 2) == Visibility.VISIBLE and not seq.visible(2, 2)
    absent.rle.CopyFrom(msg.frames[0].object_masks[1].rle)
    with pytest.raises(ValueError, match=r"frames\[2\].object_masks\[0\].visibility: is VISIBILITY_ABSENT"):
        from_proto(msg)


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (lambda m: setattr(m, "width", 0), "width", r"must be > 0"),
        (lambda m: setattr(m, "num_frames", 4), "num_frames", "is 4 but the sequence has 3 frames"),
        (lambda m: setattr(m, "fps", -1), "fps", "must be > 0"),
        (lambda m: setattr(m.frames[1], "frame_index", 5), "frames[1].frame_index", r"is 5, expected 1"),
        (lambda m: setattr(m.objects[1], "id", 1), "objects", "duplicate object id 1"),
        (lambda m: setattr(m.objects[0], "id", 0), "objects", "reserved for the background"),
        (lambda m: m.objects.pop(), "objects", r"ids \[2\] that are not in objects"),
        (
            lambda m: setattr(m.frames[0].object_masks[0].rle, "height", 5),
            "frames[0].object_masks[0].rle",
            r"size is 5x8 \(HxW\)",
        ),
        (
            lambda m: setattr(m.frames[0].object_masks[0].rle, "compressed_counts", b"1"),
            "frames[0].object_masks[0].rle",
            "sum to 1, expected",
        ),
        (
            lambda m: m.frames[0].object_masks[0].rle.counts.append(48),
            "frames[0].object_masks[0].rle",
            "got both",
        ),
        (
            lambda m: m.frames[0].object_masks[0].rle.ClearField("compressed_counts"),
            "frames[0].object_masks[0].rle",
            "got neither",
        ),
        (
            lambda m: m.frames[0].object_masks.add().CopyFrom(m.frames[0].object_masks[0]),
            "frames[0].object_masks[2]",
            "object 1 has two masks",
        ),
        (
            lambda m: setattr(m.frames[0].object_masks[0], "score", 3),
            "frames[0]",
            r"score of object 1 must be in \[0, 1\]",
        ),
    ],
)
def test_from_proto_names_the_field_at_fault(edit, field, message):
    msg = to_proto(example_sequence())
    edit(msg)
    with pytest.raises(FieldError, match=message) as caught:
        from_proto(msg)
    assert caught.value.field == field


def test_loads_rejects_garbage():
    with pytest.raises(ValueError, match="not a serialized kmono.common.v1.MaskSequence"):
        loads(b"\xff\xff\xff garbage", "pb")
    with pytest.raises(ValueError, match="not valid JSON"):
        loads(b"{nope")
    with pytest.raises(ValueError, match="format must be 'kmono.mask_sequence'") as caught:
        loads(json.dumps({"format": "something"}).encode())
    assert "something" not in str(caught.value)  # strings from the input never come back in errors


def test_overlapping_external_masks_are_rejected_or_resolved():
    data = to_coco_dict(example_sequence())
    frame0 = data["frames"][0]["annotations"]
    frame0[1]["segmentation"] = frame0[0]["segmentation"]
    with pytest.raises(ValueError, match=r"overlaps object\(s\) \[1\]"):
        from_coco_dict(data)
    assert from_coco_dict(data, on_overlap="last_wins").area(0, 1) == 0


def test_png_frames_are_palette_or_16_bit_and_readable_without_sidecar(tmp_path):
    seq = example_sequence()
    save(seq, tmp_path / "small")
    image = Image.open(tmp_path / "small" / "00000.png")
    assert image.mode == "P" and image.getpalette()[3:6] == [128, 0, 0]
    np.testing.assert_array_equal(np.asarray(image), seq.id_map(0))

    big = MaskSequence.from_id_maps(seq.to_dense() * 300, None, 8)
    save(big, tmp_path / "big.zip")
    with zipfile.ZipFile(tmp_path / "big.zip") as zf:
        assert sorted(zf.namelist()) == ["00000.png", "00001.png", "00002.png", "sequence.json"]
        frame = Image.open(io.BytesIO(zf.read("00000.png")))
    assert frame.mode.startswith("I;16") and int(np.asarray(frame).max()) == 600
    assert load(tmp_path / "big.zip") == big

    (tmp_path / "small" / "sequence.json").unlink()
    with pytest.raises(ValueError, match="pass fps="):
        load_png_frames(tmp_path / "small")
    bare = load_png_frames(tmp_path / "small", fps=8)
    np.testing.assert_array_equal(bare.to_dense(), seq.to_dense())

    with pytest.raises(ValueError, match="ids up to 65535"):
        save(MaskSequence.from_id_maps(seq.to_dense() * 40000, None, 8), tmp_path / "huge.zip")


def test_png_zip_with_a_top_folder(tmp_path):
    seq = example_sequence()
    with (
        zipfile.ZipFile(io.BytesIO(dumps(seq, "zip"))) as src,
        zipfile.ZipFile(tmp_path / "wrapped.zip", "w") as dst,
    ):
        for name in src.namelist():
            dst.writestr(f"clip/{name}", src.read(name))
    assert load(tmp_path / "wrapped.zip") == seq


def test_dense_npz(tmp_path):
    seq = example_sequence()
    np.savez_compressed(tmp_path / "dense.npz", id_maps=seq.to_dense(), fps=np.float64(8))
    loaded = load(tmp_path / "dense.npz")
    np.testing.assert_array_equal(loaded.to_dense(), seq.to_dense())
    assert loaded.fps == 8 and loaded.object_ids == (1, 2)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a mask sequence NPZ"):
        load_npz(tmp_path / "other.npz")


def coco_video_file():
    h, w = 4, 5
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[1:3, 0:2] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    compressed["counts"] = compressed["counts"].decode()
    uncompressed = {"size": [h, w], "counts": [1, 2, 2, 2, 13]}
    polygon = [[3.0, 0.0, 5.0, 0.0, 5.0, 2.0, 3.0, 2.0]]
    return {
        "videos": [
            {"id": 7, "width": w, "height": h, "length": 3, "file_names": ["a.jpg", "b.jpg", "c.jpg"]},
            {"id": 8, "width": w, "height": h, "length": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 101, "video_id": 7, "category_id": 2, "segmentations": [compressed, None, uncompressed],
             "bboxes": [[0, 1, 2, 2], [1, 1, 1, 1], [0, 1, 2, 2]]},
            {"id": 102, "video_id": 7, "category_id": 1, "score": 0.5, "segmentations": [polygon, None, None]},
            {"id": 103, "video_id": 8, "category_id": 1, "segmentations": [None]},
        ],
    }  # fmt: skip


def test_coco_video_loader(tmp_path):
    data = coco_video_file()
    with pytest.raises(ValueError, match=r"has 2 videos \[7, 8\]; pass video_id="):
        load_coco_video(data, fps=6)
    with pytest.raises(ValueError, match="has no fps field; pass fps="):
        load_coco_video(data, video_id=7)
    seq = load_coco_video(data, video_id=7, fps=6)
    assert seq.objects == (MaskObject(1, "dog", 1.0), MaskObject(2, "person", 0.5))
    assert (seq.num_frames, seq.width, seq.height, seq.fps) == (3, 5, 4, 6.0)
    assert seq.area(0, 1) == 4 and seq.box(0, 1) == BoundingBox(0, 1, 2, 3)
    assert seq.box(0, 2) == BoundingBox(3, 0, 5, 2)  # the polygon, rasterised by pycocotools
    assert seq.box(1, 1) == BoundingBox(1, 1, 2, 2) and seq.area(1, 1) == 0  # box only
    assert not seq.visible(1, 2) and not seq.visible(2, 2)
    np.testing.assert_array_equal(seq.mask(2, 1), seq.mask(0, 1))  # the same mask as uncompressed runs

    single = {**data, "videos": [data["videos"][0]]}
    single["videos"][0]["fps"] = 6
    (tmp_path / "vis.json").write_text(json.dumps(single))
    assert load(tmp_path / "vis.json") == seq
