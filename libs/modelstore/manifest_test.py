import hashlib
import io
import json
import logging
import sys

import pytest

from libs.modelstore import manifest as manifest_module
from libs.modelstore.errors import ManifestError
from libs.modelstore.manifest import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    compare_files,
    copy_and_hash,
    hash_files,
    progress_bar,
    read_manifest,
    write_manifest,
)


def _manifest(files):
    return Manifest("m", "transformers", "org/m", "hub", "main", "c" * 40, files, requires=("a.json",))


def test_manifest_round_trips_through_json(tmp_path):
    written = _manifest({"config.json": FileEntry(2, "ab" * 32)})
    write_manifest(tmp_path, written)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data["format"] == 1 and data["total_size"] == 2 and data["commit"] == "c" * 40
    assert data["files"] == {"config.json": {"size": 2, "sha256": "ab" * 32}}
    assert read_manifest(tmp_path) == written
    assert written.origin == "org/m@cccccccccc"


def test_missing_or_unknown_manifests_are_one_line_errors(tmp_path):
    with pytest.raises(ManifestError, match="no kmono-manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": 99}))
    with pytest.raises(ManifestError, match="unknown manifest format 99"):
        read_manifest(tmp_path)


def test_copy_and_hash_writes_and_hashes_the_same_bytes(tmp_path):
    data = bytes(range(256)) * 50_000  # several chunks' worth with a small chunk size
    (tmp_path / "src.bin").write_bytes(data)
    entry = copy_and_hash(tmp_path / "src.bin", tmp_path / "out" / "dst.bin")
    assert (tmp_path / "out" / "dst.bin").read_bytes() == data
    assert entry == FileEntry(len(data), hashlib.sha256(data).hexdigest())


def test_compare_names_changed_missing_and_unexpected_files(tmp_path):
    for name, content in {"a.json": b"{}", "b.safetensors": b"weights", "c.txt": b"abc"}.items():
        (tmp_path / name).write_bytes(content)
    manifest = _manifest(hash_files(tmp_path, ["a.json", "b.safetensors", "c.txt"], "test"))
    assert compare_files(tmp_path, manifest, ["a.json", "b.safetensors", "c.txt", MANIFEST_NAME]) == []
    (tmp_path / "b.safetensors").write_bytes(b"weightz")  # same size, one byte changed
    (tmp_path / "c.txt").write_bytes(b"abcd")
    (tmp_path / "d.bin").write_bytes(b"x")
    problems = {
        p.path: p.message for p in compare_files(tmp_path, manifest, ["b.safetensors", "c.txt", "d.bin"])
    }
    assert problems["a.json"] == "missing"
    assert problems["b.safetensors"].startswith("sha256 mismatch")
    assert problems["c.txt"] == "size 4 bytes, the manifest says 3"
    assert problems["d.bin"].startswith("unexpected file")
    quick = {
        p.path for p in compare_files(tmp_path, manifest, ["a.json", "b.safetensors", "c.txt"], quick=True)
    }
    assert quick == {"c.txt"}  # sizes only: the flipped byte goes unnoticed


def test_progress_is_a_tqdm_bar_on_a_terminal_and_log_lines_otherwise(monkeypatch, caplog):
    monkeypatch.setattr(manifest_module, "PROGRESS_MIN_BYTES", 10)
    monkeypatch.setattr(manifest_module, "LOG_EVERY_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="libs.modelstore.manifest"), progress_bar(100, "hash m") as bar:
        bar.update(50)
    assert any("hash m: 50%" in r.getMessage() for r in caplog.records)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_bar(100, "copy m") as bar:
        bar.update(100)
    assert "copy m" in terminal.getvalue()
    with progress_bar(5, "small") as bar:  # below PROGRESS_MIN_BYTES: nothing
        bar.update(5)
    assert "small" not in terminal.getvalue()
