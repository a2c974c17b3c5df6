"""Benchmark tasks against independent computations through stock transformers, on tiny models and hand-made data.

The data files are written in the formats the Hub serves (jsonl for LAMBADA, parquet line rows for WikiText, parquet
and jsonl for HellaSwag and CBT), so the loaders are the ones that run on real data.
"""

from __future__ import annotations

import json
import math
import re
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2.errors import DataError
from hf_gpt2.evaluation import EvalOptions, LoglikelihoodRequest, rolling_windows, run_tasks
from hf_gpt2.evaluation.cbt import parse_cbt_text
from hf_gpt2.evaluation.metrics import MultipleChoiceMetric
from hf_gpt2.evaluation.sentence_level import lm1b_detokenize, ptb_detokenize
from hf_gpt2.evaluation.wikitext import wikitext_detokenize
from hf_gpt2.tokenization import GPT2_EOS_ID

LAMBADA_TEXTS = [
    "The cat sat on the mat",
    "She opened the door and let the dog into the warm kitchen, where the fire was still burning bright and the "
    "kettle sang on the stove while the old man read his paper by the window, waiting for his daughter to come "
    "home from the long journey across the sea so that they could finally sit down together for dinner with the "
    "whole family gathered around the table",
    "He took the red apple",
    "Everyone agreed that the meeting had gone well, though nobody could remember who had proposed the plan",
    "The children ran to the tree",
    "At the end of the day the tired farmer walked slowly back to his house",
]


def bigram_model(tokenizer, pairs: dict[tuple[str, str], float], n_embd: int = 256) -> GPT2LMHeadModel:
    """A stock GPT-2 whose next-token logits depend only on the current token, with chosen transitions forced.

    The blocks and position embeddings are zeroed (each block is the identity through its residual), so the logits
    at a position are ``lm_head(ln_f(wte[token]))``. For each pair ``(a, b): boost``, ``b``'s logit after ``a`` is
    raised by ``boost``; other logits stay near zero, so an unforced token costs about ln(50257) ≈ 10.8 nats.
    """
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=50257, n_positions=256, n_embd=n_embd, n_layer=1, n_head=2, tie_word_embeddings=False,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        model.transformer.wpe.weight.zero_()
        model.transformer.wte.weight.normal_(0.0, 1.0)
        features = model.transformer.ln_f(model.transformer.wte.weight)  # (V, C): what lm_head sees after a token
        model.lm_head.weight.normal_(0.0, 0.01)
        for (prev, nxt), boost in pairs.items():
            [a], [b] = tokenizer.encode(prev), tokenizer.encode(nxt)
            model.lm_head.weight[b] += boost * features[a] / features[a].pow(2).sum()
    return model


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def lm_eval_style_lambada(model, tokenizer, texts, max_length):
    """lm-evaluation-harness's loglikelihood for LAMBADA, one unpadded sequence at a time through stock GPT-2."""
    lls, greedy = [], []
    for text in texts:
        context, last = text.rsplit(" ", 1)
        whole = tokenizer(context + " " + last)["input_ids"]
        context_ids = tokenizer(context)["input_ids"]
        continuation = whole[len(context_ids) :]
        tokens = (context_ids + continuation)[-(max_length + 1) :]
        with torch.no_grad():
            logits = model(torch.tensor([tokens[:-1]])).logits[0, -len(continuation) :]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        target = torch.tensor(continuation)
        lls.append(logprobs.gather(1, target[:, None]).sum().item())
        greedy.append(bool((logits.argmax(-1) == target).all()))
    return math.exp(-sum(lls) / len(lls)), sum(greedy) / len(greedy)


