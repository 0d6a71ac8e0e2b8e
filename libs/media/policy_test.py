import argparse
import os
import socket
from pathlib import Path

import fsspec
import numpy as np
import pytest

from libs.errors import FieldError
from libs.media import encode_video, probe_video
from libs.media.limits import TOO_LARGE, DecodeLimits
from libs.media.policy import (
    REFUSED,
    MediaPolicy,
    add_media_arguments,
    check_video,
    media_policy_from_args,
    public_message,
)


@pytest.fixture
def tree(tmp_path):
    """root/ (allowed) with a file, a symlink out of it, a subdirectory; outside/ with a secret."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "masks.json").write_text("{}")
    (root / "sub" / "deep.json").write_text("{}")
    (outside / "secret.txt").write_text("root:x:0:0")
    (root / "escape.json").symlink_to(outside / "secret.txt")
    (root / "escape_dir").symlink_to(outside)
    (root / "inside_link.json").symlink_to(root / "masks.json")
    return root, outside


def refused(call, message):
    with pytest.raises(FieldError, match=message) as caught:
        call()
    assert caught.value.field == "f" and caught.value.code == REFUSED
    return str(caught.value)


def test_nothing_is_allowed_by_default(tree):
    root, _ = tree
    policy = MediaPolicy.from_env({})
    assert policy.describe() == "no references (inline data and artifacts only)"
    refused(lambda: policy.local_path(f"file://{root}/masks.json", "f"), "local files are not allowed")
    refused(lambda: policy.read_bytes(str(root / "masks.json"), "f", 100), "local files are not allowed")
    refused(lambda: policy.read_bytes("s3://bucket/x.json", "f", 100), "scheme s3 is not allowed")
    refused(lambda: policy.read_bytes("memory://x/y.json", "f", 100), "scheme memory is not allowed")
    refused(lambda: policy.read_bytes("relative/x.json", "f", 100), "unsupported reference")


def test_files_under_a_root_are_read_after_resolving_symlinks_and_dots(tree):
    root, outside = tree
    policy = MediaPolicy.create([root])
    assert policy.read_bytes(f"file://{root}/masks.json", "f", 100) == b"{}"
    assert policy.read_bytes(f"file://localhost{root}/sub/deep.json", "f", 100) == b"{}"
    assert policy.read_bytes(f"{root}/sub/../masks.json", "f", 100) == b"{}"
    assert policy.local_path(f"file://{root}/inside_link.json", "f") == root / "masks.json"
    for uri in (
        f"file://{root}/escape.json",  # a symlink out of the root
        f"file://{root}/escape_dir/secret.txt",  # through a symlinked directory
        f"file://{root}/../outside/secret.txt",
        f"file://{root}/%2e%2e/outside/secret.txt",
        f"file://{outside}/secret.txt",
        "file:///etc/passwd",
        f"{root}-sibling/x.json",  # a prefix of the root's name is not the root
    ):
        message = refused(lambda uri=uri: policy.read_bytes(uri, "f", 100), "not under an allowed root")
        assert str(outside) not in message and "root:x" not in message
    refused(lambda: policy.read_bytes(f"file://evil.example{root}/masks.json", "f", 100), "local file")


def test_refusals_never_say_whether_a_path_exists_or_where_it_resolves(tree):
    root, outside = tree
    policy = MediaPolicy.create([root])
    exists = refused(lambda: policy.read_bytes(f"file://{outside}/secret.txt", "f", 100), "root")
    missing = refused(lambda: policy.read_bytes(f"file://{outside}/nothing.txt", "f", 100), "root")
    assert exists == missing == "f: not under an allowed root"
    inside_missing = refused(
        lambda: policy.read_bytes(f"file://{root}/nothing.json", "f", 100), "not readable"
    )
    directory = refused(lambda: policy.read_bytes(f"file://{root}/sub", "f", 100), "not readable")
    assert inside_missing == directory == "f: not readable"
    refused(lambda: policy.local_path(f"file://{root}/sub", "f"), "not readable")


def test_local_reads_are_bounded(tree):
    root, _ = tree
    (root / "big.json").write_bytes(b"x" * 1000)
    with pytest.raises(FieldError, match="1000 bytes, larger than this server reads") as caught:
        MediaPolicy.create([root]).read_bytes(f"file://{root}/big.json", "f", 999)
    assert caught.value.code == TOO_LARGE


def test_remote_schemes_only_when_listed_and_never_wrappers_or_chains():
    with fsspec.open("memory://kmono-policy/masks.json", "wb") as f:
        f.write(b'{"a": 1}')
    policy = MediaPolicy.create(schemes=["memory"])
    assert policy.read_bytes("memory://kmono-policy/masks.json", "f", 100) == b'{"a": 1}'
    with pytest.raises(FieldError, match="larger than this server reads") as caught:
        policy.read_bytes("memory://kmono-policy/masks.json", "f", 3)
    assert caught.value.code == TOO_LARGE
    refused(lambda: policy.read_bytes("memory://kmono-policy/none.json", "f", 100), "not readable")
    for uri, message in [
        ("ftp://127.0.0.1:21/x.json", "scheme ftp is not allowed"),
        ("local:///etc/passwd", "scheme local is not allowed"),
        ("zip://x.json::memory://kmono-policy/a.zip", "chained"),
        ("simplecache::memory://kmono-policy/masks.json", "chained"),
        ("memory://user:pw@kmono-policy/masks.json", "credentials"),
        ("memory://kmono-policy/../other/masks.json", "relative path segments"),
    ]:
        refused(lambda uri=uri: policy.read_bytes(uri, "f", 100), message)
    for bad in ("file", "local", "zip", "simplecache", "not a scheme"):
        with pytest.raises(ValueError, match="cannot be allowed|not a URL scheme"):
            MediaPolicy.create(schemes=[bad])


def test_url_roots_allow_one_prefix_of_a_scheme():
    with fsspec.open("memory://kmono-policy/allowed/a.json", "wb") as f:
        f.write(b"{}")
    policy = MediaPolicy.create(["memory://kmono-policy/allowed/"])
    assert policy.url_roots == ("memory://kmono-policy/allowed",)
    assert policy.read_bytes("memory://kmono-policy/allowed/a.json", "f", 100) == b"{}"
    refused(lambda: policy.read_bytes("memory://kmono-policy/allowed-not/a.json", "f", 100), "not under")
    refused(lambda: policy.read_bytes("memory://kmono-policy/masks.json", "f", 100), "not under")
    refused(lambda: policy.read_bytes("s3://kmono-policy/allowed/a.json", "f", 100), "scheme s3")


def test_an_allowed_scheme_without_its_backend_is_not_readable_not_an_internal_error():
    policy = MediaPolicy.create(schemes=["gs", "hdfs"])  # no gcsfs / pyarrow hdfs client here
    refused(lambda: policy.read_bytes("gs://bucket/masks.json", "f", 100), "not readable")
    refused(lambda: policy.read_bytes("hdfs://namenode/masks.json", "f", 100), "not readable")


def test_no_connection_is_made_for_a_scheme_that_is_not_listed():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        policy = MediaPolicy.create(schemes=["memory"])
        for scheme in ("ftp", "webhdfs", "http", "sftp", "smb"):
            refused(
                lambda scheme=scheme: policy.read_bytes(f"{scheme}://127.0.0.1:{port}/x.json", "f", 100),
                f"scheme {scheme} is not allowed",
            )
        with pytest.raises(TimeoutError):
            listener.accept()


def test_public_message_scrubs_paths():
    text = "cannot read video file '/tmp/kmono-masks-x1/media': bad (see /var/lib/x) s3://b/k 1/2 a/b"
    assert public_message(text) == "cannot read video file '<path>': bad (see <path>) s3://b/k 1/2 a/b"
    assert len(public_message("x" * 1000)) == 300


def test_check_video_checks_the_header_then_decodes_a_frame(tmp_path):
    good = encode_video(np.zeros((3, 32, 48, 3), np.uint8), fps=8, format="mp4")
    info = check_video(good, DecodeLimits(), "video")
    assert (info.num_frames, info.width, info.height) == (3, 48, 32)
    with pytest.raises(FieldError, match="per frame") as caught:
        check_video(good, DecodeLimits(max_frame_pixels=48 * 32 - 1), "video")
    assert caught.value.code == TOO_LARGE and caught.value.field == "video"
    with pytest.raises(FieldError, match="3 frames is over"):
        check_video(good, DecodeLimits(max_frames=2), "video")
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(FieldError, match="not a readable video") as caught:
        check_video(str(path), DecodeLimits(), "video.uri")
    assert str(tmp_path) not in str(caught.value) and caught.value.field == "video.uri"


def test_a_video_whose_packets_do_not_decode_is_refused_by_check_video():
    good = bytearray(encode_video(np.full((4, 32, 32, 3), 100, np.uint8), fps=8, format="mkv"))
    # keep the container and its packets, break the H.264 payload: demuxing counts frames, decoding fails
    start = good.find(b"\x1f\x43\xb6\x75")  # the Matroska cluster
    for i in range(start + 64, len(good) - 8):
        good[i] = 0xFF
    assert probe_video(bytes(good)).num_frames >= 1  # all that the services checked before
    with pytest.raises(FieldError, match="not a readable video") as caught:
        check_video(bytes(good), DecodeLimits(), "video.inline_data")
    assert caught.value.field == "video.inline_data"


def test_flags_and_environment(monkeypatch, tmp_path):
    parser = argparse.ArgumentParser()
    monkeypatch.setenv("KMONO_MEDIA_ROOTS", f"{tmp_path},memory://bucket/prefix")
    monkeypatch.setenv("KMONO_VIDEO_MEDIA_SCHEMES", "s3, gs")
    add_media_arguments(parser, "KMONO_VIDEO")
    policy = media_policy_from_args(parser.parse_args([]))
    assert policy.roots == (tmp_path.resolve(),) and policy.schemes == ("s3", "gs")
    assert policy.url_roots == ("memory://bucket/prefix",)
    flags = media_policy_from_args(parser.parse_args(["--media-root", "/srv/a", "--media-root", "/srv/b"]))
    assert flags.roots == (Path(os.path.realpath("/srv/a")), Path(os.path.realpath("/srv/b")))
    assert flags.schemes == ("s3", "gs")  # the environment's, as no --allow-scheme was given
    assert media_policy_from_args(parser.parse_args(["--allow-scheme", "gcs"])).schemes == ("gcs",)
    with pytest.raises(ValueError, match="cannot be allowed"):
        media_policy_from_args(parser.parse_args(["--allow-scheme", "local"]))
