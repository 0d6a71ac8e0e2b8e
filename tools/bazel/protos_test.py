"""The generated protobuf code imports as `kmono.*`, and under Bazel it is Bazel's own output.

`make setup` generates git-ignored copies beside the .proto files and puts proto/ on the venv's sys.path (a .pth
file), while Bazel generates into bazel-bin and puts that root first on sys.path (PYTHONPATH comes before
site-packages); a stale in-place copy must not shadow the Bazel one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kmono.common.v1 import media_pb2, media_pb2_grpc

UNDER_BAZEL = "TEST_SRCDIR" in os.environ


def test_generated_modules_import():
    assert media_pb2.DESCRIPTOR.package == "kmono.common.v1"
    assert media_pb2.DESCRIPTOR.name == "kmono/common/v1/media.proto"
    assert media_pb2_grpc.__name__ == "kmono.common.v1.media_pb2_grpc"


@pytest.mark.skipif(not UNDER_BAZEL, reason="only meaningful under bazel test")
def test_bazel_uses_its_own_generated_code():
    for module in (media_pb2, media_pb2_grpc):
        path = Path(module.__file__)
        assert path.is_relative_to(os.environ["TEST_SRCDIR"]), (
            f"{module.__name__} from outside runfiles: {path}"
        )
        assert "bazel-out" in Path(os.path.realpath(path)).parts, (
            f"{module.__name__} is not a Bazel output: {path}"
        )