@pytest.mark.parametrize("which", ["random", "bigram"])
def test_lambada_matches_lm_eval_style_computation(which, tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    if which == "random":  # context 64: the long passage is left-truncated
        model, max_length = tiny_stock_gpt2, 64
    else:  # some last words forced, so accuracy is neither 0 nor 1
        forced = {(" the", " mat"): 30.0, (" red", " apple"): 30.0, (" the", " tree"): 5.0}
        model, max_length = bigram_model(gpt2_tokenizer, forced), 256
    path = write_jsonl(tmp_path / "lambada_test.jsonl", [{"text": t} for t in LAMBADA_TEXTS])
    results = run_tasks(model, gpt2_tokenizer, ["lambada_openai"], data={"lambada_openai": path}, batch_size=4)
    ppl, acc = lm_eval_style_lambada(model, gpt2_tokenizer, LAMBADA_TEXTS, max_length)
    assert results["lambada_openai"]["n"] == len(LAMBADA_TEXTS)
    assert results["lambada_openai"]["acc"] == acc
    assert results["lambada_openai"]["ppl"] == pytest.approx(ppl, rel=1e-3)
    if which == "bigram":
        assert acc == pytest.approx(2 / 6)  # "mat" and "apple"; "tree" is boosted too little to be the argmax


def test_lambada_paper_variant_scores_the_last_bpe_token(tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    path = write_jsonl(tmp_path / "lambada.jsonl", [{"text": t} for t in LAMBADA_TEXTS[:3]])
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["lambada_openai_paper"], data={"lambada_openai_paper": path})
    lls = []
    for text in LAMBADA_TEXTS[:3]:
        ids = gpt2_tokenizer(text)["input_ids"][-65:]
        with torch.no_grad():
            logits = tiny_stock_gpt2(torch.tensor([ids[:-1]])).logits[0, -1]
        lls.append(torch.log_softmax(logits.double(), -1)[ids[-1]].item())
    assert results["lambada_openai_paper"]["ppl"] == pytest.approx(math.exp(-sum(lls) / 3), rel=1e-4)


ARTICLE_1 = (
    " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . He had a guest @-@ "
    "starring role on the television series The Bill in 2000 . \n \n = = Career = = \n \n In 2006 , Boulter starred "
    "alongside Whishaw in the play Citizenship written by Mark Ravenhill . \n \n"
)
ARTICLE_2 = (
    " = Du Fu = \n \n Du Fu ( 712 – 770 ) was a prominent Chinese poet of the Tang dynasty . Along with Li Bai , he "
    "is frequently called the greatest of the Chinese poets . His greatest ambition was to serve his country as a "
    "successful civil servant , but he proved unable to make the necessary accommodations . \n"
)


def write_wikitext_parquet(path):
    """Salesforce/wikitext's layout: one row per line, newline kept, blank lines as ""."""
    lines = (ARTICLE_1 + ARTICLE_2).splitlines(keepends=True)
    pq.write_table(pa.table({"text": [line if line.strip() else "" for line in lines]}), path)
    return str(path)


def direct_rolling_log_likelihood(model, ids, context, stride):
    """Sum of log p(token) over ids[1:]: windows of `context` inputs, cross-entropy on the window's new tokens."""
    total, done = 0.0, 1
    while done < len(ids):
        end = min(len(ids), done + (context if done == 1 else stride))
        window = ids[max(0, end - 1 - context) : end]
        with torch.no_grad():
            logits = model(torch.tensor([window[:-1]])).logits[0]
        new = end - done
        total -= torch.nn.functional.cross_entropy(logits[-new:], torch.tensor(window[-new:]), reduction="sum").item()
        done = end
    return total


@pytest.mark.parametrize("context,stride", [(None, None), (16, 16), (16, 5)])
def test_wikitext_perplexity_equals_direct_rolling_computation(
    context, stride, tmp_path, gpt2_tokenizer, tiny_stock_gpt2
):
    path = write_wikitext_parquet(tmp_path / "test-00000-of-00001.parquet")
    options = EvalOptions(context=context, stride=stride)
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["wikitext2"], data={"wikitext2": path}, options=options)
    pages = [ARTICLE_1.removesuffix("\n"), ARTICLE_2]  # the document-level split joins lines with "\n"
    total_ll, total_tokens = 0.0, 0
    for page in pages:
        ids = [GPT2_EOS_ID] + gpt2_tokenizer(wikitext_detokenize(page))["input_ids"]
        total_ll += direct_rolling_log_likelihood(tiny_stock_gpt2, ids, context or 64, stride or context or 64)
        total_tokens += len(ids) - 1
    words = sum(len(re.split(r"\s+", page)) for page in pages)  # lm-evaluation-harness's count
    n_bytes = sum(len(page.encode()) for page in pages)
    got = results["wikitext2"]
    assert got["n"] == 2 and got["tokens"] == total_tokens
    assert got["token_perplexity"] == pytest.approx(math.exp(-total_ll / total_tokens), rel=1e-5)
    assert got["word_perplexity"] == pytest.approx(math.exp(-total_ll / words), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(-total_ll / n_bytes / math.log(2), rel=1e-5)


def test_wikitext_default_source_downloads_only_the_test_parquet(monkeypatch, gpt2_tokenizer, tiny_stock_gpt2):
    """The Hub path, with `datasets.load_dataset` answered locally: the test split's parquet files, as line rows."""
    import datasets

    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, kwargs))
        rows = [{"text": line if line.strip() else ""} for line in ARTICLE_2.splitlines(keepends=True)]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["wikitext103"], progress=False)
    assert calls == [
        (
            "parquet",
            {
                "data_files": {"test": "hf://datasets/Salesforce/wikitext/wikitext-103-raw-v1/test-*.parquet"},
                "split": "test",
            },
        )
    ]
    assert results["wikitext103"]["n"] == 1


