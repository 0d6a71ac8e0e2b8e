"""Which media references a server follows: `MediaPolicy`, one allow-list for every service.

    policy = MediaPolicy.create(roots=["/data/media"], schemes=["s3"])   # or from flags / KMONO_MEDIA_* env
    path = policy.local_path("file:///data/media/walk.mp4", "video.uri")  # resolved, under a root, readable
    data = policy.read_bytes("s3://bucket/masks.json", "mask_sequence_uri", max_bytes=64 << 20)
    check_video(path_or_bytes, limits, "video.uri")                       # header limits, then one real frame

Our choices (the outside attack on the video and masks services is why):

- **Nothing by default.** With no configuration a server reads no reference at all: inline bytes and the service's
  own artifact names only. `file://` URIs (and bare absolute paths) are read only under the operator's roots
  (`--media-root DIR`, repeatable; `KMONO_MEDIA_ROOTS`, comma-separated). Other schemes are read (through fsspec)
  only when the operator lists them (`--allow-scheme s3`; `KMONO_MEDIA_SCHEMES`) or gives a URL root
  (`--media-root s3://bucket/prefix/`: that scheme, under that prefix only).
- **Resolved before checked.** A path is made absolute with every symlink and `..` resolved (`os.path.realpath`)
  before it is compared with the roots (themselves resolved when the policy is made), so a symlink inside a root
  that points out of it is refused. The file is then opened without following a final symlink, and must be a
  regular file. (What remains: a root's owner swapping a directory for a symlink between the check and a later
  read of a video path; roots are the operator's directories, not the callers'.)
- **Never wrappers or chains.** fsspec's `local://`, `zip://`, `simplecache::...` and friends, and any URL with
  `::`, reach files or hosts around the allow-list: refused even when listed. Remote URLs with `..` segments or
  credentials in them are refused too.
- **Quiet errors.** A refusal says what is wrong ("not under an allowed root", "not readable", "scheme ftp is
  not allowed") and never the resolved path, whether the file exists outside the roots, or the bytes read.
  `public_message` scrubs absolute paths from any other message a service passes on.
- Every refusal is a `FieldError` (field as given, code `MEDIA_REFERENCE_REFUSED`, or `TOO_LARGE` for size), which
  the services answer as INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from libs.errors import FieldError
from libs.media.limits import TOO_LARGE, DecodeLimits
from libs.media.video import VideoDecodeError, VideoInfo, VideoSource, iter_video_frames, probe_video

logger = logging.getLogger(__name__)

REFUSED = "MEDIA_REFERENCE_REFUSED"
"""`FieldError.code` (and ErrorInfo reason) of a reference the policy does not allow."""
ROOTS_ENV = "KMONO_MEDIA_ROOTS"
SCHEMES_ENV = "KMONO_MEDIA_SCHEMES"
NEVER_SCHEMES = frozenset(
    {"local", "file", "zip", "tar", "libarchive", "simplecache", "filecache", "blockcache", "cached", "reference",
     "dir", "data", "jlab", "jupyter", "git", "github", "dask", "arrow_hdfs"}
)  # fmt: skip
"""Schemes that `--allow-scheme` refuses: local files around the roots, or wrappers over other filesystems."""
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,31}$")
DEFAULT_MAX_FETCH_BYTES = 256 << 20
_PATHLIKE = re.compile(r"(?<![\w.:/~-])/[^\s'\"<>|,;()\[\]{}]+")


@dataclass(frozen=True)
class MediaPolicy:
    """The references a server follows: local `roots` (resolved directories), remote `schemes` allowed anywhere,
    remote `url_roots` (prefixes such as `s3://bucket/masks/`). Empty: inline data and artifacts only."""

    roots: tuple[Path, ...] = ()
    schemes: tuple[str, ...] = ()
    url_roots: tuple[str, ...] = ()
    max_fetch_bytes: int = DEFAULT_MAX_FETCH_BYTES
    """Largest remote object fetched for a video reference."""

    @classmethod
    def create(
        cls, roots: Iterable[str | os.PathLike[str]] = (), schemes: Iterable[str] = (), **kwargs: int
    ) -> MediaPolicy:
        """A policy from operator settings: roots are directories or URL prefixes; ValueError for a bad one."""
        local: list[Path] = []
        url_roots: list[str] = []
        for root in roots:
            text = os.fspath(root).strip()
            if not text:
                continue
            parsed = urlparse(text)
            if parsed.scheme and parsed.scheme != "file" and len(parsed.scheme) > 1:
                scheme = _check_scheme(parsed.scheme)
                if (
                    not parsed.netloc
                    or "::" in text
                    or ".." in parsed.path.split("/")
                    or "@" in parsed.netloc
                ):
                    raise ValueError(f"media root {text!r} must be a URL prefix like s3://bucket/prefix/")
                url_roots.append(
                    f"{scheme}://{parsed.netloc}{posixpath.normpath(parsed.path or '/')}".rstrip("/")
                )
                continue
            path = Path(unquote(parsed.path) if parsed.scheme == "file" else text).expanduser()
            resolved = Path(os.path.realpath(path))
            if not resolved.is_dir():
                logger.warning("media root %s is not a directory (yet): nothing under it is readable", path)
            local.append(resolved)
        allowed = tuple(dict.fromkeys(_check_scheme(s) for s in schemes if s.strip()))
        return cls(tuple(dict.fromkeys(local)), allowed, tuple(dict.fromkeys(url_roots)), **kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MediaPolicy:
        """The policy of `KMONO_MEDIA_ROOTS` and `KMONO_MEDIA_SCHEMES` (comma-separated; unset: nothing)."""
        env = os.environ if environ is None else environ
        return cls.create(_split(env.get(ROOTS_ENV, "")), _split(env.get(SCHEMES_ENV, "")))

    def describe(self) -> str:
        """What this policy allows, for start-up logs and help texts."""
        parts = [f"file:// under {', '.join(map(str, self.roots))}"] if self.roots else []
        parts += [f"{s}://" for s in self.schemes] + list(self.url_roots)
        return "; ".join(parts) if parts else "no references (inline data and artifacts only)"

    # -- checks ------------------------------------------------------------------------------------------

    def is_local(self, uri: str) -> bool:
        """Whether `uri` names a local file (`file://` or an absolute path), the policy aside."""
        parsed = urlparse(uri)
        return parsed.scheme == "file" or (not parsed.scheme and uri.startswith("/"))

    def local_path(self, uri: str, field: str) -> Path:
        """The resolved path of a `file://` URI or absolute path under a root, a readable regular file; else a
        FieldError naming `field` that says only which rule failed."""
        path = self._resolved(uri, field)
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            raise _refused(field, "not readable") from None
        if not stat.S_ISREG(info.st_mode) or not os.access(path, os.R_OK):
            raise _refused(field, "not readable")
        return path

    def read_bytes(self, uri: str, field: str, max_bytes: int) -> bytes:
        """The bytes at `uri` (a local file under a root, or an allowed remote URL), at most `max_bytes`."""
        if self.is_local(uri):
            return self._read_local(self._resolved(uri, field), field, max_bytes)
        return self._read_remote(self.check_remote(uri, field), field, max_bytes)

    def check_remote(self, uri: str, field: str) -> str:
        """`uri` normalised, when it is a remote URL this policy allows; else a FieldError naming `field`."""
        if "::" in uri or any(c in uri for c in "\x00\r\n"):
            raise _refused(field, "chained or malformed URLs are not allowed")
        parsed = urlparse(uri)
        scheme = parsed.scheme.lower()
        if scheme in NEVER_SCHEMES:
            raise _refused(field, f"scheme {scheme} is not allowed; {self._hint()}")
        if not _SCHEME.match(scheme) or not parsed.netloc:
            raise _refused(field, f"unsupported reference; {self._hint()}")
        if "@" in parsed.netloc:
            raise _refused(field, "credentials in URLs are not allowed")
        segments = unquote(parsed.path).split("/")
        if ".." in segments or "." in segments:
            raise _refused(field, "relative path segments are not allowed")
        normal = f"{scheme}://{parsed.netloc}{parsed.path}"
        if parsed.query:
            normal += f"?{parsed.query}"
        if scheme in self.schemes:
            return normal
        if any(normal == root or normal.startswith(root + "/") for root in self.url_roots):
            return normal
        if any(root.startswith(f"{scheme}://") for root in self.url_roots):
            raise _refused(field, "not under an allowed root")
        raise _refused(field, f"scheme {scheme} is not allowed; {self._hint()}")

    def _hint(self) -> str:
        if not (self.roots or self.schemes or self.url_roots):
            return (
                "this server follows no media references (operators allow them: --media-root, --allow-scheme)"
            )
        kinds = (["file:// under its media roots"] if self.roots else []) + [
            f"{s}://" for s in dict.fromkeys([*self.schemes, *(r.split("://")[0] for r in self.url_roots)])
        ]
        return f"this server follows {', '.join(kinds)}"

    def _resolved(self, uri: str, field: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise _refused(field, "file:// URIs must name a local file (file:///path)")
            raw = unquote(parsed.path)
        elif not parsed.scheme and uri.startswith("/"):
            raw = uri
        else:
            raise _refused(field, f"not a local file reference; {self._hint()}")
        if not self.roots:
            raise _refused(field, f"local files are not allowed; {self._hint()}")
        if "\x00" in raw or not raw.startswith("/"):
            raise _refused(field, "not under an allowed root")
        resolved = Path(os.path.realpath(raw))  # symlinks and .. resolved before the check
        if not any(resolved == root or resolved.is_relative_to(root) for root in self.roots):
            raise _refused(field, "not under an allowed root")
        return resolved

    def _read_local(self, path: Path, field: str, max_bytes: int) -> bytes:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except (OSError, ValueError):
            raise _refused(field, "not readable") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _refused(field, "not readable")
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if info.st_size > max_bytes:
                raise _too_large(field, info.st_size, max_bytes)
            try:
                data = f.read(max_bytes + 1)
            except OSError:
                raise _refused(field, "not readable") from None
        if len(data) > max_bytes:
            raise _too_large(field, len(data), max_bytes)
        return data

    def _read_remote(self, url: str, field: str, max_bytes: int) -> bytes:
        try:
            import fsspec

            fs, path = fsspec.core.url_to_fs(url)
            size = _size(fs, path)
            if size is not None and size > max_bytes:
                raise _too_large(field, size, max_bytes)
            with fs.open(path, "rb") as f:
                data = f.read(max_bytes + 1)
        except FieldError:
            raise
        except Exception as exc:  # any backend: missing package, network, permissions, not found
            logger.info("reading a %s reference failed: %s: %s", field, type(exc).__name__, exc)
            raise _refused(field, "not readable") from None
        if len(data) > max_bytes:
            raise _too_large(field, len(data), max_bytes)
        return data


def _size(fs: object, path: str) -> int | None:
    try:
        size = fs.size(path)  # type: ignore[attr-defined]
    except Exception:
        return None
    return size if isinstance(size, int) else None


def _refused(field: str, reason: str) -> FieldError:
    return FieldError(field, reason, code=REFUSED)


def _too_large(field: str, size: int, limit: int) -> FieldError:
    return FieldError(field, f"is {size} bytes, larger than this server reads ({limit})", code=TOO_LARGE)


def _check_scheme(value: str) -> str:
    scheme = value.strip().lower().removesuffix("://")
    if not _SCHEME.match(scheme):
        raise ValueError(f"not a URL scheme: {value!r}")
    if scheme in NEVER_SCHEMES:
        why = (
            "use --media-root for local files"
            if scheme in ("file", "local")
            else "it wraps other filesystems"
        )
        raise ValueError(f"scheme {scheme} cannot be allowed: {why}")
    return scheme


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# -- messages ------------------------------------------------------------------------------------------------


def public_message(text: str, *, limit: int = 300) -> str:
    """`text` safe to send to a caller: absolute paths replaced by `<path>`, at most `limit` characters."""
    text = _PATHLIKE.sub("<path>", text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# -- videos ----------------------------------------------------------------------------------------------------


def check_video(source: VideoSource, limits: DecodeLimits, field: str) -> VideoInfo:
    """A video's facts when it is within `limits` (frame size, frame count, frames x pixels, all from the
    container's header, before anything is decoded) and its first frame really decodes at the stated size;
    else a FieldError naming `field` whose message holds no path."""
    try:
        info = probe_video(source)
    except FileNotFoundError:
        raise _refused(field, "not readable") from None
    except (VideoDecodeError, ValueError, OSError) as exc:
        raise FieldError(field, f"not a readable video: {_video_reason(exc)}") from None
    try:
        limits.check_sequence(info.num_frames, info.width, info.height, "the video")
    except FieldError as exc:
        raise FieldError(field, exc.reason, code=exc.code) from None
    try:
        frames = iter_video_frames(source, max_frames=1)
        try:
            first = next(frames, None)
        finally:
            frames.close()  # type: ignore[attr-defined]
    except (VideoDecodeError, ValueError, OSError) as exc:
        raise FieldError(field, f"not a readable video: {_video_reason(exc)}") from None
    if first is None:
        raise FieldError(field, "not a readable video: it contains no decodable video frames")
    if first.shape[:2] != (info.height, info.width):
        raise FieldError(
            field,
            f"not a readable video: its first frame is {first.shape[1]}x{first.shape[0]}, "
            f"its header says {info.width}x{info.height}",
        )
    return info


def _video_reason(exc: BaseException) -> str:
    """The decoder's reason without its description of the source (which names a path)."""
    text = str(exc)
    if text.startswith("cannot read ") and ": " in text:
        text = text.split(": ", 1)[1]
    return public_message(text)


