"""The CORE score on a small eval bundle written here in nanochat's layout (``eval_bundle/core.yaml``,
``eval_meta_data.csv``, ``eval_data/<category>/<task>.jsonl``), checked against a direct, unbatched computation of the
protocol (nanochat's ``core_eval.py``): prompts rendered by Jinja templates, one forward pass per sequence."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import zipfile

import jinja2
import pytest
import torch
import yaml
from test_eval_tasks import bigram_model
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2.cli import main
from hf_gpt2.errors import DataError
from hf_gpt2.evaluation import EvalOptions, run_tasks
from hf_gpt2.evaluation.core import CORE_TASKS, Bundle, CoreTaskSpec, locate_bundle, render_prompts
from hf_gpt2.tokenization import GPT2_EOS_ID

DELIMITERS = {"jeopardy": "\nAnswer: ", "arc_easy": "\nAnswer: ", "arc_challenge": "\nAnswer: ", "piqa": "\nAnswer: "}
DELIMITERS["boolq"] = "\nAnswer: "
BASELINES = {"copa": 50, "piqa": 50, "winograd": 50, "winogrande": 50, "boolq": 62, "commonsense_qa": 20}
CATEGORY = "language_understanding"
WORDS = "the cat sat on a mat and the dog ran to the tree while birds sang over green hills near water".split()


def make_item(task_type: str, rng: random.Random) -> dict:
    def phrase(n):
        return " ".join(rng.choice(WORDS) for _ in range(n))

    if task_type == "multiple_choice":
        choices = [phrase(rng.randint(1, 4)) for _ in range(rng.randint(2, 4))]
        choices[0] = "the " + choices[0]
        choices[-1] = "the " + choices[-1]  # some choices share leading tokens: only the rest is scored
        return {"query": "Q: " + phrase(6) + "?", "choices": choices, "gold": rng.randrange(len(choices))}
    if task_type == "schema":
        options = [phrase(4) + " " + rng.choice(["Tom", "Mary"]) for _ in range(2)]
        return {"context_options": options, "continuation": "went to the " + phrase(3), "gold": rng.randrange(2)}
    # language modelling: half the items end in a continuation the bigram model predicts (" mat" after " the")
    return {"context": phrase(5) + " the  ", "continuation": rng.choice(["mat", "dog ran"])}


def write_bundle(root, *, items_per_task: int = 12, drop: str | None = None, shots: dict | None = None) -> None:
    """nanochat's eval bundle layout, with small synthetic tasks; ``drop`` leaves a task out of core.yaml."""
    bundle = root / "eval_bundle"
    rng = random.Random(0)
    tasks = []
    for label, (task_type, num_fewshot) in CORE_TASKS.items():
        if label == drop:
            continue
        uri = f"{CATEGORY}/{label}.jsonl"
        entry = {"label": label, "dataset_uri": uri, "num_fewshot": [(shots or {}).get(label, num_fewshot)]}
        entry["icl_task_type"] = task_type
        if label in DELIMITERS:
            entry["continuation_delimiter"] = DELIMITERS[label]
        tasks.append(entry)
        path = bundle / "eval_data" / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(make_item(task_type, rng)) + "\n" for _ in range(items_per_task)))
    (bundle / "core.yaml").write_text(yaml.safe_dump({"icl_tasks": tasks}))
    with (bundle / "eval_meta_data.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Eval Task", "Task Category", "Task Type", "#shots", "#datapoints", "Random baseline"])
        for label, (task_type, num_fewshot) in CORE_TASKS.items():
            writer.writerow([label, CATEGORY, task_type, num_fewshot, items_per_task, BASELINES.get(label, 25)])
    return bundle


def zip_bundle(bundle, path):
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(bundle.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(bundle.parent).as_posix())
    return path