def test_wikitext_detokenizer_undoes_the_tokenization():
    text = " = = Career = = \n He had a guest @-@ starring role ( in 2000 ) , earning $ 1 @,@ 000 @.@ 50 . \n"
    assert wikitext_detokenize(text) == " == Career ==\nHe had a guest-starring role (in 2000), earning $ 1,000.50.\n"


def test_rolling_windows_predict_every_token_once_with_full_context():
    tokens = list(range(100, 123))  # 23 tokens
    windows = rolling_windows(tokens, context=8, stride=3, prefix_token=0)
    predicted = [t for w in windows for t in w.continuation]
    assert predicted == tokens
    assert windows[0] == LoglikelihoodRequest(context=[0], continuation=tokens[:8])
    assert all(len(w.context) + len(w.continuation) == 9 for w in windows[1:])  # 8 inputs + the last target


def test_val_loss_reads_token_shards(tmp_path, tiny_stock_gpt2, gpt2_tokenizer):
    rng = np.random.default_rng(0)
    shards = [rng.integers(0, 50257, size=n, dtype=np.uint16) for n in (70, 41)]
    for i, shard in enumerate(shards):
        shard.tofile(tmp_path / f"val_{i:06d}.bin")
    meta = {
        "splits": {"val": {"num_tokens": 111, "shards": ["val_000000.bin", "val_000001.bin"]}},
        "dtype": "uint16", "eos_id": GPT2_EOS_ID, "vocab_size": 50257, "tokenizer": "gpt2",
    }  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["val_loss"], data={"val_loss": str(tmp_path)})
    ids = np.concatenate(shards).tolist()
    expected = -direct_rolling_log_likelihood(tiny_stock_gpt2, ids, 64, 64) / 110
    assert results["val_loss"]["n"] == 110
    assert results["val_loss"]["loss"] == pytest.approx(expected, rel=1e-5)


def test_enwik8_bits_per_byte_from_a_zip(tmp_path, tiny_stock_gpt2, gpt2_tokenizer):
    raw = ("<page><title>Anarchism</title><text>Anarchism is a political philosophy.</text></page>\n" * 3).encode()
    with zipfile.ZipFile(tmp_path / "enwik8.zip", "w") as archive:
        archive.writestr("enwik8", raw)
    results = run_tasks(
        tiny_stock_gpt2, gpt2_tokenizer, ["enwik8"], data={"enwik8": str(tmp_path / "enwik8.zip")}, batch_size=2
    )
    ids = [GPT2_EOS_ID] + gpt2_tokenizer(raw.decode())["input_ids"]
    ll = direct_rolling_log_likelihood(tiny_stock_gpt2, ids, 64, 64)
    assert results["enwik8"]["bits_per_byte"] == pytest.approx(-ll / math.log(2) / len(raw), rel=1e-5)


CBT_TEXT = """1 Mary and Tom lived in a little house by the river .
2 Every morning Tom fed the ducks , and Mary went to the market .
3 `` It is a fine day , '' said Tom .

4 The ducks were hungry .
5 Mary bought bread .
21 XXXXX went home with the bread .\tMary\t\tTom|Mary|ducks|river|house
"""


def test_cbt_original_text_format_is_parsed():
    [item] = parse_cbt_text(CBT_TEXT.replace("\n\n", "\n"))
    assert item["answer"] == "Mary" and item["options"] == ["Tom", "Mary", "ducks", "river", "house"]
    assert len(item["sentences"]) == 5 and item["question"].startswith("XXXXX went home")


