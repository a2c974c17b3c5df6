"""The scoring protocol, choice by choice: each default is lm-evaluation-harness's, each alternative a named switch.

Prefix token (BOS before EOS), special tokens of the tokenizer, the context length and where it is read from,
whitespace between context and continuation, and the data handling of CBT (split), enwik8/text8 (exact bytes, the
last 5 MB, overlapping windows) and LAMBADA (no stripping).
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_eval_tasks import direct_rolling_log_likelihood
from tokenizers.processors import TemplateProcessing
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt2.errors import DataError, HfGPT2Error
from hf_gpt2.evaluation import EvalOptions, LoglikelihoodScorer, describe_data, format_table, run_tasks
from hf_gpt2.evaluation.character_level import decode_split
from hf_gpt2.evaluation.scoring import model_context_length
from hf_gpt2.tokenization import GPT2_EOS_ID, load_gpt2_tokenizer


def stock_gpt2(vocab_size: int = 50257, n_positions: int = 64) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=32, n_layer=2, n_head=4)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def bos_tokenizer():
    """GPT-2's BPE with a BOS token of its own (id 50257) that the tokenizer adds in front of every text, as
    Llama-style tokenizers do."""
    tokenizer = load_gpt2_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<|startoftext|>"})
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|startoftext|> $A", special_tokens=[("<|startoftext|>", tokenizer.bos_token_id)]
    )
    assert tokenizer("Hello world")["input_ids"] == [50257, 15496, 995]
    return tokenizer


def test_the_prefix_token_is_bos_before_eos_and_can_be_named(bos_tokenizer, gpt2_tokenizer):
    model = stock_gpt2(vocab_size=50258)
    assert LoglikelihoodScorer(model, bos_tokenizer).prefix_token_id == 50257  # BOS, as lm-eval's HFLM
    assert LoglikelihoodScorer(model, gpt2_tokenizer).prefix_token_id == GPT2_EOS_ID  # GPT-2: BOS = EOS
    assert LoglikelihoodScorer(model, bos_tokenizer, prefix_token_id=7).prefix_token_id == 7
    assert LoglikelihoodScorer(model, bos_tokenizer).encode_pair("", " hello")[0] == [50257]


def test_documents_get_the_tokenizers_special_tokens_unless_switched_off(bos_tokenizer):
    model = stock_gpt2(vocab_size=50258)
    default = LoglikelihoodScorer(model, bos_tokenizer)
    assert default.encode_document("Hello world") == [50257, 15496, 995]  # lm-eval's tok_encode: the tokenizer's way
    assert default.encode_document("<|startoftext|>Hello world") == [50257, 15496, 995]  # no second BOS
    assert default.encode("Hello world") == [15496, 995]  # a continuation never gets them
    assert LoglikelihoodScorer(model, bos_tokenizer, add_special_tokens=False).encode_document("Hello") == [15496]
    context, continuation = default.encode_pair("Hello", " world")
    assert (context, continuation) == ([50257, 15496], [995])


def test_a_rolling_document_starts_with_the_prefix_token(tmp_path, bos_tokenizer):
    """The rolling windows of lm-eval: [prefix] + the document's own tokens (here with the tokenizer's BOS)."""
    model = stock_gpt2(vocab_size=50258)
    page = " = Title = \n \n Some text here . \n"
    (tmp_path / "wiki.jsonl").write_text(json.dumps({"page": page}) + "\n")
    options = EvalOptions(detokenize=False)
    data = {"wikitext2": str(tmp_path / "wiki.jsonl")}
    got = run_tasks(model, bos_tokenizer, ["wikitext2"], data=data, options=options)
    ids = [50257, *bos_tokenizer(page)["input_ids"]]  # prefix BOS, then the tokenizer's own BOS and the text
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]])).logits[0]
    ll = torch.log_softmax(logits.double(), -1).gather(1, torch.tensor(ids[1:])[:, None]).sum().item()
    assert got["wikitext2"]["tokens"] == len(ids) - 1
    assert got["wikitext2"]["token_perplexity"] == pytest.approx(math.exp(-ll / (len(ids) - 1)), rel=1e-6)


def test_trailing_whitespace_of_any_kind_moves_to_the_continuation(gpt2_tokenizer):
    scorer = LoglikelihoodScorer(stock_gpt2(), gpt2_tokenizer)
    for context, continuation in (("Question: why?\n", "Because"), ("a b ", "c"), ("x\t \n", " y")):
        stripped = context.rstrip()
        expected_context = gpt2_tokenizer(stripped)["input_ids"]
        whole = gpt2_tokenizer(context + continuation)["input_ids"]
        assert scorer.encode_pair(context, continuation) == (expected_context, whole[len(expected_context) :])
    assert scorer.encode_pair(" \n", "x") == ([GPT2_EOS_ID], gpt2_tokenizer(" \nx")["input_ids"])


def test_the_context_length_is_read_as_lm_eval_reads_it(gpt2_tokenizer):
    model = stock_gpt2(n_positions=64)
    gpt2_tokenizer_short = load_gpt2_tokenizer()
    gpt2_tokenizer_short.model_max_length = 16
    assert model_context_length(model, gpt2_tokenizer_short) == 64  # the config first, not the smaller tokenizer limit
    assert LoglikelihoodScorer(model, gpt2_tokenizer, max_length=32).max_length == 32  # --max-length

    class NoPositions:
        config = type("Config", (), {"seq_length": 99})()

    assert model_context_length(NoPositions(), gpt2_tokenizer_short) == 16  # then the tokenizer
    gpt2_tokenizer_short.model_max_length = int(1e30)  # transformers' "no limit"
    assert model_context_length(NoPositions(), gpt2_tokenizer_short) == 99  # then the other config fields


def test_bad_options_are_refused_with_their_names():
    with pytest.raises(HfGPT2Error, match="cbt_split must be one of validation, test, got 'train'"):
        EvalOptions(cbt_split="train")
    with pytest.raises(HfGPT2Error, match="test_bytes must be >= 0"):
        EvalOptions(test_bytes=-1)
    with pytest.raises(HfGPT2Error, match="stride must be >= 1"):
        EvalOptions(stride=0)


def test_lambada_texts_are_scored_as_given(tmp_path, gpt2_tokenizer):
    """No stripping (lm-eval's doc_to_text splits the raw text): a passage with a leading space keeps it."""
    text = " The cat sat on the mat"
    (tmp_path / "l.jsonl").write_text(json.dumps({"text": text}) + "\n")
    model = stock_gpt2()
    got = run_tasks(model, gpt2_tokenizer, ["lambada_openai"], data={"lambada_openai": str(tmp_path / "l.jsonl")})
    context = gpt2_tokenizer(" The cat sat on the")["input_ids"]
    target = gpt2_tokenizer(text)["input_ids"][len(context) :]
    with torch.no_grad():
        logits = model(torch.tensor([context + target[:-1]])).logits[0, -len(target) :]
    ll = torch.log_softmax(logits.double(), -1).gather(1, torch.tensor(target)[:, None]).sum().item()
    assert got["lambada_openai"]["ppl"] == pytest.approx(math.exp(-ll), rel=1e-6)


CBT_ITEM = {
    "sentences": ["Mary and Tom lived in a little house by the river ."],
    "question": "XXXXX went home .",
    "answer": "Mary",
    "options": ["Tom", "Mary"],
}


def test_cbt_defaults_to_the_validation_split_and_says_so(tmp_path, monkeypatch, gpt2_tokenizer):
    import datasets

    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append(kwargs["data_files"])
        return datasets.Dataset.from_list([CBT_ITEM])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    model = stock_gpt2()
    run_tasks(model, gpt2_tokenizer, ["cbt_cn"], progress=False)
    run_tasks(model, gpt2_tokenizer, ["cbt_ne"], progress=False, options=EvalOptions(cbt_split="test"))
    assert calls == [
        {"validation": "hf://datasets/cam-cst/cbt/CN/validation-*.parquet"},
        {"test": "hf://datasets/cam-cst/cbt/NE/test-*.parquet"},
    ]
    table = format_table({"cbt_cn": {"acc": 1.0, "n": 1.0}}, sources=describe_data(["cbt_cn"]))
    assert table.splitlines()[-1].endswith("cam-cst/cbt (CN), split validation")
    assert describe_data(["cbt_cn"], options=EvalOptions(cbt_split="test")) == {
        "cbt_cn": "cam-cst/cbt (CN), split test"
    }


def test_cbt_folders_give_the_asked_split_and_a_file_of_another_split_is_refused(tmp_path, gpt2_tokenizer):
    hub = tmp_path / "CN"  # the Hub's layout: CN/<split>-00000-of-00001.parquet
    hub.mkdir()
    for split, answer in (("validation", "Mary"), ("test", "Tom"), ("train", "Tom")):
        pq.write_table(pa.Table.from_pylist([{**CBT_ITEM, "answer": answer}]), hub / f"{split}-00000-of-00001.parquet")
    original = tmp_path / "CBTest"  # CBT's own folder: every subset and split side by side
    original.mkdir()
    for subset in ("CN", "NE"):
        for split, n in (("valid_2000ex", 2), ("test_2500ex", 3)):
            block = "1 Mary and Tom lived by the river .\n21 XXXXX went home .\tMary\t\tTom|Mary\n\n"
            (original / f"cbtest_{subset}_{split}.txt").write_text(block * n)
    model = stock_gpt2()

    def items(task, path, split):
        from hf_gpt2.evaluation.registry import TASKS

        return TASKS[task].load_items(str(path), split)

    assert [i["answer"] for i in items("cbt_cn", hub, "validation")] == ["Mary"]
    assert [i["answer"] for i in items("cbt_cn", hub, "test")] == ["Tom"]
    assert len(items("cbt_ne", original, "validation")) == 2 and len(items("cbt_ne", original, "test")) == 3
    with pytest.raises(DataError, match="test-00000-of-00001.parquet holds the test split but the validation split"):
        run_tasks(model, gpt2_tokenizer, ["cbt_cn"], data={"cbt_cn": str(hub / "test-00000-of-00001.parquet")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no validation file"):
        run_tasks(model, gpt2_tokenizer, ["cbt_cn"], data={"cbt_cn": str(tmp_path / "empty")})


def direct_bits(model, ids, context, stride):
    """-log2 p of ids[1:] with rolling windows of `context` inputs predicting `stride` new tokens after the first."""
    return -direct_rolling_log_likelihood(model, ids, context, stride) / math.log(2)


def test_enwik8_scores_the_last_bytes_exactly_and_skips_a_character_cut_by_the_split(tmp_path, gpt2_tokenizer):
    text = "<page><title>Zürich</title><text>Zürich is the largest city in Switzerland — über 400000 people.</text>"
    raw = text.encode("utf-8")
    cut = raw.index("ü".encode()) + 1  # the split starts inside the two bytes of "ü"
    (tmp_path / "enwik8").write_bytes(raw)
    model = stock_gpt2(n_positions=16)
    options = EvalOptions(test_bytes=len(raw) - cut)
    got = run_tasks(model, gpt2_tokenizer, ["enwik8"], data={"enwik8": str(tmp_path / "enwik8")}, options=options)
    scored = raw[cut + 1 :].decode("utf-8")  # the continuation byte of "ü" is not scored
    ids = [GPT2_EOS_ID, *gpt2_tokenizer(scored)["input_ids"]]
    assert len(ids) > 16  # several windows
    assert got["enwik8"]["n"] == len(raw) - cut - 1
    assert got["enwik8"]["stride"] == 8  # windows overlap by half by default
    n_bytes = len(raw) - cut - 1
    assert got["enwik8"]["bits_per_byte"] == pytest.approx(direct_bits(model, ids, 16, 8) / n_bytes, rel=1e-6)
    disjoint = run_tasks(
        model,
        gpt2_tokenizer,
        ["enwik8"],
        data={"enwik8": str(tmp_path / "enwik8")},
        options=EvalOptions(test_bytes=len(raw) - cut, stride=16),
    )["enwik8"]
    assert disjoint["bits_per_byte"] == pytest.approx(direct_bits(model, ids, 16, 16) / n_bytes, rel=1e-6)


def test_the_test_split_is_the_last_5_mb_of_any_file(tmp_path, gpt2_tokenizer):
    assert EvalOptions().test_bytes == 5_000_000
    line = "anarchism originated as a term of abuse first used against early working class radicals "
    (tmp_path / "text8").write_text(line * (5_000_000 // len(line) + 2000))  # a little over 5 MB, not 100 MB
    model = stock_gpt2(n_positions=16)
    got = run_tasks(model, gpt2_tokenizer, ["text8"], data={"text8": str(tmp_path / "text8")}, limit=1)["text8"]
    assert got["tokens"] == 16  # --limit 1: one window of the split's start
    tail = (tmp_path / "text8").read_bytes()[-5_000_000:].decode()
    ids = gpt2_tokenizer(tail[:200])["input_ids"][:16]
    assert gpt2_tokenizer.decode(ids).startswith(tail[:20])
    whole = run_tasks(
        model,
        gpt2_tokenizer,
        ["text8"],
        data={"text8": str(tmp_path / "text8")},
        limit=1,
        options=EvalOptions(test_bytes=0),
    )["text8"]
    assert whole["bits_per_char"] != got["bits_per_char"]  # the whole file starts elsewhere


def test_decode_split_keeps_whole_characters_and_names_bad_bytes():
    assert decode_split("enwik8", "aé€😀b".encode()[2:]) == ("€😀b", 1, 0)  # "é" began before the split
    assert decode_split("enwik8", "ab😀".encode()[:-1]) == ("ab", 0, 3)  # an incomplete last character
    with pytest.raises(DataError, match=r"enwik8: the bytes at offset 102 are not UTF-8"):
        decode_split("enwik8", b"ab\xff\xfecd", offset=100)


@pytest.mark.parametrize("kind", ["stock", "hf_gpt2"])
def test_rows_of_different_lengths_keep_only_their_continuation_logits(kind, gpt2_tokenizer):
    """A batch whose continuations sit far apart asks the model for those positions only (a logits_to_keep tensor),
    and scores every request as one unbatched forward pass would."""
    from hf_gpt2.convert import from_gpt2
    from hf_gpt2.evaluation import LoglikelihoodRequest

    model = stock_gpt2(n_positions=64) if kind == "stock" else from_gpt2(stock_gpt2(n_positions=64)).eval()
    requests = [
        LoglikelihoodRequest(context=list(range(100, 100 + n)), continuation=[7, 8, 9][: 1 + n % 3])
        for n in (60, 3, 31, 12, 45)
    ]
    seen = []
    forward = model.forward

    def recording_forward(*args, **kwargs):
        seen.append(kwargs.get("logits_to_keep"))
        return forward(*args, **kwargs)

    scorer = LoglikelihoodScorer(model, gpt2_tokenizer, batch_size=5, progress=False)
    model.forward = recording_forward
    results = scorer.loglikelihood(requests)
    assert isinstance(seen[0], torch.Tensor) and len(seen[0]) == sum(len(r.continuation) for r in requests)
    for request, result in zip(requests, results, strict=True):
        ids = [*request.context, *request.continuation]
        with torch.no_grad():
            logits = forward(input_ids=torch.tensor([ids[:-1]])).logits[0, -len(request.continuation) :]
        expected = torch.log_softmax(logits.double(), -1).gather(1, torch.tensor(request.continuation)[:, None]).sum()
        assert result.log_likelihood == pytest.approx(expected.item(), rel=1e-5)
        assert result.is_greedy == bool((logits.argmax(-1) == torch.tensor(request.continuation)).all())


def test_a_stock_gpt2_and_its_conversion_agree_to_float32_rounding_at_width_256(tmp_path, gpt2_tokenizer):
    """What the README promises: logits within 1e-5, the suite's numbers within 1e-6 relative (not bit for bit)."""
    from hf_gpt2.convert import from_gpt2

    torch.manual_seed(0)
    stock = GPT2LMHeadModel(GPT2Config(n_embd=256, n_layer=4, n_head=4, n_positions=128)).eval()
    converted = from_gpt2(stock).eval()
    ids = torch.tensor([gpt2_tokenizer(" ".join(["the cat sat on the mat"] * 30))["input_ids"][:128]])
    with torch.no_grad():
        assert (stock(ids).logits - converted(ids).logits).abs().max() < 1e-5
    passages = [f"passage {i} says that the cat sat on the mat number {i}" for i in range(12)]
    (tmp_path / "l.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in passages))
    data = {"lambada_openai": str(tmp_path / "l.jsonl")}
    a, b = (run_tasks(m, gpt2_tokenizer, ["lambada_openai"], data=data, progress=False) for m in (stock, converted))
    assert b["lambada_openai"] == pytest.approx(a["lambada_openai"], rel=1e-6)


def test_long_windows_are_scored_like_short_ones(tmp_path, gpt2_tokenizer):
    """Windows of 300 predicted tokens (scored on views of the logits) and of 40 (gathered) both equal a direct
    computation."""
    model = stock_gpt2(n_positions=320)
    page = " = Long = \n " + " ".join(f"word{i} and more , text" for i in range(120)) + " \n"
    (tmp_path / "w.jsonl").write_text(json.dumps({"page": page}) + "\n")
    ids = [GPT2_EOS_ID, *gpt2_tokenizer(page)["input_ids"]]
    assert len(ids) > 600
    data = {"wikitext2": str(tmp_path / "w.jsonl")}
    for context in (300, 40):
        options = EvalOptions(detokenize=False, context=context)
        got = run_tasks(model, gpt2_tokenizer, ["wikitext2"], data=data, options=options)
        expected = direct_rolling_log_likelihood(model, ids, context, context)
        assert got["wikitext2"]["token_perplexity"] == pytest.approx(math.exp(-expected / (len(ids) - 1)), rel=1e-6)