TEMPLATES = {  # the prompt formats, written as Jinja templates (what nanochat renders), independently of the code
    "multiple_choice": "{% for ex in shots %}{{ ex.query }}{{ d }}{{ ex.choices[ex.gold] }}\n\n{% endfor %}"
    "{{ item.query }}{{ d }}{{ choice }}",
    "schema": "{% for ex in shots %}{{ ex.context_options[ex.gold] }}{{ d }}{{ ex.continuation }}\n\n{% endfor %}"
    "{{ option }}{{ d }}{{ item.continuation }}",
    "language_modeling": "{% for ex in shots %}{{ ex.context | trim }}{{ d }}{{ ex.continuation }}\n\n{% endfor %}"
    "{{ item.context | trim }}{{ d }}{% if with_answer %}{{ item.continuation }}{% endif %}",
}


def jinja_prompts(task_type, item, shots, delimiter):
    template = jinja2.Template(TEMPLATES[task_type])
    if task_type == "multiple_choice":
        return [template.render(shots=shots, item=item, d=delimiter, choice=c) for c in item["choices"]]
    if task_type == "schema":
        return [template.render(shots=shots, item=item, d=delimiter, option=o) for o in item["context_options"]]
    return [template.render(shots=shots, item=item, d=delimiter, with_answer=w) for w in (False, True)]


# One task of each kind: multiple choice 0- and 10-shot (with "\nAnswer: "), schema, language modelling 0- and
# 10-shot (with "\nAnswer: "). The other tasks run the same code with other files and settings.
CHECKED = ("hellaswag_zeroshot", "arc_easy", "winograd", "lambada_openai", "jeopardy")


def direct_accuracies(model, tokenizer, bundle, limit=None, max_length=10_000):
    """The accuracies of the CHECKED tasks, computed one sequence at a time: what the batched task must give."""
    config = yaml.safe_load((bundle / "core.yaml").read_text())
    accuracies = {}
    for task in (t for t in config["icl_tasks"] if t["label"] in CHECKED):
        items = [json.loads(line) for line in (bundle / "eval_data" / task["dataset_uri"]).read_text().splitlines()]
        random.Random(1337).shuffle(items)
        items = items[:limit] if limit else items
        right = 0
        for i, item in enumerate(items):
            k = task["num_fewshot"][0]
            shots = [items[j] for j in random.Random(1234 + i).sample([j for j in range(len(items)) if j != i], k)]
            prompts = jinja_prompts(task["icl_task_type"], item, shots, task.get("continuation_delimiter", " "))
            if task["icl_task_type"] == "language_modeling":
                prompts[0] = prompts[0].strip()
            seqs = [[GPT2_EOS_ID, *tokenizer(p)["input_ids"]] for p in prompts]
            shortest = min(len(s) for s in seqs)
            if task["icl_task_type"] == "multiple_choice":  # after the tokens all choices share
                start = next((n for n in range(shortest) if len({s[n] for s in seqs}) > 1), shortest)
                spans = [(s, start, len(s)) for s in seqs]
            elif task["icl_task_type"] == "schema":  # the tokens all options end with
                suffix = next((n for n in range(shortest) if len({s[-1 - n] for s in seqs}) > 1), shortest)
                spans = [(s, len(s) - suffix, len(s)) for s in seqs]
            else:
                spans = [(seqs[1], len(seqs[0]), len(seqs[1]))]
            losses, greedy = [], []
            for seq, start, end in spans:
                cut = max(0, len(seq) - max_length)
                seq, start, end = seq[cut:], start - cut, end - cut
                with torch.no_grad():
                    logits = model(torch.tensor([seq])).logits[0].double()
                nll = torch.nn.functional.cross_entropy(
                    logits[start - 1 : end - 1], torch.tensor(seq[start:end], dtype=torch.long)
                )
                losses.append(nll.item())
                greedy.append(
                    bool(
                        (
                            logits[start - 1 : end - 1].argmax(-1) == torch.tensor(seq[start:end], dtype=torch.long)
                        ).all()
                    )
                )
            if task["icl_task_type"] == "language_modeling":
                right += greedy[0]
            else:
                right += losses.index(min(losses)) == item["gold"]
        accuracies[task["label"]] = right / len(items)
    return accuracies