# -- flags -------------------------------------------------------------------------------------------------------


def add_media_arguments(parser: argparse.ArgumentParser, env_prefix: str = "KMONO") -> None:
    """`--media-root` and `--allow-scheme` (repeatable), defaulting from `<env_prefix>_MEDIA_ROOTS` /
    `<env_prefix>_MEDIA_SCHEMES`, else `KMONO_MEDIA_ROOTS` / `KMONO_MEDIA_SCHEMES` (comma-separated)."""
    env = os.environ.get
    roots_env = f"{env_prefix}_MEDIA_ROOTS"
    schemes_env = f"{env_prefix}_MEDIA_SCHEMES"
    group = parser.add_argument_group("media references")
    group.add_argument(
        "--media-root",
        action="append",
        default=None,
        metavar="DIR|URL",
        help="a directory whose files requests may name by file:// URI (symlinks resolved first), or a URL "
        f"prefix such as s3://bucket/masks/; repeatable (env {roots_env} or {ROOTS_ENV}, comma-separated; "
        "default: none, so only inline data and artifacts)",
    )
    group.add_argument(
        "--allow-scheme",
        action="append",
        default=None,
        metavar="SCHEME",
        help="a remote fsspec scheme requests may use anywhere, e.g. s3 or gs; repeatable "
        f"(env {schemes_env} or {SCHEMES_ENV}; default: none). file, local and wrapping schemes are never allowed",
    )
    parser.set_defaults(
        _media_env=(env(roots_env, env(ROOTS_ENV, "")), env(schemes_env, env(SCHEMES_ENV, "")))
    )


def media_policy_from_args(args: argparse.Namespace) -> MediaPolicy:
    """The policy of parsed `add_media_arguments` flags (flags replace the environment's lists)."""
    roots_env, schemes_env = getattr(args, "_media_env", ("", ""))
    roots: Sequence[str] = args.media_root if args.media_root is not None else _split(roots_env)
    schemes: Sequence[str] = args.allow_scheme if args.allow_scheme is not None else _split(schemes_env)
    return MediaPolicy.create(roots, schemes)
