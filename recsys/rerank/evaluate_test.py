import pytest

from recsys.rerank.evaluate import claims, simulator_table
from recsys.rerank.pipeline import tiny_config, train_pipeline


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("rerank") / "model"
    train_pipeline(tiny_config(), out=out, progress=False)
    return simulator_table([out], seeds=(0, 1), requests=24)


def test_no_reranker_beats_the_brute_force_optimum(table):
    for layout in ("column", "grid"):
        rows = table[layout]
        assert rows["optimum"]["pct"] == (100.0, 0.0)
        for name, row in rows.items():
            assert row["pct"][0] <= 100.0 + 1e-6, name
        assert rows["random"]["pct"][0] < rows["score-and-sort"]["pct"][0]


def test_agreement_rates_are_shares_and_claims_are_checked_per_layout(table):
    for mean, _ in table["ptar"].values():
        assert 0.0 <= mean <= 1.0
    checks = claims(table)
    assert len(checks) == 12 and all(isinstance(holds, bool) for _, holds in checks)
