"""Real Hugging Face clients on hf_gpt2 releases, each beside stock ``GPT2LMHeadModel`` with the same weights.

A tiny seeded hf_gpt2 model (OpenAI's 50,257-token BPE) is
released by our own code: ``save_release`` writes ``final/`` with the quickstart recipe (whose ``sample`` section asks
for 48 sampled tokens) and ``save_stock_gpt2_export`` writes ``final-gpt2/``. Every client loads those folders the
way a user does and must give the answers it gives for stock GPT-2: transformers' ``pipeline`` and ``Trainer``, TRL's
``SFTTrainer`` and ``RewardTrainer``, peft LoRA, lm-eval's ``HFLM`` and llama.cpp's GGUF converter.

transformers 5.24's ``Trainer`` counts ``num_items_in_batch`` over unshifted labels for a class whose name it does not
read as a causal LM (``GPT2LMHeadModel`` gets ``loss_type=None``), so stock GPT-2's training loss comes out scaled
by (T-1)/T there. The stock side gets ``loss_type = "ForCausalLM"`` (what it computes anyway) to compare like with
like; hf_gpt2's class name is read correctly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
from hf_gpt2.recipe import load_recipe
from hf_gpt2.release import save_release, save_stock_gpt2_export

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"n_positions": 128, "n_embd": 32, "n_layer": 2, "n_head": 4, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
         "attn_pdrop": 0.0}  # fmt: skip
PROMPTS = ["In the beginning", "And the LORD spake unto Moses, saying, Speak unto the children of Israel"]  # 3, 16 ids
TEXTS = [
    f"Verse {i}: and God saw the light, that it was good, and divided {i * 7} from the darkness." for i in range(16)
]
KINDS = {"ours": "final", "stock": "final-gpt2"}
LLAMA_CPP_PYTHON = "0.3.36"
"""llama-cpp-python source distribution whose vendored llama.cpp converter the GGUF test runs."""


@pytest.fixture(scope="module")
def releases(tmp_path_factory, gpt2_tokenizer) -> dict[str, Path]:
    """``{"ours": final/, "stock": final-gpt2/}`` of one tiny seeded model, written by hf_gpt2's release code."""
    root = tmp_path_factory.mktemp("clients")
    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(HfGPT2Config(vocab_size=50257, **SHAPE)).eval()
    assert model.get_input_embeddings().weight.shape[0] == 50257  # no padding rows show through (item 5)
    save_release(model, gpt2_tokenizer, root / "final", load_recipe(ROOT / "recipes" / "quickstart.yaml"))
    save_stock_gpt2_export(model, gpt2_tokenizer, root / "final-gpt2")
    return {kind: root / folder for kind, folder in KINDS.items()}


