"""A small synchronous client of VideoGenerationService, shared by `kmono video`, the demo and the benchmark.

    with grpc.insecure_channel("127.0.0.1:50051") as channel:
        client = VideoClient(channel)
        op = client.create(video_pb2.CreateVideoRequest(prompt="a red circle", mask_sequence=to_proto(seq)))
        op = client.wait(op.name, on_update=print)          # follows WatchOperation to the end
        paths = client.save_outputs(op, "out", "circle")    # video.mp4, overlay.mp4, masks.pb, side-by-side GIF

`LocalServer` runs the service in this process (a thread with its own event loop, on a loopback port), which
is what `kmono video generate --local` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from kmono.video.v1 import video_pb2, video_pb2_grpc

from libs.serving import local as libs_local

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def metadata_of(op: operations_pb2.Operation) -> video_pb2.CreateVideoMetadata:
    meta = video_pb2.CreateVideoMetadata()
    if op.HasField("metadata"):
        op.metadata.Unpack(meta)
    return meta


def response_of(op: operations_pb2.Operation) -> video_pb2.CreateVideoResponse:
    response = video_pb2.CreateVideoResponse()
    if op.HasField("response"):
        op.response.Unpack(response)
    return response


class VideoClient:
    def __init__(self, channel: grpc.Channel) -> None:
        self.video = video_pb2_grpc.VideoGenerationServiceStub(channel)
        self.operations = operations_pb2_grpc.OperationsStub(channel)

    def create(
        self, request: video_pb2.CreateVideoRequest, timeout: float = 60.0
    ) -> operations_pb2.Operation:
        return self.video.CreateVideo(request, timeout=timeout)

    def wait(
        self,
        name: str,
        on_update: Callable[[operations_pb2.Operation], Any] | None = None,
        timeout: float | None = None,
    ) -> operations_pb2.Operation:
        """Follow WatchOperation to the operation's end (re-watching if the server ends the stream early)."""
        while True:
            stream = self.video.WatchOperation(video_pb2.WatchOperationRequest(name=name), timeout=timeout)
            for op in stream:
                if on_update is not None:
                    on_update(op)
                if op.done:
                    stream.cancel()
                    return op

    def download(self, name: str, *, operation: bool = False, chunk_size: int = 0) -> bytes:
        """All bytes of an artifact (or, with `operation`, of an operation's video)."""
        if operation:
            request = video_pb2.DownloadArtifactRequest(operation_name=name, chunk_size=chunk_size)
        else:
            request = video_pb2.DownloadArtifactRequest(artifact_name=name, chunk_size=chunk_size)
        return b"".join(chunk.chunk for chunk in self.video.DownloadArtifact(request))

    def save_outputs(self, op: operations_pb2.Operation, out_dir: str | Path, stem: str) -> dict[str, Path]:
        """Write the video, the overlay, the masks and a side-by-side GIF (video | overlay) under `out_dir`."""
        from libs.media import loads, read_video, render_overlay, write_video

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        response = response_of(op)
        paths: dict[str, Path] = {}
        files = {
            "video": f"{stem}.mp4",
            "mask_overlay": f"{stem}_overlay.mp4",
            "mask_sequence": f"{stem}_masks.pb",
        }
        for artifact in response.artifacts:
            target = out / files.get(artifact.artifact_id, f"{stem}_{artifact.artifact_id}")
            target.write_bytes(self.download(artifact.name))
            paths[artifact.artifact_id] = target
        if "video" in paths and "mask_sequence" in paths:
            frames, fps = read_video(paths["video"])
            masks = loads(paths["mask_sequence"].read_bytes(), "pb")
            gif = out / f"{stem}_side_by_side.gif"
            write_video(gif, render_overlay(frames, masks, side_by_side=True, labels=False), fps)
            paths["side_by_side"] = gif
        return paths


class LocalServer(libs_local.LocalServer):
    """The video service in this process on 127.0.0.1 (a free port), for `--local` runs and tests."""

    def __init__(self, config: Any, **build_kwargs: Any) -> None:
        from services.video import server

        super().__init__(config, server.build, name="kmono-video-local", **build_kwargs)
