"""Where finished videos live: an artifact store over any fsspec filesystem.

    store = ArtifactStore("var/video/artifacts")          # a local directory (the default)
    store = ArtifactStore("s3://bucket/kmono/videos")      # or any fsspec URL: memory://, gs://, ...
    artifact = store.put("operations/video-1", "video", ARTIFACT_KIND_VIDEO, "video/mp4", data)
    chunk = store.read(artifact.name, offset=0, length=1 << 20)

Layout (our choice): `<root>/<operation_id>/<artifact_id>`; the Artifact message (name, kind, size, sha256)
is kept in the operation's response, not beside the bytes. A job that runs again after a crash overwrites its
files (same names), so an operation never has two sets of artifacts.

Names come from clients (DownloadArtifact, a `mask_sequence_uri`), so an id is one path component that starts
with a letter or digit (letters, digits, `.`, `_`, `-`; at most 128 characters): `.`, `..` and hidden names are
not ids, and every path the store opens is checked to lie under its root.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

import fsspec
from kmono.video.v1 import video_pb2

_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
"""One path component: never `.` or `..` (nor a hidden name), since it starts with a letter or digit."""
ARTIFACT_NAME = re.compile(rf"^operations/(?P<op>{_ID})/artifacts/(?P<artifact>{_ID})$")
OPERATION_NAME = re.compile(rf"^operations/(?P<op>{_ID})$")


def artifact_name(operation_name: str, artifact_id: str) -> str:
    return f"{operation_name}/artifacts/{artifact_id}"


def parse_artifact_name(name: str) -> tuple[str, str] | None:
    """(operation name, artifact id) of `operations/{id}/artifacts/{artifact_id}`; None if malformed."""
    match = ARTIFACT_NAME.match(name)
    if match is None:
        return None
    return f"operations/{match['op']}", match["artifact"]


class ArtifactStore:
    """Artifact bytes under one fsspec URL (a plain path is a local directory)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)  # a no-op on object stores

    def _under_root(self, *parts: str) -> str:
        """`<root>/<parts...>`, refused (ValueError) unless it stays under the root once `.`/`..` resolve."""
        if any(part in ("", ".", "..") or "/" in part or "\\" in part for part in parts):
            raise ValueError("an artifact path must stay inside the artifact store")
        path = "/".join((self.root, *parts))
        base = posixpath.normpath(self.root or "/").rstrip("/") + "/"
        if not posixpath.normpath(path).startswith(base):
            raise ValueError("an artifact path must stay inside the artifact store")
        return path

    def _path(self, name: str) -> str:
        parsed = parse_artifact_name(name)
        if parsed is None:
            raise ValueError(f"not an artifact name: {name[:128]!r}")
        operation, artifact_id = parsed
        return self._under_root(operation.removeprefix("operations/"), artifact_id)

    def put(
        self, operation_name: str, artifact_id: str, kind: int, mime_type: str, data: bytes
    ) -> video_pb2.Artifact:
        """Write (or overwrite) one artifact; returns its description for the operation's response."""
        name = artifact_name(operation_name, artifact_id)
        path = self._path(name)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as f:
            f.write(data)
        return video_pb2.Artifact(
            name=name,
            artifact_id=artifact_id,
            kind=kind,
            mime_type=mime_type,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def exists(self, name: str) -> bool:
        return self.fs.exists(self._path(name))

    def size(self, name: str) -> int:
        return int(self.fs.size(self._path(name)))

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes [offset, offset + length) of an artifact (to its end when `length` is None)."""
        with self.fs.open(self._path(name), "rb") as f:
            f.seek(offset)
            return f.read() if length is None else f.read(length)

    def delete_operation(self, operation_name: str) -> None:
        if not OPERATION_NAME.match(operation_name):
            raise ValueError(f"not an operation name: {operation_name[:128]!r}")
        path = self._under_root(operation_name.removeprefix("operations/"))
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
