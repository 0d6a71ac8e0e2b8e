import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from generation.dialogue.memory.contextformer import ContextformerLM
from generation.dialogue.memory.evaluate import READERS, format_recall_table
from generation.dialogue.memory.train import main


def test_tiny_recipe_writes_a_loadable_folder_and_its_records(tmp_path, capsys):
    main(["--out", str(tmp_path / "run"), "--preset", "tiny"])
    run = tmp_path / "run"
    lm = AutoModelForCausalLM.from_pretrained(run / "lm")  # a standard HF directory
    tokenizer = AutoTokenizer.from_pretrained(run / "lm")
    assert lm.config.vocab_size == len(tokenizer)
    model = ContextformerLM.from_pretrained(run)
    assert model.config.lm_path == "lm" and model.config.lora_rank == 2
    record = json.loads((run / "training.json").read_text())
    result = json.loads((run / "eval.json").read_text())
    assert record["recipe"] == "tiny" and set(record["final_loss"]) == {"lm", "memory"}
    for reader in READERS:
        assert 0.0 <= result[reader]["recall_mean"] <= 1.0 and len(result[reader]["per_seed"]) == 3
    assert (
        result["with_memory"]["prompt_tokens_mean"] == result["window_only"]["prompt_tokens_mean"] + 8
    )  # queries
    assert result["whole_history"]["prompt_tokens_mean"] > result["window_only"]["prompt_tokens_mean"]
    assert format_recall_table(result) in capsys.readouterr().out
