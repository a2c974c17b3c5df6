"""`hf-gpt2 eval` end to end: model folders (stock GPT-2, its hf_gpt2 conversion, no tokenizer), the results JSON, the
table, and the errors a user sees for bad input."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2.cli import main
from hf_gpt2.errors import CheckpointError
from hf_gpt2.evaluation import ContextLengthError, format_table, load_model_and_tokenizer, resolve_tasks, run_tasks

TEXTS = [
    "The cat sat on the mat",
    "He took the red apple from the basket and gave it to his little sister, who smiled",
    "Everyone agreed that the meeting had gone well, though nobody could remember who had proposed the plan",
]
HELLASWAG = {
    "activity_label": "Cooking", "ctx_a": "A man is in a kitchen.", "ctx_b": "he cuts the",
    "endings": ["car.", "onion with a knife.", "sky [title] loudly.", "dog"], "label": 1,
}  # fmt: skip


def tiny_gpt2(n_positions: int = 64) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=n_positions, n_embd=32, n_layer=2, n_head=4)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A stock GPT-2 folder, its hf_gpt2 conversion, the same weights without a tokenizer, and data files."""
    from hf_gpt2.convert import from_gpt2
    from hf_gpt2.tokenization import load_gpt2_tokenizer

    root = tmp_path_factory.mktemp("eval_cli")
    tokenizer, model = load_gpt2_tokenizer(), tiny_gpt2()
    model.save_pretrained(root / "stock")
    tokenizer.save_pretrained(root / "stock")
    from_gpt2(model).save_pretrained(root / "converted")
    tokenizer.save_pretrained(root / "converted")
    model.save_pretrained(root / "no_tokenizer")
    (root / "lambada.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    (root / "hellaswag.jsonl").write_text(json.dumps(HELLASWAG) + "\n")
    (root / "wiki.test.raw").write_text(" \n = Tiny = \n \n The tiny article has two lines . \n \n It ends here . \n")
    (root / "ptb.test.txt").write_text(" no it was n't black monday \n the dow fell N points \n")
    (root / "news.en.heldout-00000-of-00050").write_text("It 's a small test .\nShares rose 5 % .\n")
    (root / "empty.txt").write_text("")
    return root


def eval_args(folders, model: str, *extra: str) -> list[str]:
    return [
        "eval", "--model", str(folders / model), "--tasks", "lambada_openai,hellaswag,wikitext2",
        "--data", f"lambada_openai={folders / 'lambada.jsonl'}", "--data", f"hellaswag={folders / 'hellaswag.jsonl'}",
        "--data", f"wikitext2={folders / 'wiki.test.raw'}", "--device", "cpu", "--no-progress", "--batch-size", "2",
        *extra,
    ]  # fmt: skip


def test_eval_writes_results_json_and_prints_the_reference_table(folders, tmp_path, capsys):
    output = tmp_path / "results.json"
    assert main(eval_args(folders, "stock", "--output", str(output))) == 0
    results = json.loads(output.read_text())
    assert results["model"] == str(folders / "stock")
    assert results["settings"]["tasks"] == ["lambada_openai", "hellaswag", "wikitext2"]
    assert results["lambada_openai"]["n"] == 3 and set(results["lambada_openai"]) >= {"acc", "ppl"}
    assert set(results["hellaswag"]) == {"acc", "acc_norm", "n"}
    assert results["wikitext2"]["n"] == 1 and results["wikitext2"]["word_perplexity"] > 1
    table = capsys.readouterr().out
    assert "GPT-2 paper 124M" in table and "lm-eval gpt2" in table
    assert any(line.startswith("lambada_openai") and "32.56" in line for line in table.splitlines())


def test_ptb_and_lm1b_print_the_papers_numbers_beside_the_results(folders, tmp_path, capsys):
    argv = [
        "eval", "--model", str(folders / "stock"), "--tasks", "ptb,lm1b", "--data", f"ptb={folders / 'ptb.test.txt'}",
        "--data", f"lm1b={folders / 'news.en.heldout-00000-of-00050'}", "--device", "cpu", "--no-progress",
        "--output", str(tmp_path / "results.json"),
    ]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ptb"]["n"] == 2 and results["lm1b"]["n"] == 2
    rows = {tuple(line.split()[:2]): line.split() for line in capsys.readouterr().out.splitlines()}
    ptb_row = rows[("ptb", "word_perplexity")]
    assert ptb_row[2] == f"{results['ptb']['word_perplexity']:.2f}" and ptb_row[3] == "65.85" and ptb_row[6] == "2"
    assert ptb_row[7] == str(folders / "ptb.test.txt")  # the data column names what was scored
    assert rows[("lm1b", "word_perplexity")][3] == "75.20"
    assert ("ptb", "token_perplexity") in rows and ("lm1b", "token_perplexity") in rows


def test_protocol_switches_reach_the_tasks_and_the_results_json(folders, tmp_path):
    default, switched = tmp_path / "default.json", tmp_path / "switched.json"
    wiki = ["eval", "--model", str(folders / "stock"), "--tasks", "wikitext2", "--device", "cpu", "--no-progress",
            "--data", f"wikitext2={folders / 'wiki.test.raw'}"]  # fmt: skip
    assert main([*wiki, "--output", str(default)]) == 0
    switches = ["--max-length", "16", "--prefix-token-id", "13", "--no-add-special-tokens", "--cbt-split", "test"]
    assert main([*wiki, *switches, "--test-bytes", "0", "--output", str(switched)]) == 0
    one, two = json.loads(default.read_text()), json.loads(switched.read_text())
    assert one["settings"]["cbt_split"] == "validation" and one["settings"]["test_bytes"] == 5_000_000
    assert one["settings"]["max_length"] is None and one["wikitext2"]["context"] == 64
    assert {k: two["settings"][k] for k in ("max_length", "prefix_token_id", "add_special_tokens", "cbt_split")} == {
        "max_length": 16, "prefix_token_id": 13, "add_special_tokens": False, "cbt_split": "test"
    }  # fmt: skip
    assert two["settings"]["test_bytes"] == 0 and two["wikitext2"]["context"] == 16
    assert two["wikitext2"]["tokens"] == one["wikitext2"]["tokens"]  # the same tokens, other windows and prefix
    assert two["wikitext2"]["word_perplexity"] != one["wikitext2"]["word_perplexity"]
    assert two["settings"]["scored"] == {"wikitext2": str(folders / "wiki.test.raw")}


def test_an_empty_ptb_file_is_one_line_and_exit_2(folders, capsys):
    argv = ["eval", "--model", str(folders / "stock"), "--tasks", "ptb", "--data", f"ptb={folders / 'empty.txt'}"]
    assert main([*argv, "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"ptb: {folders / 'empty.txt'} holds no sentences; pass Mikolov's ptb.test.txt" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_stock_gpt2_and_its_hf_gpt2_conversion_give_the_same_numbers(folders, tmp_path):
    """The same function through other kernels (padded vocabulary, one-kernel GELU): equal to float32 rounding."""
    assert main(eval_args(folders, "stock", "--output", str(tmp_path / "stock.json"))) == 0
    assert main(eval_args(folders, "converted", "--output", str(tmp_path / "converted.json"))) == 0
    stock, converted = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("stock", "converted"))
    for task in ("lambada_openai", "hellaswag", "wikitext2"):
        assert converted[task] == pytest.approx(stock[task], rel=1e-6)


def test_a_folder_without_tokenizer_says_it_uses_the_gpt2_bpe(folders, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_gpt2.evaluation.models"):
        _, tokenizer = load_model_and_tokenizer(folders / "no_tokenizer", device="cpu")
    assert "has no tokenizer files" in caplog.text and "GPT-2 BPE" in caplog.text
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]


def test_a_folder_without_tokenizer_and_a_small_vocabulary_is_an_error(tmp_path):
    GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=8, n_layer=1, n_head=1)).save_pretrained(
        tmp_path
    )
    with pytest.raises(CheckpointError, match="vocab_size 100 is smaller"):
        load_model_and_tokenizer(tmp_path, device="cpu")


