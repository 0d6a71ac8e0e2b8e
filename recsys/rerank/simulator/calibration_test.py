from recsys.rerank.simulator.calibration import calibration_report, percent_of_optimum
from recsys.rerank.simulator.cli import main
from recsys.rerank.simulator.world import generate_requests


def test_score_sort_is_clearly_below_the_optimum_and_random_below_sort_on_both_layouts():
    for layout in ("column", "grid"):
        report = percent_of_optimum(generate_requests(300, seed=11, layout=layout))
        assert report["optimum"] > 1.0  # clearly positive: % of optimum is meaningful
        assert report["score_sort"] < 93.0
        assert report["random"] < report["score_sort"] - 10.0
        assert report["structure_aware"] > 97.0  # the optimum is reachable from the features
        assert report["optimum_is_not_sort"] > 50.0


def test_random_options_keep_the_gap():
    report = percent_of_optimum(generate_requests(200, seed=12, options="random"))
    assert report["random"] < report["score_sort"] < 93.0


def test_report_has_every_layout_and_the_cli_prints_it(capsys):
    report = calibration_report(40, seed=1)
    assert set(report) == {"column", "grid"}
    main(["--requests", "40", "--seed", "1"])
    printed = capsys.readouterr().out
    assert f"{report['grid']['score_sort']:8.1f}" in printed and "column" in printed