def centered_mean(bundle, accuracies):
    """CORE from per-task accuracies: the mean of (acc - baseline) / (1 - baseline), baselines in % in the CSV."""
    rows = csv.DictReader(io.StringIO((bundle / "eval_meta_data.csv").read_text()))
    baselines = {row["Eval Task"]: 0.01 * float(row["Random baseline"]) for row in rows}
    return sum((a - baselines[k]) / (1 - baselines[k]) for k, a in accuracies.items()) / len(accuracies)


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from hf_gpt2.tokenization import load_gpt2_tokenizer

    tokenizer = load_gpt2_tokenizer()
    forced = {(" the", " mat"): 30.0, (" ran", " to"): 10.0, (" the", " cat"): 4.0, (" Mary", " went"): 8.0}
    return bigram_model(tokenizer, forced, n_embd=64), tokenizer


def test_the_prompt_formats_are_the_protocols():
    mc = CoreTaskSpec("arc_easy", "x.jsonl", "multiple_choice", 1, "\nAnswer: ", 0.25)
    shot = {"query": "Q1", "choices": ["a", "b"], "gold": 1}
    item = {"query": "Q2", "choices": ["c", "d"], "gold": 0}
    assert render_prompts(mc, item, [shot]) == ["Q1\nAnswer: b\n\nQ2\nAnswer: c", "Q1\nAnswer: b\n\nQ2\nAnswer: d"]
    schema = CoreTaskSpec("winograd", "x.jsonl", "schema", 1, " ", 0.5)
    shot = {"context_options": ["Tom ran", "Mary ran"], "continuation": "home", "gold": 0}
    item = {"context_options": ["A", "B"], "continuation": "fast", "gold": 1}
    assert render_prompts(schema, item, [shot]) == ["Tom ran home\n\nA fast", "Tom ran home\n\nB fast"]
    lm = CoreTaskSpec("squad", "x.jsonl", "language_modeling", 1, " ", 0.0)
    shot, item = {"context": " What?  ", "continuation": "This"}, {"context": "Why? ", "continuation": "Because"}
    assert render_prompts(lm, item, [shot]) == ["What? This\n\nWhy?", "What? This\n\nWhy? Because"]


def test_render_prompts_equals_the_jinja_templates_on_every_task(tmp_path):
    bundle = write_bundle(tmp_path)
    config = yaml.safe_load((bundle / "core.yaml").read_text())
    for task in config["icl_tasks"]:
        items = [json.loads(line) for line in (bundle / "eval_data" / task["dataset_uri"]).read_text().splitlines()]
        spec = CoreTaskSpec(task["label"], "", task["icl_task_type"], 3, task.get("continuation_delimiter", " "), 0)
        expected = jinja_prompts(spec.task_type, items[0], items[1:4], spec.continuation_delimiter)
        if spec.task_type == "language_modeling":
            expected[0] = expected[0].strip()
        assert render_prompts(spec, items[0], items[1:4]) == expected, task["label"]