def test_cbt_scores_the_whole_filled_sentence(tmp_path, gpt2_tokenizer):
    """Tom is the likelier word after the context ("." → " Tom"), but only " Mary went" makes the rest of the
    sentence likely: the paper's scoring (whole filled sentence) picks Mary, a word-only scorer would pick Tom."""
    model = bigram_model(gpt2_tokenizer, {(" Mary", " went"): 30.0, (".", " Tom"): 5.0})
    item = parse_cbt_text(CBT_TEXT.replace("\n\n", "\n"))[0]
    path = tmp_path / "cbt_cn_validation.parquet"
    pq.write_table(pa.Table.from_pylist([item, {**item, "answer": "Tom", "question": "XXXXX ran off ."}]), path)
    results = run_tasks(model, gpt2_tokenizer, ["cbt_cn"], data={"cbt_cn": str(path)}, limit=1)
    assert results["cbt_cn"] == {"acc": 1.0, "n": 1.0}
    results = run_tasks(model, gpt2_tokenizer, ["cbt_cn"], data={"cbt_cn": str(path)})
    assert results["cbt_cn"]["acc"] == 1.0  # the second item has no forced sentence: the context's "." picks Tom


HELLASWAG_ROWS = [
    {  # every transition of the right ending is forced: both metrics pick it
        "activity_label": "Cooking", "ctx_a": "A man is in a kitchen.", "ctx_b": "he cuts the",
        "endings": ["car.", "onion with a knife.", "sky [title] loudly.", "dog"], "label": "1",
    },
    {  # the long right ending has two unforced tokens, the short wrong one only one: acc misses, acc_norm finds it
        "activity_label": "Cycling", "ctx_a": "A boy rides.", "ctx_b": "he fixes his",
        "endings": ["bike.", "red apple with a knife.", "tree", "ball"], "label": "1",
    },
]  # fmt: skip
HELLASWAG_FORCED = {
    (" the", " onion"): 30.0, (" onion", " with"): 30.0, (" with", " a"): 30.0, (" a", " knife"): 30.0,
    (" knife", "."): 30.0, (" bike", "."): 30.0, (" apple", " with"): 30.0,
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_hellaswag_picks_the_forced_ending_and_normalises_by_length(fmt, tmp_path, gpt2_tokenizer):
    model = bigram_model(gpt2_tokenizer, HELLASWAG_FORCED)
    if fmt == "parquet":  # the Hub's parquet export: label is a string
        path = tmp_path / "validation-00000.parquet"
        pq.write_table(pa.Table.from_pylist(HELLASWAG_ROWS), path)
    else:  # rowanz/hellaswag's hellaswag_val.jsonl: label is an int
        path = tmp_path / "hellaswag_val.jsonl"
        write_jsonl(path, [{**row, "label": int(row["label"])} for row in HELLASWAG_ROWS])
    results = run_tasks(model, gpt2_tokenizer, ["hellaswag"], data={"hellaswag": str(path)}, batch_size=3)
    assert results["hellaswag"] == {"acc": 0.5, "acc_norm": 1.0, "n": 2.0}


def test_acc_norm_divides_by_characters_not_tokens():
    metric = MultipleChoiceMetric()
    got = metric.compute(log_likelihoods=[[-4.0, -6.0]], choice_lengths=[[2, 12]], label=[1])
    assert got == {"acc": 0.0, "acc_norm": 1.0}


def test_accelerator_single_process_gives_the_same_numbers(tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    from accelerate import Accelerator

    path = write_jsonl(tmp_path / "lambada.jsonl", [{"text": t} for t in LAMBADA_TEXTS])
    plain = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, "lambada_openai", data={"lambada_openai": path}, batch_size=4)
    accelerated = run_tasks(
        tiny_stock_gpt2,
        gpt2_tokenizer,
        "lambada_openai",
        data={"lambada_openai": path},
        batch_size=4,
        accelerator=Accelerator(cpu=True),
    )
    assert accelerated == plain


PTB_LINES = [  # Mikolov's ptb.test.txt layout: a space before and after every sentence
    " no it was n't black monday \n",
    " the index fell N points to $ N billion \n",
    " <unk> said it 's a good deal \n",
]
LM1B_LINES = [  # the 1BW held-out files: one tokenized sentence per line, no surrounding spaces
    "It 's not a particularly unusual thing , \" he said .\n",
    "Shares rose 5 % to $ 30 ( a record ) .\n",
    "The line\u2028separator stays inside one sentence .\n",  # U+2028: a line break to str.splitlines, not to 1BW
    "They do n't know what they 'll find when they arrive , but the officials who run the program say that "
    "the results so far have been far better than anyone expected when it began , and that more towns will join "
    "next year , when the money from the state and the federal government finally arrives in the spring , along "
    "with the new rules .\n",  # longer than the tiny model's context of 64 tokens
]


def one_window_log_likelihood(model, ids):
    """Sum of log p(ids[i] | ids[:i]) for i ≥ 1, from one forward pass over ids[:-1]."""
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]])).logits[0]
    return torch.log_softmax(logits.double(), -1).gather(1, torch.tensor(ids[1:])[:, None]).sum().item()