@pytest.mark.parametrize(
    "argv_tail,message",
    [
        (["--tasks", "lambda_openai"], "unknown task 'lambda_openai'; did you mean 'lambada_openai'?"),
        (["--tasks", "gpt2_paper"], "did you mean 'gpt2-paper'?"),
        (["--tasks", "hellaswag", "--data", "hellaswg=x.jsonl"], "did you mean 'hellaswag'?"),
        (["--tasks", "hellaswag", "--data", "hellaswag=/nonexistent/h.jsonl"], "hellaswag: data path"),
        (["--tasks", "ptb", "--data", "ptb=/nonexistent/ptb.test.txt"], "ptb: data path '/nonexistent/ptb.test.txt'"),
        (["--tasks", "enwik8"], "enwik8 needs data: pass --data enwik8=PATH"),
        (["--tasks", "val_loss"], "val_loss needs data"),
        (["--tasks", "hellaswag", "--data", "hellaswag"], "argument --data: 'hellaswag' is not TASK=PATH"),
        (["--tasks", "hellaswag", "--dtype", "float33"], "argument --dtype: invalid choice: 'float33'"),
        (["--tasks", "hellaswag", "--limit", "0"], "argument --limit: 0 is not an integer >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv_tail, message, folders, capsys):
    assert main(["eval", "--model", str(folders / "stock"), "--no-progress", *argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_groups_expand_in_order_and_skip_tasks_that_need_data(tmp_path):
    paper = ["lambada_openai", "lambada_openai_paper", "cbt_cn", "cbt_ne", "wikitext2", "wikitext103", "ptb", "lm1b"]
    assert resolve_tasks("gpt2-paper") == paper
    (tmp_path / "text8").write_text("anarchism originated as a term of abuse")
    assert resolve_tasks(["all"], {"text8": str(tmp_path / "text8")}) == [*paper, "text8", "hellaswag"]
    assert resolve_tasks(["hellaswag, lambada_openai", "hellaswag"]) == ["hellaswag", "lambada_openai"]


def test_missing_model_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--model", str(tmp_path / "empty"), "--tasks", "hellaswag"]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_a_target_longer_than_the_model_context_is_an_error(tmp_path, gpt2_tokenizer):
    (tmp_path / "l.jsonl").write_text(json.dumps({"text": "He said antidisestablishmentarianistically"}) + "\n")
    with pytest.raises(ContextLengthError, match="needs to score 5 tokens at once, but the model's context is 4"):
        run_tasks(
            tiny_gpt2(n_positions=4),
            gpt2_tokenizer,
            ["lambada_openai"],
            data={"lambada_openai": str(tmp_path / "l.jsonl")},
        )


def test_a_rolling_context_longer_than_the_model_is_an_error(folders, capsys):
    argv = eval_args(folders, "stock", "--context", "128")
    assert main(argv) == 2
    assert "a context of 128 tokens was asked for, but the model's context is 64" in capsys.readouterr().err


def test_format_table_lines_up_results_and_references():
    table = format_table(
        {
            "lambada_openai": {"acc": 0.3, "ppl": 41.5, "n": 5153.0},
            "lambada_openai_paper": {"acc": 0.45, "ppl": 36.0, "n": 5153.0},
            "wikitext2": {"word_perplexity": 30.1, "token_perplexity": 20.0, "bits_per_byte": 0.7, "n": 62.0},
            "cbt_cn": {"acc": 0.8, "n": 2000.0},
        },
        sources={"cbt_cn": "cam-cst/cbt (CN), split validation"},
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "task", "metric", "value", "GPT-2", "paper", "124M", "lm-eval", "gpt2", "other", "124M", "(source)", "n",
        "data",
    ]  # fmt: skip
    assert lines[2].split() == ["lambada_openai", "acc", "(%)", "30.00", "-", "32.56", "-", "5153", "-"]
    assert lines[4].split() == [
        "lambada_openai_paper", "acc", "(%)", "45.00", "45.99", "-", "46.67", "(bflm", "eval_lambada.py)", "5153", "-"
    ]  # fmt: skip
    assert lines[6].split() == ["wikitext2", "word_perplexity", "30.10", "29.41", "-", "-", "62", "-"]
    assert lines[-1].split()[-5:] == ["2000", "cam-cst/cbt", "(CN),", "split", "validation"]
    assert len(lines[1]) == max(len(line) for line in lines)  # the rule spans every column
    assert {line.index("n  data") for line in lines[:1]} == {lines[-1].index("2000  cam") + 3}  # columns line up


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_split_the_work_and_gather_the_same_numbers(folders, tmp_path):
    """`accelerate launch --num_processes 2` gives the numbers a single process gives."""
    single, double = tmp_path / "single.json", tmp_path / "double.json"
    assert main(eval_args(folders, "stock", "--output", str(single))) == 0
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "hf_gpt2.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launch, *eval_args(folders, "stock", "--output", str(double))], env=env, timeout=300)
    assert proc.returncode == 0
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert two["settings"]["num_processes"] == 2
    for task in ("lambada_openai", "hellaswag", "wikitext2"):
        assert two[task]["n"] == one[task]["n"]
        for metric, value in one[task].items():
            assert two[task][metric] == pytest.approx(value, rel=1e-5), (task, metric)