def _causal_lm(folder: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    if model.config.model_type == "gpt2":
        model.loss_type = "ForCausalLM"  # see the module docstring: Trainer's token count for GPT2LMHeadModel
    return model


def _same_numbers(ours: list[float], stock: list[float], *, rel: float = 1e-5) -> None:
    assert len(ours) == len(stock) and all(math.isfinite(x) for x in ours)
    assert ours == pytest.approx(stock, rel=rel, abs=1e-6)


def _training_args(cls, output_dir: Path, **kwargs):
    return cls(
        output_dir=str(output_dir),
        max_steps=3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        bf16=False,  # TRL's configs default to bf16 autocast, whose rounding differs between Conv1D and nn.Linear
        **kwargs,
    )


def _logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


# ----------------------------------------------------------------------------------------------- pipeline


def test_batched_text_generation_pipeline_on_the_release_and_the_stock_export(releases):
    from transformers import pipeline

    outputs = {}
    for kind, folder in releases.items():
        generator = pipeline("text-generation", model=str(folder))
        batched = generator(PROMPTS, batch_size=2, max_new_tokens=8, do_sample=False)
        alone = [generator(prompt, max_new_tokens=8, do_sample=False) for prompt in PROMPTS]
        assert batched == alone, kind  # left padding (the release's pad token) changes nothing
        outputs[kind] = batched
    assert outputs["ours"] == outputs["stock"]
    assert all(
        out[0]["generated_text"].startswith(prompt) for out, prompt in zip(outputs["ours"], PROMPTS, strict=True)
    )


# ----------------------------------------------------------------------------------------------- Trainer


def _lm_dataset(folder: Path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return tokenizer, Dataset.from_dict({"text": TEXTS}).map(
        lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"]
    )


def _next_token_accuracy(prediction) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids
    predicted, targets = logits[:, :-1].argmax(-1), labels[:, 1:]
    mask = targets != -100
    return {"accuracy": float((predicted[mask] == targets[mask]).mean()), "logit_columns": float(logits.shape[-1])}


@pytest.mark.slow
def test_trainer_trains_and_compute_metrics_reads_the_logits_as_for_stock(releases, tmp_path):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    runs = {}
    for kind, folder in releases.items():
        tokenizer, dataset = _lm_dataset(folder)
        trainer = Trainer(
            model=_causal_lm(folder),
            args=_training_args(TrainingArguments, tmp_path / kind),
            train_dataset=dataset,
            eval_dataset=dataset,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
            compute_metrics=_next_token_accuracy,
        )
        trainer.train()
        runs[kind] = (_logged(trainer, "loss"), trainer.evaluate())
    (train_loss, ours), (stock_train_loss, stock) = runs["ours"], runs["stock"]
    _same_numbers(train_loss, stock_train_loss)
    assert train_loss[-1] < train_loss[0]
    assert ours["eval_loss"] == pytest.approx(stock["eval_loss"], rel=1e-5)
    assert ours["eval_accuracy"] == stock["eval_accuracy"]
    assert ours["eval_logit_columns"] == 50257  # the vocabulary, not the padded rows


@pytest.mark.slow
def test_trainer_with_a_loss_read_from_the_training_logits_matches_stock(releases, tmp_path):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    class LogitsLossTrainer(Trainer):  # a loss from ``outputs.logits`` in training, as distillation code computes it
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            logits, labels = outputs.logits[:, :-1], inputs["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            return (loss, outputs) if return_outputs else loss

    losses = {}
    for kind in ("stock", "ours"):
        tokenizer, dataset = _lm_dataset(releases[kind])
        trainer = LogitsLossTrainer(
            model=_causal_lm(releases[kind]),
            args=_training_args(TrainingArguments, tmp_path / kind),
            train_dataset=dataset,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        )
        trainer.train()
        losses[kind] = _logged(trainer, "loss")
    _same_numbers(losses["ours"], losses["stock"])


# ----------------------------------------------------------------------------------------------- TRL


@pytest.fixture(scope="module")
def sft_runs(releases, tmp_path_factory) -> dict[str, dict[str, list[float]]]:
    """Three SFTTrainer steps on each release: the logged loss, token accuracy and entropy."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    runs = {}
    for kind, folder in releases.items():
        args = _training_args(SFTConfig, tmp_path_factory.mktemp(f"sft-{kind}"), max_length=64)
        trainer = SFTTrainer(
            model=_causal_lm(folder),
            args=args,
            train_dataset=Dataset.from_dict({"text": TEXTS}),
            processing_class=AutoTokenizer.from_pretrained(folder),
        )
        trainer.train()
        runs[kind] = {key: _logged(trainer, key) for key in ("loss", "mean_token_accuracy", "entropy")}
    return runs


@pytest.mark.slow
def test_trl_sft_trainer_trains_the_release(sft_runs):
    ours = sft_runs["ours"]
    assert (
        len(ours["loss"]) == 3 and all(math.isfinite(x) for x in ours["loss"]) and ours["loss"][-1] < ours["loss"][0]
    )
    assert ours["mean_token_accuracy"] == sft_runs["stock"]["mean_token_accuracy"]


@pytest.mark.slow
def test_trl_sft_trainer_loss_and_entropy_match_stock(sft_runs):
    for key in ("loss", "entropy"):  # TRL's fused LM head scores every row get_output_embeddings() holds
        _same_numbers(sft_runs["ours"][key], sft_runs["stock"][key])


@pytest.mark.slow
def test_trl_reward_trainer_on_the_release_matches_stock(releases, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from hf_gpt2 import HfGPT2ForSequenceClassification  # noqa: F401  (the head AutoModelForSequenceClassification needs)

    pairs = Dataset.from_dict(
        {
            "chosen": [f"The sum of {i} and {i} is {2 * i}." for i in range(16)],
            "rejected": [f"The sum of {i} and {i} is {2 * i + 3}." for i in range(16)],
        }
    )
    runs, score = {}, None
    for kind in ("stock", "ours"):
        model = AutoModelForSequenceClassification.from_pretrained(releases[kind], num_labels=1)
        if score is None:
            score = model.score.weight.detach().clone()  # a new head: start both from the same weights
        else:
            model.score.weight.data.copy_(score)
        trainer = RewardTrainer(
            model=model,
            args=_training_args(RewardConfig, tmp_path / kind, max_length=64),
            train_dataset=pairs,
            processing_class=AutoTokenizer.from_pretrained(releases[kind]),
        )
        trainer.train()
        runs[kind] = {key: _logged(trainer, key) for key in ("loss", "accuracy", "margin")}
    for key in ("loss", "accuracy", "margin"):
        _same_numbers(runs["ours"][key], runs["stock"][key])


# ----------------------------------------------------------------------------------------------- peft


def test_peft_lora_trains_and_merges_to_the_adapter_models_logits_as_for_stock(releases, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(releases["ours"])
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    merged_logits, losses = {}, {}
    for kind in ("ours", "stock"):
        model = _causal_lm(releases[kind])
        base = {k: v.clone() for k, v in model.state_dict().items()}
        torch.manual_seed(0)
        config = LoraConfig(
            r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            target_modules=["c_attn", "c_proj", "c_fc"],
            fan_in_fan_out=kind == "stock",
        )  # fmt: skip  (stock GPT-2 holds Conv1D weights)
        adapted = get_peft_model(model, config)
        optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
        adapted.train()
        losses[kind] = []
        for _ in range(3):
            loss = adapted(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[kind].append(loss.item())
        adapted.eval()
        with torch.no_grad():
            adapter_logits = adapted(**batch).logits
        merged = adapted.merge_and_unload()
        assert type(merged) is type(model)
        assert not any(torch.equal(base[k], v) for k, v in merged.state_dict().items() if k.endswith("c_attn.weight"))
        with torch.no_grad():
            merged_logits[kind] = merged(**batch).logits
        torch.testing.assert_close(merged_logits[kind], adapter_logits, atol=1e-5, rtol=1e-5)
        if kind == "ours":  # the merged model is a plain hf_gpt2 model again: it saves and reloads as one
            merged.save_pretrained(tmp_path / "merged")
            reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
            with torch.no_grad():
                torch.testing.assert_close(reloaded(**batch).logits, merged_logits[kind])
    _same_numbers(losses["ours"], losses["stock"])
    assert losses["ours"][-1] < losses["ours"][0]
    torch.testing.assert_close(merged_logits["ours"], merged_logits["stock"], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------- lm-eval


@pytest.mark.slow
def test_lm_eval_hflm_generate_until_honours_max_gen_toks_and_loglikelihood_matches_stock(releases):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    results = {}
    for kind, folder in releases.items():
        lm = HFLM(pretrained=str(folder), backend="causal", batch_size=2, device="cpu")
        until = [
            Instance("generate_until", {}, (prompt, {"until": ["\n\n\n"], "max_gen_toks": 60, "do_sample": False}), i)
            for i, prompt in enumerate(PROMPTS)
        ]
        texts = lm.generate_until(until)
        lengths = [len(lm.tokenizer(text, add_special_tokens=False).input_ids) for text in texts]
        scored = lm.loglikelihood(
            [Instance("loglikelihood", {}, (prompt, " and the earth"), i) for i, prompt in enumerate(PROMPTS)]
        )
        results[kind] = (texts, lengths, scored)
    (texts, lengths, scored), (stock_texts, _, stock_scored) = results["ours"], results["stock"]
    assert lengths == [60, 60]  # max_gen_toks, not the recipe's sample.max_new_tokens=48
    assert texts == stock_texts
    for (logprob, greedy), (stock_logprob, stock_greedy) in zip(scored, stock_scored, strict=True):
        assert logprob == pytest.approx(stock_logprob, abs=1e-4) and greedy == stock_greedy


# ----------------------------------------------------------------------------------------------- llama.cpp


def llama_cpp_converter() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py`` (with its ``conversion/`` and ``gguf-py/``) from llama-cpp-python's
    source distribution on PyPI, fetched once with pip and kept under ``.cache/`` (ignored by git)."""
    cache = ROOT / ".cache" / f"llama-cpp-python-{LLAMA_CPP_PYTHON}"
    script = cache / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:  # on the cache's filesystem: the move is a rename
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*command, "--dest", tmp, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"], check=True, timeout=600)
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
        staging = Path(tmp) / "converter"
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix(prefix)
                safe = member.isfile() and ".." not in Path(name).parts
                if member.name.startswith(prefix) and safe and name.startswith(wanted):
                    target = staging / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(staging, cache)
    return script


def _convert_to_gguf(folder: Path, outfile: Path) -> subprocess.CompletedProcess:
    """Run the converter as a user does; it imports the gguf-py it ships (PyPI's gguf 0.19 lacks what it uses)."""
    command = [sys.executable, str(llama_cpp_converter()), str(folder), "--outfile", str(outfile), "--outtype", "f32"]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )


@pytest.mark.slow
def test_llama_cpp_converts_the_stock_export_to_a_gguf_with_its_weights(releases, tmp_path):
    import gguf
    from transformers import GPT2LMHeadModel

    done = _convert_to_gguf(releases["stock"], tmp_path / "model.gguf")
    assert done.returncode == 0, done.stderr[-3000:]
    reader = gguf.GGUFReader(tmp_path / "model.gguf")
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "gpt2" and fields["tokenizer.ggml.model"] == "gpt2"
    assert {k: fields[f"gpt2.{k}"] for k in ("context_length", "block_count", "embedding_length",
            "feed_forward_length", "attention.head_count")} == {"context_length": 128, "block_count": 2,
            "embedding_length": 32, "feed_forward_length": 128, "attention.head_count": 4}  # fmt: skip
    assert fields["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert len(fields["tokenizer.ggml.tokens"]) == 50257 and len(fields["tokenizer.ggml.merges"]) == 50000
    assert fields["tokenizer.ggml.eos_token_id"] == 50256 and fields["tokenizer.ggml.padding_token_id"] == 50256

    stock = GPT2LMHeadModel.from_pretrained(releases["stock"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, stock.config.n_layer)
    expected = {}
    for key, value in stock.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied to the embedding: llama.cpp reads token_embd
        value = value.t() if key.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else value  # Conv1D
        expected[names.get_name(key, try_suffixes=(".weight", ".bias"))] = value
    tensors = {tensor.name: torch.from_numpy(tensor.data.copy()) for tensor in reader.tensors}
    assert sorted(tensors) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(tensors[name].reshape(value.shape), value), name


@pytest.mark.slow
def test_llama_cpp_needs_the_n_ctx_the_export_writes(releases, tmp_path):
    folder = tmp_path / "without-n_ctx"
    shutil.copytree(releases["stock"], folder)
    config = json.loads((folder / "config.json").read_text())
    del config["n_ctx"]
    (folder / "config.json").write_text(json.dumps(config))
    done = _convert_to_gguf(folder, tmp_path / "model.gguf")
    assert done.returncode != 0 and "KeyError: 'n_ctx'" in done.stderr
