"""A release loads through the Auto classes with hf_gpt2 imported, and through trust_remote_code without it.

Each load runs in a fresh subprocess. The remote-code process blocks `import hf_gpt2`, so only the files saved in
the folder can define the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from hf_gpt2.convert import from_gpt2

pytestmark = pytest.mark.slow  # each test loads the release in a fresh Python process (5-10 s)

BLOCK_PACKAGE = textwrap.dedent(
    """
    import sys
    sys.modules["hf_gpt2"] = None  # this process cannot import the package
    try:
        import hf_gpt2  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("hf_gpt2 is importable")
    """
)

CHECK = textwrap.dedent(
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    folder, prompt_ids, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
    {load}
    expected = torch.load(expected_path)
    x = torch.tensor([[int(t) for t in prompt_ids.split(",")]])
    with torch.no_grad():
        logits = model(expected["input"]).logits
    assert (logits - expected["logits"]).abs().max() < 1e-4, "logits differ"
    kwargs = dict(max_new_tokens=10, do_sample=False, pad_token_id=50256)
    assert torch.equal(model.generate(x, **kwargs), expected["greedy"]), "greedy with cache differs"
    assert torch.equal(model.generate(x, use_cache=False, **kwargs), expected["greedy"]), "greedy, no cache, differs"
    generator = pipeline("text-generation", model=folder, {pipe_kwargs})
    text = generator("In the beginning", max_new_tokens=5, do_sample=False)
    assert text[0]["generated_text"].startswith("In the beginning")
    print(type(model).__module__ + "." + type(model).__name__)
    """
)


@pytest.fixture(scope="module")
def release(tmp_path_factory, gpt2_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    stock = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4)).eval()
    folder = tmp_path_factory.mktemp("release")
    model = from_gpt2(stock)
    model.save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    prompt = torch.tensor([[464, 3290, 286, 262]])
    x = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        expected = {
            "input": x,
            "logits": stock(x).logits,
            "greedy": stock.generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=50256),
        }
    torch.save(expected, folder.parent / "expected.pt")
    return folder, "464,3290,286,262", folder.parent / "expected.pt"


def _run(script: str, release, tmp_path) -> subprocess.CompletedProcess:
    folder, prompt, expected = release
    env_cache = {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    import os

    return subprocess.run(
        [sys.executable, "-c", script, str(folder), prompt, str(expected)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env_cache},
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_auto_classes_with_the_package_imported(release, tmp_path):
    script = "import sys\nimport hf_gpt2\n" + CHECK.format(
        load="model = AutoModelForCausalLM.from_pretrained(folder).eval()", pipe_kwargs=""
    )
    done = _run(script, release, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("hf_gpt2.modeling_hf_gpt2.HfGPT2ForCausalLM")


@pytest.mark.slow
def test_trust_remote_code_without_the_package(release, tmp_path):
    script = BLOCK_PACKAGE + CHECK.format(
        load="model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()",
        pipe_kwargs="trust_remote_code=True",
    )
    done = _run(script, release, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "transformers_modules" in done.stdout and done.stdout.strip().endswith("HfGPT2ForCausalLM")


def test_without_trust_remote_code_and_without_the_package_it_refuses(release, tmp_path):
    script = (
        BLOCK_PACKAGE
        + "from transformers import AutoModelForCausalLM\nAutoModelForCausalLM.from_pretrained(sys.argv[1])"
    )
    done = _run(script, release, tmp_path)
    assert done.returncode != 0
    assert "trust_remote_code" in done.stderr


REMOTE_HEADS = textwrap.dedent(
    """
    import json, os
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
    folder, expected_path = sys.argv[1], sys.argv[3]
    expected = torch.load(expected_path)
    x = expected["input"]
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(base).__name__ == "HfGPT2Model", type(base)
    with torch.no_grad():
        hidden = base(x, output_hidden_states=True)
    assert len(hidden.hidden_states) == 3
    lm = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()  # eval: no dropout
    loss = lm(x, labels=x, skip_logits=True).loss  # the chunked loss from the release's copy of fused_loss.py
    assert abs(loss.item() - lm(x, labels=x).loss.item()) < 1e-4
    loss.backward()
    assert type(lm).__module__.startswith("transformers_modules")
    classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3)
    with torch.no_grad():
        assert classifier(x[:1]).logits.shape == (1, 3)
    print("ok")
    """
)


@pytest.mark.slow
def test_every_auto_class_loads_through_trust_remote_code_without_the_package(release, tmp_path):
    folder = release[0]
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_hf_gpt2.HfGPT2Model"
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_hf_gpt2.HfGPT2ForSequenceClassification"
    assert {"configuration_hf_gpt2.py", "modeling_hf_gpt2.py", "fused_loss.py"} <= {p.name for p in folder.iterdir()}
    done = _run(BLOCK_PACKAGE + REMOTE_HEADS, release, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