def write_sentences(tmp_path, lines, fmt, field, name):
    """The corpus as its original text file, or as Hub-style rows (stripped sentences) in parquet or jsonl."""
    if fmt == "txt":
        path = tmp_path / name
        path.write_text("".join(lines), encoding="utf-8")
    elif fmt == "parquet":
        path = tmp_path / "test-00000.parquet"
        pq.write_table(pa.table({field: [line.strip() for line in lines]}), path)
    else:
        path = tmp_path / "test.jsonl"
        write_jsonl(path, [{field: line.strip()} for line in lines])
    return str(path)


@pytest.mark.parametrize("fmt,field", [("txt", None), ("parquet", "sentence"), ("jsonl", "text")])
@pytest.mark.parametrize("detokenize", [True, False])
def test_ptb_scores_the_split_as_one_stream(fmt, field, detokenize, tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    path = write_sentences(tmp_path, PTB_LINES, fmt, field, "ptb.test.txt")
    options = EvalOptions(detokenize=detokenize)
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["ptb"], data={"ptb": path}, options=options)
    stream = (
        "no it was n't black monday\nthe index fell N points to $ N billion\n<unk> said it 's a good deal"
        if not detokenize
        else "no it wasn't black monday\nthe index fell 1 points to $1 billion\n<unk> said it's a good deal"
    )
    ids = [GPT2_EOS_ID] + gpt2_tokenizer(stream)["input_ids"]
    assert len(ids) <= 65  # one window of the tiny model's 64 positions
    ll = one_window_log_likelihood(tiny_stock_gpt2, ids)
    words = 6 + 9 + 7 + 3  # whitespace words of the tokenized sentences + one end of sentence each
    got = results["ptb"]
    assert got["n"] == 3 and got["tokens"] == len(ids) - 1
    assert got["word_perplexity"] == pytest.approx(math.exp(-ll / words), rel=1e-5)
    assert got["token_perplexity"] == pytest.approx(math.exp(-ll / (len(ids) - 1)), rel=1e-5)
    n_bytes = len("\n".join(line.strip() for line in PTB_LINES).encode())
    assert got["bits_per_byte"] == pytest.approx(-ll / n_bytes / math.log(2), rel=1e-5)


def test_ptb_stream_rolls_across_sentences(tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    path = write_sentences(tmp_path, PTB_LINES * 3, "txt", None, "ptb.test.txt")
    options = EvalOptions(context=16, stride=5)
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["ptb"], data={"ptb": path}, options=options, limit=7)
    stream = "\n".join(line.strip() for line in (PTB_LINES * 3)[:7])
    ids = [GPT2_EOS_ID] + gpt2_tokenizer(ptb_detokenize(stream))["input_ids"]
    ll = direct_rolling_log_likelihood(tiny_stock_gpt2, ids, 16, 5)
    words = sum(len(line.split()) + 1 for line in (PTB_LINES * 3)[:7])
    assert results["ptb"]["n"] == 7 and results["ptb"]["stride"] == 5
    assert results["ptb"]["word_perplexity"] == pytest.approx(math.exp(-ll / words), rel=1e-5)


@pytest.mark.parametrize("fmt", ["txt", "parquet", "jsonl"])
def test_lm1b_scores_each_sentence_on_its_own(fmt, tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    path = write_sentences(tmp_path, LM1B_LINES, fmt, "text", "news.en.heldout-00000-of-00050")
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["lm1b"], data={"lm1b": path}, batch_size=3)
    total_ll, total_tokens = 0.0, 0
    for line in LM1B_LINES:
        ids = [GPT2_EOS_ID] + gpt2_tokenizer(lm1b_detokenize(line.strip()))["input_ids"]
        if len(ids) <= 65:
            total_ll += one_window_log_likelihood(tiny_stock_gpt2, ids)
        else:  # the last sentence is longer than the context: it rolls
            total_ll += direct_rolling_log_likelihood(tiny_stock_gpt2, ids, 64, 64)
        total_tokens += len(ids) - 1
    assert len(gpt2_tokenizer(LM1B_LINES[-1])["input_ids"]) > 64  # the last sentence rolls
    words = sum(len(line.split()) + 1 for line in LM1B_LINES)
    got = results["lm1b"]
    assert got["n"] == 4 and got["tokens"] == total_tokens
    assert got["word_perplexity"] == pytest.approx(math.exp(-total_ll / words), rel=1e-5)
    assert got["token_perplexity"] == pytest.approx(math.exp(-total_ll / total_tokens), rel=1e-5)


