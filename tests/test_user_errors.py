"""Bad input, one class at a time: generation past the context, bad data, the Hub, and command-line values.

Every case runs the real command (``hf_gpt2.cli.main``, in process; a few also as a subprocess) and asserts exit code
2, one line on stderr without a traceback that names the bad value, and that nothing that existed before changed
(each folder involved is hashed before and after).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import test_hub
import torch
import yaml
from test_hub import SECRET, WHOAMI
from test_training_e2e import tree_digest

from hf_gpt2 import cli, online
from hf_gpt2.errors import DataError, HubError, RecipeError

REPO = Path(__file__).resolve().parents[1]
local_hub = test_hub.local_hub
"""The Hub's HTTP endpoints on 127.0.0.1 (``tests/test_hub.py``), as a fixture of this module too."""
PROGRESS_BAR = re.compile(r"\[\d+:\d\d")
"""tqdm's elapsed-time field: the progress bars that share stderr with the error line."""


def error_line(capsys, code: int, *needles: str) -> str:
    """The one error line of a refused command; asserts exit 2, no traceback, and each of ``needles`` in the line."""
    err = capsys.readouterr().err
    lines = [line.rsplit("\r", 1)[-1] for line in err.splitlines()]
    lines = [line for line in lines if line.strip() and not PROGRESS_BAR.search(line)]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert re.match(r"hf-gpt2 [a-z ]+: error: ", lines[0]), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def release(tmp_path_factory, gpt2_tokenizer) -> Path:
    """A tiny random hf_gpt2 release with a 256-position context and GPT-2's BPE."""
    from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("release256")
    HfGPT2ForCausalLM(HfGPT2Config(vocab_size=50257, n_positions=256, n_embd=32, n_layer=2, n_head=4)).save_pretrained(
        folder
    )
    gpt2_tokenizer.save_pretrained(folder)
    return folder


def run_cli(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


# ----------------------------------------------------------------------------------------------- 3. the context


LONG_PROMPT = ("the quick brown fox jumps over the lazy dog " * 40).strip()  # 360 tokens


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (["--max-new-tokens", "300"], ["--max-new-tokens=300", "301 positions", "context of 256", "at most 255"]),
        (["--prompt", LONG_PROMPT, "--max-new-tokens", "10"], ["prompt is 360 tokens", "at most 246 tokens"]),
        (["--prompt", "Hi", "--max-new-tokens", "256"], ["--max-new-tokens=256", "at most 255"]),
        (["--chat", "--max-new-tokens", "256"], ["--max-new-tokens=256", "context of 256 positions"]),
    ],
    ids=["past-the-context", "prompt-longer-than-the-context", "no-room-for-the-prompt", "chat"],
)
def test_generation_past_the_context_is_refused_before_generating(release, capsys, options, needles):
    before = tree_digest(release)
    code = run_cli("generate", "--model", release, "--device", "cpu", *options)
    error_line(capsys, code, *needles)
    assert capsys.readouterr().out == ""  # not a token was generated
    assert tree_digest(release) == before


