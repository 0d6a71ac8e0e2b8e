from libs.cli.main import main
from recsys.features import Snapshot
from recsys.mmbee.cli import register


def kmono(*argv: str) -> int:
    return main(list(argv), registrars=[("mmbee", register)])


def test_world_then_expand_writes_a_snapshot_with_the_serving_tables(tmp_path, capsys):
    assert kmono("mmbee", "world", "--preset", "tiny", "--out", str(tmp_path / "world")) == 0
    assert (tmp_path / "world" / "world.json").is_file()
    assert kmono("mmbee", "expand", "--world", str(tmp_path / "world"), "--out", str(tmp_path / "snap")) == 0
    snapshot = Snapshot.open(tmp_path / "snap")
    assert {"users", "authors", "streams", "neighbours"} <= set(snapshot.tables)
    assert snapshot.version in capsys.readouterr().out


def test_expand_without_a_world_says_how_to_make_one(tmp_path, capsys):
    assert kmono("mmbee", "expand", "--world", str(tmp_path), "--out", str(tmp_path / "snap")) == 2
    assert "kmono mmbee world" in capsys.readouterr().err