@pytest.mark.slow
def test_core_equals_the_direct_computation(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    bundle = write_bundle(tmp_path)
    data = {"core": str(zip_bundle(bundle, tmp_path / "eval_bundle.zip"))}
    got = run_tasks(model, tokenizer, ["core"], data=data, batch_size=7, progress=False)["core"]
    accuracies = {k.removeprefix("acc_"): v for k, v in got.items() if k.startswith("acc_")}
    assert {k: accuracies[k] for k in CHECKED} == direct_accuracies(model, tokenizer, bundle)
    assert list(accuracies) == list(CORE_TASKS)
    assert got["core"] == pytest.approx(centered_mean(bundle, accuracies), abs=1e-12)
    assert got["n"] == 22 * 12
    assert all(0 < accuracies[k] < 1 for k in ("lambada_openai", "arc_easy", "winograd"))  # the data discriminate
    assert got["centered_copa"] == pytest.approx((got["acc_copa"] - 0.5) / 0.5)


def test_the_bundle_reads_the_same_from_its_zip_its_folder_and_the_folder_above(tmp_path):
    bundle = write_bundle(tmp_path)
    readers = [Bundle(zip_bundle(bundle, tmp_path / "eval_bundle.zip")), Bundle(bundle), Bundle(tmp_path)]
    specs = [reader.task_specs() for reader in readers]
    assert specs[0] == specs[1] == specs[2] and [s.label for s in specs[0]] == list(CORE_TASKS)
    assert specs[0][0].random_baseline == 0.25 and specs[0][1].continuation_delimiter == "\nAnswer: "
    assert readers[0].items(specs[0][5]) == readers[1].items(specs[0][5]) == readers[2].items(specs[0][5])


@pytest.mark.slow
def test_limit_keeps_the_first_shuffled_items_and_crops_long_prompts(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    bundle = write_bundle(tmp_path)
    options = EvalOptions(max_length=40)  # 10-shot prompts are cropped to their last 40 tokens
    got = run_tasks(model, tokenizer, ["core"], data={"core": str(bundle)}, limit=11, options=options, progress=False)
    accuracies = {k.removeprefix("acc_"): v for k, v in got["core"].items() if k.startswith("acc_")}
    assert {k: accuracies[k] for k in CHECKED} == direct_accuracies(model, tokenizer, bundle, limit=11, max_length=40)
    assert got["core"]["n"] == 22 * 11


def test_bundle_problems_are_one_line_errors(tmp_path, model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer

    def run(path, **kwargs):
        return run_tasks(model, tokenizer, ["core"], data={"core": str(path)}, progress=False, **kwargs)

    with pytest.raises(
        DataError, match=r"core\.yaml does not list CORE's 22 tasks \(missing \['copa'\], extra \[\]\)"
    ):
        run(write_bundle(tmp_path / "a", drop="copa"))
    with pytest.raises(DataError, match="defines squad as language_modeling, 3-shot; CORE defines it as .*10-shot"):
        run(write_bundle(tmp_path / "b", shots={"squad": 3}))
    with pytest.raises(DataError, match="jeopardy draws 10 few-shot examples .* only 5 are scored; use --limit 11"):
        run(write_bundle(tmp_path / "c"), limit=5)
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="is not a CORE eval bundle"):
        run(tmp_path / "d")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(DataError, match=r"the eval bundle is not in the cache .* HF_HUB_OFFLINE is set; download"):
        locate_bundle(None)
    with pytest.raises(DataError, match=r"cannot get the eval bundle from the Hub dataset 'someone/bundle'"):
        locate_bundle("hf://datasets/someone/bundle@main/eval_bundle")


def test_the_default_bundle_is_nanochats_zip_in_the_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: False)
    fetched = []

    def download(target):
        fetched.append(target)
        zip_bundle(write_bundle(tmp_path / "src"), target)

    path = locate_bundle(None, download=download)
    assert path == tmp_path / "hf_gpt2" / "eval_bundle.zip" and fetched == [path]
    assert locate_bundle(None, download=download) == path and len(fetched) == 1  # cached


def test_eval_core_from_the_command_line_prints_the_reference(tmp_path, capsys):
    from hf_gpt2.tokenization import load_gpt2_tokenizer

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path / "model")
    load_gpt2_tokenizer().save_pretrained(tmp_path / "model")
    bundle = zip_bundle(write_bundle(tmp_path), tmp_path / "eval_bundle.zip")
    argv = ["eval", "--model", str(tmp_path / "model"), "--tasks", "core", "--data", f"core={bundle}", "--limit", "11"]
    assert main([*argv, "--device", "cpu", "--no-progress", "--output", str(tmp_path / "r.json")]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    core_row = next(row for row in rows if row[:2] == ["core", "core"])
    assert core_row[3:5] == ["-", "-"] and core_row[5:9] == ["0.1139", "(nanochat;", "1.5B:", "0.2565)"]
    assert len([row for row in rows if row[:2] and row[0] == "core" and row[1].startswith("acc_")]) == 22
    results = json.loads((tmp_path / "r.json").read_text())["core"]
    assert math.isfinite(results["core"]) and results["n"] == 22 * 11
