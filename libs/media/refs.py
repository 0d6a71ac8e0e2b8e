"""Where media comes from: `file://` URIs and local paths, and a local file for bytes that arrived inline.

file_uri_path("file:///data/ball.mp4")        # Path("/data/ball.mp4"); None for s3://, http://, ...
with local_file(video_bytes_or_path) as path:  # decoders that need a path get one
    ...

`file_uri_path` only parses: whether a server may read the file is `libs.media.policy.MediaPolicy`'s decision.
The temporary file of `local_file` is the server's business: a ValueError raised inside the block names it as
`<inline data>` instead of its path (decoders describe their source by path, and services pass such messages on).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse


def file_uri_path(uri: str) -> Path | None:
    """The local path of a `file://` URI (or of a bare absolute path); None for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if not parsed.scheme and uri.startswith("/"):
        return Path(uri)
    return None


@contextlib.contextmanager
def local_file(source: bytes | str | os.PathLike[str], *, prefix: str = "kmono-") -> Iterator[str]:
    """A local path holding `source`: the path itself, or the bytes written to a temporary file that is
    removed on exit."""
    if not isinstance(source, bytes | bytearray):
        yield os.fspath(source)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        path = Path(tmp, "media")
        path.write_bytes(source)
        try:
            yield os.fspath(path)
        except ValueError as exc:
            raise _without(exc, (os.fspath(path), tmp)) from exc.__cause__


INLINE = "<inline data>"


def _without(exc: ValueError, paths: tuple[str, ...]) -> ValueError:
    """`exc` with every path of `paths` in its message replaced by `<inline data>` (same type where it can be
    rebuilt from a message; FieldError keeps its field and code)."""
    from libs.errors import FieldError

    def scrub(text: str) -> str:
        for path in paths:
            text = text.replace(path, INLINE)
        return text

    if not any(path in str(exc) for path in paths):
        return exc
    if isinstance(exc, FieldError):
        return FieldError(exc.field, scrub(exc.reason), code=exc.code)
    try:
        return type(exc)(scrub(str(exc)))
    except Exception:
        return ValueError(scrub(str(exc)))
