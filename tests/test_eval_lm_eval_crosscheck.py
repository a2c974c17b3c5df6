"""hf-gpt2 eval against lm-evaluation-harness 0.4.13 itself: its registered task definitions (``lambada_openai``,
``hellaswag``, ``wikitext``, ``paloma_ptb``, ``paloma_wikitext_103``: the YAML files it ships, loaded by its own
loader), run through its ``HFLM`` on the same weights, with only the dataset location (``dataset_path``,
``dataset_name``, ``dataset_kwargs``) changed to files this test writes.

The model and data are built so that each metric is sensitive to the mistakes it could hide:

- a tokenizer whose BOS (``<|startoftext|>``, added in front of every text like Llama's) differs from its EOS, so the
  prefix token and the tokenizer's special tokens show in every rolling document and empty context;
- a stock GPT-2 with forced transitions: some LAMBADA last words are greedy as a whole, some only in their last BPE
  token (a last-token greedy check would count them), and HellaSwag endings whose best choice per character differs
  from the best per token;
- WikiText pages full of its tokenization artifacts (``@-@``, ``" , "``, brackets, quotes, headings), longer than the
  model's 48-token context, so detokenizer, word count and rolling windows all matter.

Tolerances are the README's: accuracies exact, perplexities within 1e-6 relative (float32 logits, different batch
shapes and padding on the two sides).
"""

from __future__ import annotations

import json
import math
import random
import re

import lm_eval
import pytest
import torch
from tokenizers.processors import TemplateProcessing
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2.evaluation import EvalOptions, run_tasks
from hf_gpt2.evaluation.hellaswag import hellaswag_item
from hf_gpt2.tokenization import load_gpt2_tokenizer

pytestmark = pytest.mark.slow

REL = 1e-6
"""The README's tolerance for perplexities."""
N_POSITIONS = 48

FULL_WORDS = {" mat": " the", " antelope": " an"}
"""Last words made greedy as a whole: their first piece is forced after the word before them, the rest after it."""
TAIL_WORDS = (" marmalade", " Zanzibar", " hummingbird", " xylophone")
"""Last words whose pieces after the first are forced, but not the first: greedy in their last token only."""
SHORT_TOKENS, LONG_TOKEN = " 1234567", " lighthouse"
"""A HellaSwag ending of many short tokens (its later ones forced) and one of a single long token."""


def words() -> list[str]:
    import pydoc_data.topics

    return " ".join(v.replace("\n", " ") for v in pydoc_data.topics.topics.values()).split()


def bos_tokenizer():
    """GPT-2's BPE with its own BOS token (50257), which the tokenizer puts in front of every text."""
    tokenizer = load_gpt2_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<|startoftext|>"})
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|startoftext|> $A", special_tokens=[("<|startoftext|>", tokenizer.bos_token_id)]
    )
    return tokenizer


def forced_gpt2(tokenizer) -> GPT2LMHeadModel:
    """A stock GPT-2 (random blocks: the logits depend on the context) whose chosen transitions are forced: after
    token a, token b's logit is raised by 30 through the LM head."""
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=N_POSITIONS, n_embd=64, n_layer=2, n_head=4, tie_word_embeddings=False
    )
    model = GPT2LMHeadModel(config).eval()
    pieces = {w: tokenizer.encode(w, add_special_tokens=False) for w in [*FULL_WORDS, *TAIL_WORDS, SHORT_TOKENS]}
    pairs = [
        (tokenizer.encode(before, add_special_tokens=False)[-1], pieces[w][0]) for w, before in FULL_WORDS.items()
    ]
    pairs += [(a, b) for ids in pieces.values() for a, b in zip(ids, ids[1:], strict=False)]
    with torch.no_grad():
        model.transformer.wte.weight.normal_(0.0, 1.0)
        features = model.transformer.ln_f(model.transformer.wte.weight)  # what the LM head sees, nearly
        for a, b in pairs:
            model.lm_head.weight[b] += 30.0 * features[a] / features[a].pow(2).sum()
    return model


