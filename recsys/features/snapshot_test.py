"""Snapshot: round trip, point lookups, atomic publication, content versions, refusal of broken snapshots,
concurrent readers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

from recsys.features.snapshot import Snapshot, SnapshotError, SnapshotWriter


def sample_table(n: int = 50, bump: int = 0) -> pa.Table:
    return pa.table(
        {
            "key": [f"user:{i}" for i in range(n)],
            "neighbours": [list(range(i, i + 3)) for i in range(n)],
            "score": [float(i) / 7 + bump if i % 5 else None for i in range(n)],
            "name": ["é" * (i % 4) for i in range(n)],
        }
    )


def write(path, table=None, theta=None, metadata=None, map_size=64 << 20) -> Snapshot:
    with SnapshotWriter(path, map_size=map_size) as writer:
        writer.add_table("users", sample_table() if table is None else table, key="key")
        writer.add_array("theta", np.arange(12, dtype=np.float32).reshape(4, 3) if theta is None else theta)
        return writer.commit({"job": "test"} if metadata is None else metadata)


def test_round_trip(tmp_path):
    table = sample_table()
    theta = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    with write(tmp_path / "snap", table, theta, {"job": "test", "k": 3}) as snapshot:
        assert snapshot.tables == ("users",) and snapshot.arrays == ("theta",)
        assert snapshot.metadata == {"job": "test", "k": 3} and snapshot.num_rows("users") == 50
        assert snapshot.table("users").equals(table)
        assert snapshot.table("users", columns=["key"]).column_names == ["key"]
        np.testing.assert_array_equal(snapshot.array("theta"), theta)
        np.testing.assert_array_equal(snapshot.array("theta", mmap=True), theta)
        assert snapshot.lookup("users", "user:7") == table.slice(7, 1).to_pylist()[0]
        assert snapshot.lookup("users", "user:10")["score"] is None
        got = snapshot.lookup_many("users", ["user:3", "nobody", "user:49", "user:3"])
        assert got == [table.to_pylist()[3], None, table.to_pylist()[49], table.to_pylist()[3]]
        assert snapshot.lookup("users", "user:50") is None
        with pytest.raises(KeyError):
            snapshot.lookup("items", "user:1")
        snapshot.verify()
    assert sorted(os.listdir(tmp_path)) == ["snap"]  # no temporary directory left behind


def test_index_grows_past_its_initial_map_size(tmp_path):
    table = sample_table(3000)
    with write(tmp_path / "snap", table, map_size=64 << 10) as snapshot:
        assert snapshot.lookup("users", "user:2999") == table.to_pylist()[2999]


def test_version_is_a_content_hash(tmp_path):
    first = write(tmp_path / "a")
    chunked = pa.concat_tables([sample_table().slice(0, 20), sample_table().slice(20)])  # same rows, 2 chunks
    same = write(tmp_path / "b", table=chunked)
    value_changed = write(tmp_path / "c", table=sample_table(bump=1))
    array_changed = write(tmp_path / "d", theta=np.zeros((4, 3), dtype=np.float32))
    metadata_changed = write(tmp_path / "e", metadata={"job": "other"})
    assert first.version == same.version and len(first.version) == 16
    versions = {first.version, value_changed.version, array_changed.version, metadata_changed.version}
    assert len(versions) == 4


def test_nothing_is_visible_before_commit(tmp_path):
    out = tmp_path / "snap"
    with pytest.raises(RuntimeError, match="job died"):
        with SnapshotWriter(out) as writer:
            writer.add_table("users", sample_table(), key="key")
            assert not out.exists()
            raise RuntimeError("job died")
    assert not out.exists() and os.listdir(tmp_path) == []
    writer = SnapshotWriter(out)
    writer.add_array("theta", np.ones(3))
    assert not out.exists()  # a writer that never commits (a killed job) leaves only a hidden directory
    assert all(name.startswith(".snap.partial-") for name in os.listdir(tmp_path))
    with pytest.raises(SnapshotError, match="no such snapshot"):
        Snapshot.open(out)
    partial = next(tmp_path.iterdir())
    with pytest.raises(SnapshotError, match="partial"):
        Snapshot.open(partial)  # its files are there, its manifest is not


def test_failed_publication_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "snap"
    writer = SnapshotWriter(out)
    writer.add_table("users", sample_table(), key="key")
    real_rename = os.rename

    def failing_rename(src, dst):
        if os.fspath(dst) == os.fspath(out):
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk gone"):
        writer.commit()
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    writer = SnapshotWriter(out)
    writer.add_array("theta", np.ones(3))
    out.mkdir()  # another writer published first
    with pytest.raises(FileExistsError):
        writer.commit()
    assert os.listdir(tmp_path) == ["snap"] and os.listdir(out) == []


def test_broken_snapshots_are_refused(tmp_path):
    write(tmp_path / "snap")
    manifest_path = tmp_path / "snap" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest)[:-20])
    with pytest.raises(SnapshotError, match="corrupt manifest"):
        Snapshot.open(tmp_path / "snap")
    manifest_path.write_text(json.dumps({**manifest, "metadata": {"job": "edited"}}))
    with pytest.raises(SnapshotError, match="version"):
        Snapshot.open(tmp_path / "snap")
    manifest_path.write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(SnapshotError, match="format 99"):
        Snapshot.open(tmp_path / "snap")
    manifest_path.write_text(json.dumps(manifest))
    Snapshot.open(tmp_path / "snap").close()
    parquet = tmp_path / "snap" / "users.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-10])
    with pytest.raises(SnapshotError, match="truncated"):
        Snapshot.open(tmp_path / "snap")


def test_writer_refuses_bad_input(tmp_path):
    write(tmp_path / "snap")
    with pytest.raises(FileExistsError):
        SnapshotWriter(tmp_path / "snap")
    with SnapshotWriter(tmp_path / "other") as writer:
        with pytest.raises(ValueError, match="duplicate"):
            writer.add_table("t", pa.table({"key": ["a", "a"]}), key="key")
        with pytest.raises(TypeError, match="strings"):
            writer.add_table("t", pa.table({"key": [1, 2]}), key="key")
        with pytest.raises(ValueError, match="name"):
            writer.add_array("../evil", np.ones(2))
        with pytest.raises(TypeError, match="pickle"):
            writer.add_array("objects", np.array([{"a": 1}], dtype=object))
        writer.add_array("ok", np.ones(2))
        with pytest.raises(ValueError, match="already"):
            writer.add_array("ok", np.ones(2))


READER = textwrap.dedent(
    """
    import sys
    from recsys.features.snapshot import Snapshot
    with Snapshot.open(sys.argv[1]) as snapshot:
        total = 0
        for _ in range(200):
            rows = snapshot.lookup_many("users", [f"user:{i}" for i in range(50)])
            total += sum(sum(row["neighbours"]) for row in rows)
        print(total, snapshot.version)
    """
)


def test_two_readers_at_once(tmp_path):
    snapshot = write(tmp_path / "snap")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(tmp_path / "snap")], stdout=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    second = Snapshot.open(tmp_path / "snap")  # same process: shares the LMDB handle
    assert second.lookup("users", "user:1") == snapshot.lookup("users", "user:1")
    second.close()
    assert snapshot.lookup("users", "user:2")["neighbours"] == [2, 3, 4]  # the first is still open
    expected = 200 * sum(3 * i + 3 for i in range(50))
    for reader in readers:
        out, _ = reader.communicate(timeout=60)
        assert reader.returncode == 0
        assert out.decode().split() == [str(expected), snapshot.version]
    snapshot.close()
