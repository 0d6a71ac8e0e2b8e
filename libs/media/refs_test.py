import os
from pathlib import Path

import pytest

from libs.errors import FieldError
from libs.media import VideoDecodeError, probe_video
from libs.media.refs import file_uri_path, local_file


def test_file_uri_path_takes_file_uris_and_absolute_paths_only():
    assert file_uri_path("file:///data/a%20b.mp4") == Path("/data/a b.mp4")
    assert file_uri_path("file://localhost/x.mp4") == Path("/x.mp4")
    assert file_uri_path("/abs/x.mp4") == Path("/abs/x.mp4")
    for other in ("s3://bucket/x.mp4", "http://host/x.mp4", "file://otherhost/x.mp4", "relative/x.mp4"):
        assert file_uri_path(other) is None


def test_local_file_writes_bytes_to_a_temporary_file_and_removes_it(tmp_path):
    with local_file(b"\x00video") as path:
        assert Path(path).read_bytes() == b"\x00video"
    assert not os.path.exists(path)
    existing = tmp_path / "v.mp4"
    existing.write_bytes(b"x")
    with local_file(existing) as path:
        assert path == os.fspath(existing)
    assert existing.exists()


def test_local_file_keeps_its_temporary_path_out_of_error_messages():
    with pytest.raises(VideoDecodeError) as caught, local_file(b"\x00 not a video") as path:
        tmp = os.path.dirname(path)
        probe_video(path)
    assert tmp not in str(caught.value) and "<inline data>" in str(caught.value)
    with pytest.raises(FieldError) as field_error, local_file(b"x") as path:
        raise FieldError("video", f"bad {path}", code="X")
    assert (field_error.value.field, field_error.value.code) == ("video", "X")
    assert path not in field_error.value.reason