def test_a_chat_message_longer_than_the_context_is_refused(release, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{LONG_PROMPT}\n\n"))  # piped: the refusal ends the chat
    code = run_cli("generate", "--model", release, "--chat", "--max-new-tokens", "8", "--device", "cpu")
    error_line(capsys, code, "the prompt is", "which fills the model's context of 256 positions", "--max-new-tokens=8")
    assert capsys.readouterr().out == ""  # no "Assistant:" for a message that gets no answer


def test_generate_text_and_the_samples_refuse_the_same_way(release, gpt2_tokenizer):
    from transformers import AutoModelForCausalLM

    from hf_gpt2.generation import ContextOverflowError, GenerationSettingsError, generate_text
    from hf_gpt2.recipe import SampleConfig
    from hf_gpt2.release import generate_samples

    model = AutoModelForCausalLM.from_pretrained(release).eval()
    with pytest.raises(ContextOverflowError, match=r"max_new_tokens=300 = 301 positions exceeds .* at most 255"):
        generate_text(model, gpt2_tokenizer, "", max_new_tokens=300)
    with pytest.raises(ContextOverflowError, match="the prompt is 360 tokens"):
        generate_text(model, gpt2_tokenizer, LONG_PROMPT, max_new_tokens=1)
    for setting, value in (("top_k", -5), ("top_p", 5.0), ("temperature", -1.0), ("num_return_sequences", 0)):
        with pytest.raises(GenerationSettingsError, match=rf"{setting}={value!r} is not"):
            generate_text(model, gpt2_tokenizer, "Hi", **{setting: value})
    samples = SampleConfig(prompts=["Hello", LONG_PROMPT[:100]], max_new_tokens=240)
    with pytest.raises(ContextOverflowError, match=r"sample.prompts\[1\]: .*sample.max_new_tokens=240"):
        generate_samples(model, gpt2_tokenizer, samples)
    assert len(generate_text(model, gpt2_tokenizer, "Hi", max_new_tokens=255, temperature=0)[0]) > 0  # fits: 1 + 255


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder of 12 short text documents."""
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(12):
        (folder / f"{i:02d}.txt").write_text(f"Document {i}. " + "Some words to train on. " * 40, encoding="utf-8")
    return folder


def tiny_recipe(tmp_path: Path, corpus: Path, **sections) -> Path:
    raw = {
        "run": {"name": "tiny", "output_dir": str(tmp_path / "runs")},
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 64},
        "data": {"source": str(corpus), "block_size": 16, "cache_dir": str(tmp_path / "cache"), "num_proc": 1,
                 "val_fraction": 0.2},
        "train": {"max_steps": 1, "micro_batch_size": 1, "grad_accum_steps": 1},
        "sample": {"max_new_tokens": 8},
    }  # fmt: skip
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_samples_that_cannot_fit_are_refused_before_training(tmp_path, corpus, capsys):
    recipe = tiny_recipe(tmp_path, corpus)
    code = run_cli("train", recipe, "sample.max_new_tokens=64")  # the recipe knows: no room for any prompt
    error_line(capsys, code, "sample.max_new_tokens=64 leaves no room for a prompt in model.n_positions=64", "63")
    code = run_cli("train", recipe, "sample.max_new_tokens=60", f"sample.prompts=[{'word ' * 10}]")
    error_line(capsys, code, "sample.prompts[0]: the prompt (10 tokens) + sample.max_new_tokens=60", "at most 54")
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


# ----------------------------------------------------------------------------------------------- 4. bad data


BAD_FILES = {
    "latin1.txt": (
        "Une ligne.\nDeuxième ligne, café.\n".encode("latin-1"),
        "latin1.txt is not valid utf-8 text: byte 0xe8 (line 2, column 6)",
    ),
    "latin1.jsonl": (
        '{"text": "ok"}\n{"text": "café"}\n'.encode("latin-1"),
        "latin1.jsonl, line 2 is not valid utf-8 text: byte 0xe9 (column 14)",
    ),
    "number.jsonl": (
        b'{"text": "ok"}\n{"text": 5}\n',
        "number.jsonl, line 2 has a number (5) in data.text_field='text', not a string",
    ),
    "null.jsonl": (b'{"text": "ok"}\n{"text": null}\n', "null.jsonl, line 2 has null in data.text_field='text'"),
    "missing.jsonl": (
        b'{"text": "ok"}\n{"body": "x"}\n',
        "missing.jsonl, line 2 has no field data.text_field='text' (it has ['body'])",
    ),
    "malformed.jsonl": (b'{"text": "ok"}\n{"text": "cut\n', "malformed.jsonl, line 2 is not valid JSON"),
    "array.json": (b'[{"text": "a"}, {"text": [1]}]', "array.json, row 2 has a list ([1])"),
    "binary.txt": (
        b"\x89PNG\r\n\x1a\n\x00\x00\rIHDR" + bytes(range(256)),
        "binary.txt holds a NUL byte (line 3, column 1), so it is binary",
    ),
    "damaged.parquet": (b"PAR1 not parquet", "damaged.parquet is not a readable parquet file (ArrowInvalid"),
}
"""A file of each kind of bad data, with what the error says about it."""


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_data_names_the_file_the_line_and_the_fix(tmp_path, corpus, capsys, name):
    content, problem = BAD_FILES[name]
    data = tmp_path / "data"
    data.mkdir()
    (data / name).write_bytes(content)
    recipe = tiny_recipe(tmp_path, data / name)
    before = tree_digest(data, tmp_path / "cache")
    line = error_line(capsys, run_cli("prepare", recipe), problem, "data.bad_documents=skip")
    if "utf-8" in problem:
        assert "iconv" in line and "data.encoding" in line
    assert tree_digest(data, tmp_path / "cache") == before
    assert not list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True  # no staging left


def test_skipping_bad_documents_logs_and_counts_them(tmp_path, corpus, caplog):
    from hf_gpt2.data.prepare import prepare_token_shards
    from hf_gpt2.recipe import load_recipe

    data = tmp_path / "data"
    data.mkdir()
    for name, (content, _) in BAD_FILES.items():
        (data / name).write_bytes(content)
    for i in range(10):
        (data / f"good{i}.txt").write_text("good text " * 30)
    recipe = load_recipe(tiny_recipe(tmp_path, data), ["data.bad_documents=skip", "data.block_size=8"])
    with caplog.at_level(logging.WARNING, logger="hf_gpt2.data.sources"):
        prepared = prepare_token_shards(recipe)
    assert "left out 9 unreadable document(s)" in caplog.text  # 9 bad files, one bad document each
    assert caplog.text.count("data.bad_documents=skip: leaving out") == 9
    # the readable rows of the bad files stay: 6 JSON files with one good row each, and the 10 good files
    assert sum(s["num_documents"] for s in prepared.meta["splits"].values()) == 6 + 10
    assert prepared.meta["source"]["bad_documents"] == "skip"  # in the fingerprint: not the default cache


def test_an_encoding_other_than_utf8_is_read_when_named(tmp_path):
    from hf_gpt2.data.sources import iter_documents, resolve_source
    from hf_gpt2.recipe import load_recipe

    (tmp_path / "fr.txt").write_bytes("Deuxième ligne, café.".encode("latin-1"))
    (tmp_path / "bom.txt").write_bytes("\ufeffwith a byte-order mark".encode())
    recipe = load_recipe(tiny_recipe(tmp_path, tmp_path / "fr.txt"), ["data.encoding=latin-1"])
    assert list(iter_documents(resolve_source(recipe.data))) == ["Deuxième ligne, café."]
    recipe = load_recipe(tiny_recipe(tmp_path, tmp_path / "bom.txt"))
    assert list(iter_documents(resolve_source(recipe.data))) == ["with a byte-order mark"]
    with pytest.raises(RecipeError, match="data.encoding='klingon' is not a text encoding"):
        load_recipe(tiny_recipe(tmp_path, tmp_path / "fr.txt"), ["data.encoding=klingon"])


def test_a_hub_row_without_text_names_the_row_in_prepare_and_streaming(tmp_path):
    from hf_gpt2.data.prepare import prepare_token_shards
    from hf_gpt2.data.streaming import StreamingTokenLoader
    from hf_gpt2.recipe import load_recipe

    pq.write_table(pa.table({"text": ["fine text " * 20, None, "more " * 20]}), tmp_path / "train.parquet")
    overrides = [f"data.hub_data_files=[{tmp_path / 'train.parquet'}]"]
    recipe = load_recipe(tiny_recipe(tmp_path, "hub:local/rows"), overrides)
    with pytest.raises(DataError, match=r"hub:local/rows \(train\), row 2 has null in data.text_field='text'"):
        prepare_token_shards(recipe)
    streaming = load_recipe(tiny_recipe(tmp_path, "hub:local/rows"), [*overrides, "data.streaming=true"])
    with pytest.raises(DataError, match=r"row 2 has null .*data.bad_documents=skip"):
        next(StreamingTokenLoader(streaming, "train", block_size=16, micro_batch_size=1))


def test_the_sft_and_benchmark_readers_name_the_bad_line(tmp_path, release, capsys):
    from transformers import AutoTokenizer

    from hf_gpt2.data.sft import prepare_sft_data
    from hf_gpt2.recipe import load_recipe

    rows = tmp_path / "sft.jsonl"
    rows.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "x"}\n')
    recipe = load_recipe(tiny_recipe(tmp_path, rows), ["data.format=sft"])
    with pytest.raises(DataError, match=r"sft.jsonl, line 2 is not valid utf-8 text: byte 0xe9"):
        prepare_sft_data(recipe, AutoTokenizer.from_pretrained(release))
    rows.write_text('{"prompt": "a", "completion": "b"}\n')
    with pytest.raises(DataError, match="gives 1 SFT example; it takes at least 2"):
        prepare_sft_data(recipe, AutoTokenizer.from_pretrained(release))
    lambada = tmp_path / "lambada.jsonl"
    lambada.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    before = tree_digest(tmp_path)
    code = run_cli("eval", "--model", release, "--tasks", "lambada_openai", "--data", f"lambada_openai={lambada}")
    error_line(capsys, code, "lambada_openai: ", "lambada.jsonl, line 2 is not valid utf-8 text: byte 0xe9")
    assert tree_digest(tmp_path) == before


def test_a_corpus_of_one_file_trains_on_its_head_and_validates_on_its_tail(tmp_path):
    from hf_gpt2.data.prepare import prepare_token_shards
    from hf_gpt2.data.streaming import StreamingTokenLoader
    from hf_gpt2.recipe import load_recipe
    from hf_gpt2.tokenization import load_gpt2_tiktoken

    lines = [f"Line {i}: to be, or not to be, that is the question." for i in range(400)]
    (tmp_path / "input.txt").write_text("\n".join(lines))
    recipe = load_recipe(tiny_recipe(tmp_path, tmp_path / "input.txt"), ["data.val_fraction=0.1"])
    prepared = prepare_token_shards(recipe)
    enc = load_gpt2_tiktoken()
    head, tail = "\n".join(lines[:360]) + "\n", "\n".join(lines[360:])  # the cut falls on a line break
    assert enc.decode(prepared.read_tokens("val").tolist()) == tail + "<|endoftext|>"
    assert enc.decode(prepared.read_tokens("train").tolist()) == head + "<|endoftext|>"
    streaming = load_recipe(
        tiny_recipe(tmp_path, tmp_path / "input.txt"), ["data.val_fraction=0.1", "data.streaming=true"]
    )
    val = next(StreamingTokenLoader(streaming, "val", block_size=16, micro_batch_size=1))
    np_val = prepared.read_tokens("val")[:17].astype("int64")
    assert val[0].tolist() == np_val.tolist()  # streaming cuts the same document the same way


# ----------------------------------------------------------------------------------------------- 5. the Hub


@pytest.fixture
def closed_port(monkeypatch) -> str:
    """HF_ENDPOINT pointing at a local port nothing listens on, with offline mode lifted: no network at all."""
    import huggingface_hub.constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return endpoint


@pytest.fixture
def generated_release(tmp_path, release) -> Path:
    """A copy of the release with the card hf_gpt2 writes (which ``hf-gpt2 push`` rewrites for the new repo)."""
    import shutil

    from hf_gpt2.hub import write_model_card

    folder = tmp_path / "final"
    shutil.copytree(release, folder)
    write_model_card(folder, repo_id="user/old-name")
    return folder


def test_push_without_a_token_changes_nothing(generated_release, monkeypatch, tmp_path, capsys):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    before = tree_digest(generated_release)
    code = run_cli("push", "--model", generated_release, "--repo-id", "user/new-name")
    error_line(capsys, code, "no Hugging Face token found", "hf auth login", "HF_TOKEN")
    assert tree_digest(generated_release) == before  # the card is not rewritten for a push that cannot happen


@pytest.mark.parametrize("failure", ["no network", "bad token", "read-only token", "forbidden namespace", "commit"])
def test_a_failed_push_changes_nothing_locally(
    generated_release, local_hub, closed_port, monkeypatch, capsys, failure
):
    needles = {
        "no network": ["could not reach the Hugging Face Hub at http://127.0.0.1", "HF_HUB_OFFLINE=1", "HF_ENDPOINT"],
        "bad token": ["the Hub does not accept your token"],
        "read-only token": ["your token is read-only"],
        "forbidden namespace": ["no write access to the namespace 'forbidden'"],
        "commit": ["nothing was committed", "the release is intact: hf-gpt2 push --model"],
    }[failure]
    repo = "forbidden/model" if failure == "forbidden namespace" else "user/new-name"
    if failure != "no network":
        monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    if failure == "bad token":
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    if failure == "read-only token":
        monkeypatch.setitem(WHOAMI, "auth", {"accessToken": {"role": "read"}})
    local_hub.fail_commits = int(failure == "commit")
    before = tree_digest(generated_release)
    code = run_cli("push", "--model", generated_release, "--repo-id", repo)
    line = error_line(capsys, code, *needles)
    assert SECRET not in line
    assert tree_digest(generated_release) == before  # README.md still names user/old-name
    if failure != "commit":
        assert local_hub.requests == []  # refused before anything was created on the Hub
    assert run_cli("push", "--model", generated_release, "--repo-id", "user/new-name") == 0 or failure != "commit"


def test_the_release_gets_its_new_card_once_the_push_succeeded(generated_release, local_hub):
    assert "user/old-name" in (generated_release / "README.md").read_text()
    assert run_cli("push", "--model", generated_release, "--repo-id", "user/new-name") == 0
    pushed = local_hub.repos["user/new-name"]["main"]["README.md"]
    assert pushed == (generated_release / "README.md").read_bytes() and b"user/new-name" in pushed


HUB_READS = {
    "generate --model": lambda r, t: ["generate", "--model", "user/remote-model"],
    "eval --model": lambda r, t: ["eval", "--model", "user/remote-model", "--tasks", "wikitext2"],
    "eval Hub data": lambda r, t: ["eval", "--model", r, "--tasks", "lambada_openai"],
    "convert SRC": lambda r, t: ["convert", "--from-gpt2", "user/remote-model", t / "out"],
    "model.init": lambda r, t: ["train", t / "tiny.yaml", "model.init=user/remote-model"],
    "tokenizer.name": lambda r, t: ["train", t / "tiny.yaml", "tokenizer.name=user/remote-tokenizer"],
    "hub: dataset": lambda r, t: ["prepare", t / "tiny.yaml", "data.source=hub:user/remote-data"],
    "resume_from=hub:": lambda r, t: ["train", t / "tiny.yaml", "train.resume_from=hub:user/remote-model"],
    "push_checkpoints": lambda r, t: ["train", t / "tiny.yaml", "hub.repo_id=user/x", "hub.push_checkpoints=true"],
}
"""Every command-line path that reads from (or writes to) the Hub."""


@pytest.mark.parametrize("path", list(HUB_READS))
def test_every_hub_path_without_a_network_is_one_line_at_once(path, release, corpus, tmp_path, closed_port, capsys,
                                                              caplog):  # fmt: skip
    tiny_recipe(tmp_path, corpus)
    before = tree_digest(tmp_path, release)
    with caplog.at_level(logging.WARNING):
        code = run_cli(*HUB_READS[path](release, tmp_path))
    error_line(
        capsys, code, f"could not reach the Hugging Face Hub at {closed_port}", "HF_HUB_OFFLINE=1", "HTTPS_PROXY"
    )
    assert "Retrying in" not in caplog.text  # nothing was retried: one quick request, then the error
    assert tree_digest(tmp_path, release) == before
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_huggingface_hubs_retry_warnings_are_said_once(caplog):
    online.say_retries_once()
    retry_logger = logging.getLogger("huggingface_hub.utils._http")
    with caplog.at_level(logging.WARNING):
        for attempt in range(1, 6):
            retry_logger.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://x/y")
            retry_logger.warning(f"Retrying in {2**attempt}s [Retry {attempt}/5].")
        logging.getLogger("huggingface_hub.utils._http").warning("an unrelated warning")
    messages = [r.getMessage() for r in caplog.records if r.name == "huggingface_hub.utils._http"]
    assert len(messages) == 2 and messages[1] == "an unrelated warning"
    assert messages[0].startswith("the Hub did not answer ('[Errno -2] Name or service not known' thrown while")
    assert "HF_HUB_OFFLINE=1" in messages[0]


def test_the_hub_is_asked_once_per_endpoint(local_hub, monkeypatch):
    online.require_hub_reachable("check")
    online.require_hub_reachable("check again")
    assert local_hub.reads == [("HEAD", "/")]
    monkeypatch.setattr(online, "_reached", set())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    online.require_hub_reachable("offline")  # sends nothing
    assert local_hub.reads == [("HEAD", "/")]


def test_checkpoint_uploads_are_refused_before_training_without_network(closed_port):
    from hf_gpt2.hub import CheckpointPusher

    with pytest.raises(HubError, match=f"could not reach the Hugging Face Hub at {closed_port} to push to user/x"):
        CheckpointPusher({"repo_id": "user/x"})


# ----------------------------------------------------------------------------------------------- 7. values


CLI_VALUES = [
    # generate
    ("generate --model {release} --top-k -5", "argument --top-k: -5 is not an integer >= 0"),
    ("generate --model {release} --top-p 5", "argument --top-p: 5 is not a number in (0, 1]"),
    ("generate --model {release} --top-p 0", "argument --top-p: 0 is not a number in (0, 1]"),
    ("generate --model {release} --temperature -1", "argument --temperature: -1 is not a number >= 0"),
    ("generate --model {release} --temperature nan", "argument --temperature: nan is not a number"),
    ("generate --model {release} --max-new-tokens 0", "argument --max-new-tokens: 0 is not an integer >= 1"),
    ("generate --model {release} --max-new-tokens ten", "argument --max-new-tokens: 'ten' is not an integer"),
    ("generate --model {release} --num-return-sequences 0", "argument --num-return-sequences: 0 is not"),
    ("generate --model {release} --repetition-penalty 0", "argument --repetition-penalty: 0 is not a number > 0"),
    ("generate --model {release} --seed -1", "argument --seed: -1 is not an integer in [0, 4294967295]"),
    ("generate --model {release} --device gpu", "argument --device: 'gpu' is not a device"),
    ("generate --model {release} --dtype fp8", "argument --dtype: invalid choice: 'fp8'"),
    ("generate --model {tmp}/runs/nope/final", "argument --model: '{tmp}/runs/nope/final' does not exist"),
    ("generate --model ./missing", "argument --model: './missing' does not exist (no such file or folder)"),
    ("generate --model a/b/c", "argument --model: 'a/b/c' does not exist"),
    ("generate --model 'user/bad name'", "'user/bad name' is neither an existing model folder nor a Hub id"),
    ("generate --model {release}/config.json", "config.json' is a file; give the folder"),
    ("generate --model {release} --chat --num-return-sequences 2", "--chat answers with one reply"),
    # eval
    ("eval --model {release} --tasks wikitext2 --limit 0", "argument --limit: 0 is not an integer >= 1"),
    ("eval --model {release} --tasks wikitext2 --batch-size -2", "argument --batch-size: -2 is not"),
    ("eval --model {release} --tasks wikitext2 --context 0", "argument --context: 0 is not"),
    ("eval --model {release} --tasks wikitext2 --stride x", "argument --stride: 'x' is not an integer"),
    ("eval --model {release} --tasks wikitext2 --max-length 0", "argument --max-length: 0 is not an integer >= 1"),
    ("eval --model {release} --tasks wikitext2 --prefix-token-id -1", "argument --prefix-token-id: -1 is not"),
    ("eval --model {release} --tasks enwik8 --test-bytes -5", "argument --test-bytes: -5 is not an integer >= 0"),
    ("eval --model {release} --tasks cbt_cn --cbt-split train", "argument --cbt-split: invalid choice: 'train'"),
    ("eval --model {release} --tasks ''", "argument --tasks: it is empty"),
    ("eval --model {release} --tasks ptb --data ptb", "argument --data: 'ptb' is not TASK=PATH"),
    ("eval --model {tmp}/nope --tasks ptb", "argument --model: '{tmp}/nope' does not exist"),
    # convert
    ("convert --to-gpt2 {tmp}/nope {tmp}/out", "argument SRC: '{tmp}/nope' does not exist"),
    # push
    ("push --model {tmp}/nope --repo-id user/x", "argument --model: '{tmp}/nope' does not exist"),
    ("push --model {release}/config.json --repo-id user/x", "config.json' is a file, not a folder"),
    ("push --model {release} --repo-id no-namespace", "argument --repo-id: 'no-namespace' is not a Hub repo id"),
    ("push --model {release} --repo-id user/a--b", "argument --repo-id: 'user/a--b' is not a Hub repo id"),
    ("push --model {release} --repo-id user/x --revision 'my branch'", "--revision: 'my branch' is not a branch"),
    ("push --model {release} --repo-id user/x --revision a..b", "argument --revision: 'a..b' is not"),
    ("push --model {release} --repo-id user/x --license 'MIT License'", "'MIT License' is not a Hub license id"),
    ("push --model {release} --repo-id user/x --commit-message ' '", "argument --commit-message: it is empty"),
    # cloud
    ("cloud launch recipes/quickstart.yaml --nodes 0", "argument --nodes: 0 is not an integer >= 1"),
    ("cloud launch recipes/quickstart.yaml --mount nowhere", "argument --mount: 'nowhere' is not REMOTE=LOCAL"),
    ("cloud tensorboard --port 70000", "argument --port: 70000 is not an integer in [1, 65535]"),
    # train / prepare (model.init and tokenizer.name are checked where the run starts, before any data is read)
    ("train {tmp}/nope.yaml", "nope.yaml"),
    ("train recipes/quickstart.yaml model.init={tmp}/runs/old/final", "model.init '{tmp}/runs/old/final' does not"),
    ("train recipes/quickstart.yaml tokenizer.name=./my-tokenizer", "tokenizer.name './my-tokenizer' does not exist"),
    ("prepare recipes/quickstart.yaml data.block_size=-1", "data.block_size must be >= 1"),
]
"""Every option of every subcommand with a value out of its range or of the wrong form, and what the error says."""


@pytest.mark.parametrize(("command", "message"), CLI_VALUES, ids=[c for c, _ in CLI_VALUES])
def test_every_option_is_checked_and_names_the_bad_value(command, message, release, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    fill = {"release": str(release), "tmp": str(tmp_path)}
    before = tree_digest(release, tmp_path)
    code = run_cli(*shlex.split(command.format(**fill)))
    error_line(capsys, code, message.format(**fill))
    assert tree_digest(release, tmp_path) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["generate", "eval"])
def test_a_device_this_machine_lacks_is_an_error_not_a_switch_to_cpu(command, release, capsys):
    tasks = ["--tasks", "wikitext2"] if command == "eval" else []
    code = run_cli(command, "--model", release, "--device", "cuda", *tasks)
    error_line(capsys, code, "--device cuda: CUDA is not available on this machine", "use --device cpu")
    code = run_cli(command, "--model", release, "--device", "mps", *tasks)
    error_line(capsys, code, "--device mps: MPS is not available on this machine")


@pytest.mark.slow  # three `python -m hf_gpt2` processes
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--model", "{release}", "--top-k", "-5"], "argument --top-k: -5 is not an integer >= 0"),
        (["generate", "--model", "{release}", "--device", "cpu", "--max-new-tokens", "300"], "at most 255"),
        (["push", "--model", "{release}", "--repo-id", "user/x"], "could not reach the Hugging Face Hub"),
    ],
    ids=["value", "context", "hub"],
)
def test_the_real_command_prints_one_line_and_exits_2(argv, message, release, closed_port):
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    command = [sys.executable, "-m", "hf_gpt2", *[a.format(release=release) for a in argv]]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("hf-gpt2 ") and message in lines[-1]
    assert [line for line in lines if ": error: " in line] == [lines[-1]]
    assert json.loads((release / "config.json").read_text())["n_positions"] == 256
