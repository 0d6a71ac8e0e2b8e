from generation.dialogue.reasoning.cli import main
from generation.dialogue.reasoning.evaluate import dcot_vs_direct, format_table
from generation.dialogue.reasoning.stories import ScriptedReader


def test_dcot_is_ahead_of_direct_answering_for_a_reader_with_a_short_span():
    result = dcot_vs_direct(ScriptedReader(), num_stories=4, seeds=(0, 1))
    assert result["questions_per_seed"] == 12 and len(result["runs"]) == 2
    assert result["dcot"]["mean"] >= result["direct"]["mean"] + 0.3
    for kind, stats in result["by_kind"].items():
        assert stats["dcot"]["mean"] >= stats["direct"]["mean"], kind
    table = format_table(result)
    assert "| all |" in table and f"{result['dcot']['mean']:.3f}" in table


def test_with_an_unlimited_span_the_two_methods_tie():
    # The gain comes from the span, not from the questions favouring DCoT's format.
    result = dcot_vs_direct(ScriptedReader(span_words=10_000), num_stories=3, seeds=(0,))
    assert result["direct"]["mean"] == result["dcot"]["mean"] == 1.0


def test_the_command_prints_the_table_and_writes_every_answer(tmp_path, capsys):
    out = tmp_path / "result.json"
    main(["--stories", "2", "--seeds", "0", "--json", str(out)])
    assert "| all |" in capsys.readouterr().out
    assert '"dcot_correct"' in out.read_text()
