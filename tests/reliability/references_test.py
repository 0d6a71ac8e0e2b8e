"""No media reference escapes the operator's roots, on real video and masks processes started with one
`--media-root`: files outside it, symlinks out of it, `..` traversal, and remote or wrapping schemes pointed at a
listener this test runs on 127.0.0.1 are all INVALID_ARGUMENT naming the field, the listener is never connected
to, and no answer echoes a path outside the root or a secret file's contents."""

from __future__ import annotations

import os
import socket
import threading

import grpc
import numpy as np
import pytest
from kmono.common.v1 import media_pb2
from kmono.masks.v1 import masks_pb2, masks_pb2_grpc
from kmono.video.v1 import video_pb2, video_pb2_grpc

from libs.media import encode_video, save
from libs.media.masks import MaskSequence
from tests.reliability.harness import (
    HERE,
    SERVICES,
    ServerProcess,
    free_port,
    report,
)

SECRET = "kmono-secret-7f3a"


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections (a server-side request forgery would connect)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.socket.close()


def attack_uris(root, outside, port: int) -> list[str]:
    (root / "sub").mkdir(exist_ok=True)
    link = root / "escape.json"
    if not link.exists():
        os.symlink(outside / "secret.json", link)
    (root / "dirlink").exists() or os.symlink(outside, root / "dirlink")
    return [
        f"file://{outside}/secret.json",
        str(outside / "secret.json"),
        f"file://{root}/../outside/secret.json",
        f"file://{root}/sub/../../outside/secret.json",
        f"file://{link}",
        f"file://{root}/dirlink/secret.json",
        "file:///etc/passwd",
        "file:///proc/self/environ",
        f"ftp://127.0.0.1:{port}/secret.json",
        f"http://127.0.0.1:{port}/secret.json",
        f"https://127.0.0.1:{port}/secret.json",
        f"webhdfs://127.0.0.1:{port}/secret.json",
        f"sftp://127.0.0.1:{port}/secret.json",
        f"local://{outside}/secret.json",
        f"zip://x.json::file://{outside}/secret.zip",
        f"simplecache::http://127.0.0.1:{port}/secret.json",
        f"memory://{outside}/secret.json",
    ]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_reference_escapes_the_media_roots(tmp_path, service):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    secret = MaskSequence.from_id_maps(np.ones((1, 8, 8), np.int32), None, 8.0)
    save(secret, outside / "secret.json")
    (outside / "secret.mp4").write_bytes(
        encode_video(np.zeros((2, 16, 16, 3), np.uint8), fps=4, format="mp4")
    )
    (outside / "note.txt").write_text(SECRET)
    listener = Listener()
    server = ServerProcess(
        argv=[str(HERE / "fake_servers.py"), service, "--", "--data-dir", str(tmp_path / "data"),
              "--media-root", str(root)],
        port=free_port(),
        log=tmp_path / "server.log",
        service=SERVICES[service],
    )  # fmt: skip
    tried = escaped = 0
    try:
        channel = server.start()
        for uri in attack_uris(root, outside, listener.port):
            uri = uri.replace("secret.json", "secret.mp4") if service == "masks" else uri
            try:
                if service == "video":
                    video_pb2_grpc.VideoGenerationServiceStub(channel).CreateVideo(
                        video_pb2.CreateVideoRequest(prompt="a ball", mask_sequence_uri=uri), timeout=30
                    )
                else:
                    masks_pb2_grpc.MaskServiceStub(channel).ExtractMasks(
                        masks_pb2.ExtractMasksRequest(video=media_pb2.MediaRef(uri=uri), text_query="ball."),
                        timeout=30,
                    )
                escaped += 1
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (uri, error.code(), error.details())
                assert str(outside) not in error.details() and SECRET not in error.details(), error.details()
                assert "/etc/passwd" not in error.details().replace(uri, ""), error.details()
            tried += 1
    finally:
        server.stop()
        listener.close()
    report(f"references [{service}]: hostile references tried / escaped / listener connections",
           f"{tried} / {escaped} / {listener.connections}")  # fmt: skip
    assert escaped == 0 and listener.connections == 0