def write_data(root) -> dict[str, str]:
    rng, vocab = random.Random(0), words()

    def phrase(start, n):
        return " ".join(vocab[start : start + n])

    lambada = []
    for i in range(30):
        body = phrase(i * 40, rng.randint(6, 40))
        ending = ["the mat", "an antelope", *(f"near{w}" for w in TAIL_WORDS), vocab[i * 40 + 50]][i % 7]
        lambada.append({"text": f"{body} {ending}"})
    lambada.append({"text": "Hello"})  # no space: lm-eval scores it after the prefix token
    hellaswag = []
    for i in range(16):
        w = vocab[3000 + i * 60 : 3000 + i * 60 + 50]
        endings = [" ".join(w[24 + 5 * k : 27 + 5 * k + rng.randint(0, 3)]) + " [step] x." for k in range(4)]
        label = rng.randint(0, 3)
        if i % 2 == 0:  # per token the short-token ending wins, per character the single long token
            endings[label], endings[(label + 1) % 4] = SHORT_TOKENS.strip(), LONG_TOKEN.strip()
        hellaswag.append({
            "activity_label": " ".join(w[:2]), "ctx_a": " ".join(w[2:20]) + ".", "ctx_b": " ".join(w[20:24]),
            "endings": endings, "label": str(label),
        })  # fmt: skip
    pages = []
    for i in range(3):
        text = phrase(9000 + i * 500, 260)
        for old, new in ((",", " ,"), (".", " ."), ("-", " @-@ "), ("'s", " 's"), ("(", "( "), (")", " )")):
            text = text.replace(old, new)
        pages.append(f' = Title {i} = \n \n {text} \n \n = = Part = = \n \n " quoted " 1 @,@ 000 N \n')
    sentences = [" ".join(vocab[12000 + i * 9 : 12000 + i * 9 + 8]).lower() for i in range(40)]
    files = {
        "lambada": [{"text": r["text"]} for r in lambada],
        "hellaswag": hellaswag,
        "wikitext": [{"page": p} for p in pages],
        "paloma_wikitext_103": [{"text": p} for p in pages],
        "paloma_ptb": [{"text": "\n".join(sentences)}],
    }
    paths = {}
    for name, rows in files.items():
        paths[name] = str(root / f"{name}.jsonl")
        (root / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    paths["ptb.test.txt"] = str(root / "ptb.test.txt")  # Mikolov's layout: a space before and after each sentence
    (root / "ptb.test.txt").write_text("".join(f" {s} \n" for s in sentences))
    return paths


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """lm-evaluation-harness's results (with its per-sample log) and ours, on the same model and files."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    root = tmp_path_factory.mktemp("crosscheck")
    paths = write_data(root)
    tokenizer = bos_tokenizer()
    model = forced_gpt2(tokenizer)

    manager = TaskManager()

    def local(task, split, path):
        """The registered task's own config (its YAML, includes and !function resolved), reading ``path`` for the
        split it evaluates (and for the others it names, which zero-shot tasks only load)."""
        config = load_yaml(manager.task_index[task].yaml_path, resolve_func=True)
        assert config["task"] == task and split == (config.get("test_split") or config.get("validation_split"))
        splits = {config[k] for k in ("training_split", "validation_split", "test_split") if config.get(k)}
        kwargs = {"data_files": {name: path for name in splits}, "cache_dir": str(root / "datasets_cache")}
        return {**config, "dataset_path": "json", "dataset_name": None, "dataset_kwargs": kwargs}

    tasks = [
        local("lambada_openai", "test", paths["lambada"]),
        local("hellaswag", "validation", paths["hellaswag"]),
        local("wikitext", "test", paths["wikitext"]),
        local("paloma_ptb", "test", paths["paloma_ptb"]),
        local("paloma_wikitext_103", "test", paths["paloma_wikitext_103"]),
    ]
    evaluated = simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=bos_tokenizer(), batch_size=4),
        tasks=tasks,
        task_manager=manager,
        bootstrap_iters=0,
        log_samples=True,
    )
    ours = run_tasks(
        model,
        tokenizer,
        ["lambada_openai", "hellaswag", "wikitext2"],
        data={"lambada_openai": paths["lambada"], "hellaswag": paths["hellaswag"], "wikitext2": paths["wikitext"]},
        batch_size=3,
        progress=False,
    )
    ours |= run_tasks(
        model,
        tokenizer,
        ["ptb", "wikitext103"],
        data={"ptb": paths["ptb.test.txt"], "wikitext103": paths["wikitext"]},
        batch_size=5,
        progress=False,
        options=EvalOptions(detokenize=False),  # Paloma scores the text as it is
    )
    return evaluated["results"], evaluated["samples"], ours, model, tokenizer, paths


def test_lm_eval_runs_its_registered_tasks(both):
    theirs, samples, *_ = both
    assert set(theirs) == {"lambada_openai", "hellaswag", "wikitext", "paloma_ptb", "paloma_wikitext_103"}
    assert lm_eval.__version__ == "0.4.13"
    assert len(samples["lambada_openai"]) == 31 and len(samples["hellaswag"]) == 16


def test_lambada_matches(both):
    theirs, _, ours, model, tokenizer, paths = both
    assert 0 < ours["lambada_openai"]["acc"] < 1
    assert ours["lambada_openai"]["acc"] == theirs["lambada_openai"]["acc,none"]
    assert ours["lambada_openai"]["ppl"] == pytest.approx(theirs["lambada_openai"]["perplexity,none"], rel=REL)


def test_lambada_data_tell_a_whole_word_from_its_last_token(both):
    """Some last words are greedy in their last token but not as a whole: a last-token check would count them."""
    *_, model, tokenizer, paths = both
    last_only = whole = 0
    for line in open(paths["lambada"], encoding="utf-8"):
        text = json.loads(line)["text"]
        context = tokenizer(text.rpartition(" ")[0])["input_ids"] if " " in text else [tokenizer.bos_token_id]
        target = tokenizer(text)["input_ids"][len(context) :] if " " in text else tokenizer.encode(" " + text)[1:]
        inputs = (context + target)[-(N_POSITIONS + 1) : -1]  # left-truncated to the model's context
        with torch.no_grad():
            greedy = model(torch.tensor([inputs])).logits[0, -len(target) :].argmax(-1).tolist()
        whole += greedy == target
        last_only += greedy[-1] == target[-1] and greedy != target
    assert whole >= 2 and last_only >= 2


def test_hellaswag_matches(both):
    theirs, _, ours, *_ = both
    assert ours["hellaswag"]["acc"] == theirs["hellaswag"]["acc,none"]
    assert ours["hellaswag"]["acc_norm"] == theirs["hellaswag"]["acc_norm,none"]


def test_hellaswag_data_tell_characters_from_tokens(both):
    """acc_norm divides by characters; dividing by tokens would pick other endings, and score differently."""
    _, samples, _, _, tokenizer, _ = both
    by_chars = by_tokens = 0
    for sample in samples["hellaswag"]:
        _, endings, label = hellaswag_item(sample["doc"])
        lls = [float(resp[0][0]) for resp in sample["resps"]]
        chars = [ll / len(e) for ll, e in zip(lls, endings, strict=True)]
        tokens = [
            ll / len(tokenizer.encode(" " + e, add_special_tokens=False)) for ll, e in zip(lls, endings, strict=True)
        ]
        by_chars += chars.index(max(chars)) == label
        by_tokens += tokens.index(max(tokens)) == label
    assert by_chars != by_tokens


@pytest.mark.parametrize("metric", ["word_perplexity", "byte_perplexity", "bits_per_byte"])
def test_wikitext_matches(metric, both):
    theirs, _, ours, *_ = both
    assert ours["wikitext2"]["tokens"] > 3 * N_POSITIONS  # several windows per page
    assert ours["wikitext2"][metric] == pytest.approx(theirs["wikitext"][f"{metric},none"], rel=REL)


@pytest.mark.parametrize("metric", ["byte_perplexity", "bits_per_byte", "word_perplexity"])
def test_paloma_wikitext_103_matches_wikitext103_as_tokenized(metric, both):
    theirs, _, ours, *_ = both
    assert ours["wikitext103"][metric] == pytest.approx(theirs["paloma_wikitext_103"][f"{metric},none"], rel=REL)


def test_paloma_ptb_matches_ptb_as_one_stream(both):
    """Paloma's PTB document is our stream; its words are re.split(r"\\s+"), ours the benchmark's words + one end of
    sentence per sentence, so the word perplexities agree after converting the count."""
    theirs, _, ours, *_, paths = both
    paloma, ptb = theirs["paloma_ptb"], ours["ptb"]
    assert ptb["bits_per_byte"] == pytest.approx(paloma["bits_per_byte,none"], rel=REL)
    assert ptb["byte_perplexity"] == pytest.approx(paloma["byte_perplexity,none"], rel=REL)
    stream = json.loads(open(paths["paloma_ptb"], encoding="utf-8").readline())["text"]
    their_words, our_words = len(re.split(r"\s+", stream)), len(stream.split()) + stream.count("\n") + 1
    nll = math.log(paloma["word_perplexity,none"]) * their_words
    assert ptb["word_perplexity"] == pytest.approx(math.exp(nll / our_words), rel=REL)