def test_lm1b_limit_takes_the_first_sentences(tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    path = write_sentences(tmp_path, LM1B_LINES, "txt", None, "news.en.heldout-00000-of-00050")
    options = EvalOptions(detokenize=False)
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, ["lm1b"], data={"lm1b": path}, limit=2, options=options)
    ll = sum(
        one_window_log_likelihood(tiny_stock_gpt2, [GPT2_EOS_ID] + gpt2_tokenizer(line.strip())["input_ids"])
        for line in LM1B_LINES[:2]
    )
    words = sum(len(line.split()) + 1 for line in LM1B_LINES[:2])
    assert results["lm1b"]["n"] == 2
    assert results["lm1b"]["word_perplexity"] == pytest.approx(math.exp(-ll / words), rel=1e-5)


def test_ptb_detokenizer_applies_megatrons_rules_in_order():
    text = "no it was n't black monday \n he said ' we 're paid $ N or # N each ' \n N dows fell N N points \n N"
    expected = "no it wasn't black monday\nhe said' we're paid $1 or #1 each'\n1 dows fell 1 1 points\n1"
    assert ptb_detokenize(text) == expected
    assert ptb_detokenize("<unk> Nasdaq N.") == "<unk> Nasdaq N."  # only the whole-token placeholder is a number


def test_lm1b_detokenizer_joins_punctuation_and_contractions():
    assert lm1b_detokenize("It 's not what they 'd DO N'T , \" he said .") == "It's not what they'd DON'T, \" he said."
    assert lm1b_detokenize("Shares rose 5 % to $ 30 ( a record ) : ok !") == "Shares rose 5% to $30 (a record): ok!"
    assert lm1b_detokenize("( AP ) -- U.S. stocks ... fell") == "(AP) -- U.S. stocks ... fell"
    assert lm1b_detokenize("rock 'n' roll , 'sup") == "rock 'n' roll, 'sup"  # only whole contraction tokens


@pytest.mark.parametrize(
    "task,rows,data_files",
    [
        (
            "ptb",
            [{"sentence": "no it was n't black monday"}, {"sentence": "the dow fell N points"}],
            "hf://datasets/ptb-text-only/ptb_text_only@refs%2Fconvert%2Fparquet/penn_treebank/test/0000.parquet",
        ),
        (
            "lm1b",
            [{"text": "It 's a test ."}, {"text": "Shares rose ."}],
            "hf://datasets/billion-word-benchmark/lm1b@refs%2Fconvert%2Fparquet/plain_text/test/*.parquet",
        ),
    ],
)
def test_sentence_tasks_default_source_downloads_only_the_test_parquet(
    task, rows, data_files, monkeypatch, gpt2_tokenizer, tiny_stock_gpt2
):
    import datasets

    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, kwargs))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    results = run_tasks(tiny_stock_gpt2, gpt2_tokenizer, [task], progress=False)
    assert calls == [("parquet", {"data_files": {"test": data_files}, "split": "test"})]
    assert results[task]["n"] == 2


@pytest.mark.parametrize("task", ["ptb", "lm1b"])
def test_sentence_tasks_explain_missing_empty_and_malformed_data(task, tmp_path, gpt2_tokenizer, tiny_stock_gpt2):
    def run(path):
        return run_tasks(tiny_stock_gpt2, gpt2_tokenizer, [task], data={task: str(path)}, progress=False)

    with pytest.raises(DataError, match=rf"{task}: data path '.*missing.txt' does not exist; give an existing file"):
        run(tmp_path / "missing.txt")
    for name, content in (("empty.txt", ""), ("blank.txt", " \n\n  \n"), ("empty.jsonl", "")):
        (tmp_path / name).write_text(content)
        with pytest.raises(DataError, match=rf"{task}: .*{name} holds no sentences; pass .* --data {task}=PATH"):
            run(tmp_path / name)
    write_jsonl(tmp_path / "rows.jsonl", [{"words": "a b c", "id": 1}])
    with pytest.raises(DataError, match=rf"{task}: rows need a .*'text' field .*; got \['id', 'words'\]"):
        run(tmp_path / "rows.jsonl")
