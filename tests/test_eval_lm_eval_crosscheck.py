"""Cross-check against lm-evaluation-harness itself (a dev dependency, not a dependency of hf_gpt2).

Same weights, same local data: lm-eval's own `lambada_openai`, `hellaswag` and `wikitext` task definitions, pointed at
jsonl files through `dataset_path: json`, must give the numbers `run_tasks` gives. Run it with
`pytest -m slow tests/test_eval_lm_eval_crosscheck.py` (`make install` installs lm-eval).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2.evaluation import run_tasks

lm_eval = pytest.importorskip("lm_eval")

pytestmark = pytest.mark.slow

TASK_YAMLS = {
    "x_lambada": """task: x_lambada
dataset_path: json
dataset_kwargs: {data_files: {test: DATA}}
output_type: loglikelihood
test_split: test
doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}"
doc_to_target: "{{' '+text.split(' ')[-1]}}"
metric_list:
  - {metric: perplexity, aggregation: perplexity, higher_is_better: false}
  - {metric: acc, aggregation: mean, higher_is_better: true}
""",
    "x_hellaswag": """task: x_hellaswag
dataset_path: json
dataset_kwargs: {data_files: {validation: DATA}}
output_type: multiple_choice
validation_split: validation
process_docs: !function utils.process_docs
doc_to_text: "{{query}}"
doc_to_target: "{{label}}"
doc_to_choice: "choices"
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
  - {metric: acc_norm, aggregation: mean, higher_is_better: true}
""",
    "x_wikitext": """task: x_wikitext
dataset_path: json
dataset_kwargs: {data_files: {test: DATA}}
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: !function preprocess_wikitext.wikitext_detokenizer
process_results: !function preprocess_wikitext.process_results
metric_list:
  - {metric: word_perplexity}
  - {metric: byte_perplexity}
  - {metric: bits_per_byte}
""",
}


def write_data(root: Path) -> dict[str, Path]:
    """LAMBADA passages, HellaSwag items and WikiText pages cut from real English (the stdlib's pydoc topics)."""
    import pydoc_data.topics

    words = " ".join(v.replace("\n", " ") for v in pydoc_data.topics.topics.values()).split()
    rng = random.Random(0)
    lambada = [{"text": " ".join(words[i * 50 : i * 50 + rng.randint(8, 90)])} for i in range(24)]
    hellaswag = []
    for i in range(16):
        w = words[i * 200 : i * 200 + 120]
        endings = [" ".join(w[24 + 12 * k : 24 + 12 * k + rng.randint(2, 12)]) + " [step] x." for k in range(4)]
        hellaswag.append(
            {
                "activity_label": " ".join(w[:2]),
                "ctx_a": " ".join(w[2:20]) + ".",
                "ctx_b": " ".join(w[20:24]),
                "endings": endings,
                "label": str(rng.randint(0, 3)),
            }
        )
    pages = [
        f" = Title {i} = \n \n " + " ".join(words[9000 + i * 400 : 9000 + i * 400 + 300]).replace(",", " , ") + " \n"
        for i in range(3)
    ]
    files = {"x_lambada": lambada, "x_hellaswag": hellaswag, "x_wikitext": [{"page": p} for p in pages]}
    for name, rows in files.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {name: root / f"{name}.jsonl" for name in files}


def briefly_trained_gpt2(tokenizer, texts: list[str]) -> GPT2LMHeadModel:
    """A tiny GPT-2 trained 15 steps on half of the passages (one padded batch), so that some last words are greedy."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=64, n_embd=64, n_layer=2, n_head=4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rows = [tokenizer(t)["input_ids"][-64:] for t in texts[:12]]
    width = max(map(len, rows))
    ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    for _ in range(15):
        model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_run_tasks_matches_lm_evaluation_harness(tmp_path, gpt2_tokenizer):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    data = write_data(tmp_path)
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    lm_eval_tasks = Path(lm_eval.__file__).parent / "tasks"
    shutil.copy(lm_eval_tasks / "hellaswag" / "utils.py", tasks_dir / "utils.py")
    shutil.copy(lm_eval_tasks / "wikitext" / "preprocess_wikitext.py", tasks_dir / "preprocess_wikitext.py")
    for name, text in TASK_YAMLS.items():
        (tasks_dir / f"{name}.yaml").write_text(text.replace("DATA", str(data[name])))

    texts = [json.loads(line)["text"] for line in data["x_lambada"].read_text().splitlines()]
    model = briefly_trained_gpt2(gpt2_tokenizer, texts)
    ours = run_tasks(
        model,
        gpt2_tokenizer,
        ["lambada_openai", "hellaswag", "wikitext2"],
        data={"lambada_openai": data["x_lambada"], "hellaswag": data["x_hellaswag"], "wikitext2": data["x_wikitext"]},
        batch_size=4,
        progress=False,
    )
    theirs = simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=gpt2_tokenizer, batch_size=4),
        tasks=list(TASK_YAMLS),
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),  # index our 3 tasks only
    )["results"]

    assert 0 < ours["lambada_openai"]["acc"] < 1
    assert ours["lambada_openai"]["acc"] == theirs["x_lambada"]["acc,none"]
    assert ours["lambada_openai"]["ppl"] == pytest.approx(theirs["x_lambada"]["perplexity,none"], rel=1e-4)
    assert ours["hellaswag"]["acc"] == theirs["x_hellaswag"]["acc,none"]
    assert ours["hellaswag"]["acc_norm"] == theirs["x_hellaswag"]["acc_norm,none"]
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert ours["wikitext2"][metric] == pytest.approx(theirs["x_wikitext"][f"{metric},none"], rel=1e-4)
