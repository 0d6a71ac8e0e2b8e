"""Every decoder a request's bytes reach (mask sequences as JSON, NPZ, PNG zip, protobuf; videos) takes any bytes
and either decodes them within `DecodeLimits` or raises ValueError (a FieldError names the field), which the
services answer as INVALID_ARGUMENT: never another exception, never an allocation past the limits.

Bounded (`make test`): hypothesis, 200 inputs per decoder, half of them mutations of a valid encoding. Long
(`make reliability`): 10,000 per decoder, and atheris coverage-guided fuzzing of the same entry points when it is
installed (`make reliability` installs it): `python tests/reliability/decoders_test.py DECODER -atheris_runs=N`.
"""

from __future__ import annotations

import io
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kmono.common.v1 import media_pb2

from libs.media import DecodeLimits, dumps, from_proto, loads, probe_video
from libs.media.masks import MaskObject, MaskSequence

LIMITS = DecodeLimits(max_pixels=1 << 22, max_decompressed_bytes=32 << 20)
"""Tight limits, so an input that slips past a check shows up as work, not as a test that takes minutes."""


def _sample() -> MaskSequence:
    id_maps = np.zeros((3, 12, 16), np.int32)
    id_maps[:, 2:6, 3:9] = 1
    id_maps[1:, 7:10, 10:14] = 2
    return MaskSequence.from_id_maps(id_maps, [MaskObject(1, "ball", 0.9), MaskObject(2, "box", 0.5)], 8.0)


def _zip_of_pngs() -> bytes:
    return dumps(_sample(), "zip")


DECODERS = {
    "json": lambda data: loads(data, "json", limits=LIMITS),
    "npz": lambda data: loads(data, "npz", limits=LIMITS),
    "zip": lambda data: loads(data, "zip", limits=LIMITS),
    "pb": lambda data: loads(data, "pb", limits=LIMITS),
    "sniffed": lambda data: loads(data, None, limits=LIMITS),
    "proto": lambda data: from_proto(media_pb2.MaskSequence.FromString(data), limits=LIMITS),
    "video": lambda data: probe_video(data),
}
VALID = {
    "json": dumps(_sample(), "json"),
    "npz": dumps(_sample(), "npz"),
    "zip": _zip_of_pngs(),
    "pb": dumps(_sample(), "pb"),
    "sniffed": dumps(_sample(), "json"),
    "proto": dumps(_sample(), "pb"),
    "video": None,  # filled lazily (encoding needs PyAV)
}
ALLOWED = (ValueError,)  # FieldError, VideoDecodeError and protobuf's DecodeError-as-ValueError included


def _valid(name: str) -> bytes:
    if VALID[name] is None:
        from libs.media import encode_video

        VALID[name] = encode_video(np.full((3, 16, 16, 3), 80, np.uint8), fps=4, format="mp4")
    return VALID[name]


def decode(name: str, data: bytes) -> None:
    """Run one decoder; anything but success or an allowed error fails."""
    try:
        DECODERS[name](data)
    except ALLOWED:
        pass
    except Exception as error:
        if (
            name == "proto" and type(error).__name__ == "DecodeError"
        ):  # protobuf's own parse error: not a decoder
            return
        raise AssertionError(f"{name}: {type(error).__name__}: {error}") from error


@st.composite
def mutated(draw, name: str) -> bytes:
    """A valid encoding with a few bytes flipped, cut, repeated or inserted."""
    data = bytearray(_valid(name))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "big"]))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:  # a large number where a size might be
            data[at:at] = b"999999999"
    return bytes(data)


def _count() -> int:
    from tests.reliability.harness import scaled

    return scaled(200, 10_000)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_any_bytes_decode_or_raise_value_error(name):
    from tests.reliability.harness import LONG, report

    @settings(
        max_examples=_count(), deadline=None, suppress_health_check=list(HealthCheck), derandomize=not LONG
    )
    @given(st.one_of(st.binary(max_size=256), mutated(name)))
    def one(data):
        decode(name, data)

    one()
    report(f"decoders [{name}]: inputs, none raised anything but ValueError", _count())


def test_a_zip_bomb_and_a_nested_json_are_refused_before_allocation():
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("frame_00000.png", b"\0" * (64 << 20))  # 64 MiB of zeros: about 64 KiB compressed
    with pytest.raises(ValueError):
        loads(bomb.getvalue(), "zip", limits=LIMITS)
    with pytest.raises(ValueError):
        loads(b"[" * 100_000 + b"]" * 100_000, "json", limits=LIMITS)


def atheris_main() -> None:  # pragma: no cover - run by `make reliability`
    import tempfile

    import atheris

    name = sys.argv.pop(1)
    atheris.instrument_all()  # coverage feedback from every loaded module (the decoders included)
    corpus = tempfile.mkdtemp(prefix=f"kmono-atheris-{name}-")
    with open(f"{corpus}/valid", "wb") as seed:  # start from a valid encoding, as the hypothesis run does
        seed.write(_valid(name))

    def one_input(data: bytes) -> None:
        decode(name, data)

    atheris.Setup([*sys.argv, corpus], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    atheris_main()
