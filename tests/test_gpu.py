"""The CUDA path: parity with stock GPT-2, the chunked loss under bf16, inductor compile. Skipped without a GPU.

``make gpu-check`` (``benchmarks/gpu_check.sh``) runs these on the GPU machine together with the throughput benchmark.
The model is GPT-2's width at 2 layers (768 wide, 12 heads, vocab 50257), so the kernels are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

SHAPE = {"vocab_size": 50257, "n_positions": 256, "n_embd": 768, "n_layer": 2, "n_head": 12}
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 means fp32 here: TF32 matmuls would make the fp32 comparisons differ by ~1e-3."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _stock_and_converted(attn: str = "sdpa"):
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_gpt2.convert import from_gpt2

    torch.manual_seed(0)
    stock = GPT2LMHeadModel(GPT2Config(**SHAPE, **NO_DROPOUT, attn_implementation=attn)).cuda().eval()
    ours = from_gpt2(stock).cuda().eval()
    ours.set_attn_implementation(attn)
    return stock, ours


def _ids(batch: int = 2, length: int = 48) -> torch.Tensor:
    return torch.randint(0, SHAPE["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(1)).cuda()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_logits_and_greedy_tokens_match_stock_gpt2_on_cuda(attn):
    stock, ours = _stock_and_converted(attn)
    ids = _ids()
    with torch.no_grad():
        expected, got = stock(ids).logits, ours(ids).logits
        assert got.shape == expected.shape  # the padded head never shows: 50257 logits
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        kwargs = {"max_new_tokens": 16, "do_sample": False, "pad_token_id": 0}
        assert torch.equal(ours.generate(ids[:1], **kwargs), stock.generate(ids[:1], **kwargs))


def test_bf16_autocast_logits_stay_close_to_stock():
    stock, ours = _stock_and_converted()
    ids = _ids()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        expected, got = stock(ids).logits.float(), ours(ids).logits.float()
    # the same bf16 kernels on the same weights: agreement to bf16 resolution, not bit equality
    assert (got - expected).abs().max() < 0.1 * expected.abs().max()
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.97


def test_chunked_loss_and_gradients_match_plain_under_bf16_autocast():
    from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM

    torch.manual_seed(0)
    chunked = HfGPT2ForCausalLM(HfGPT2Config(**SHAPE, **NO_DROPOUT, loss_chunk_size=512)).cuda().train()
    plain = HfGPT2ForCausalLM(HfGPT2Config(**SHAPE, **NO_DROPOUT, loss_chunk_size=0)).cuda().train()
    plain.load_state_dict(chunked.state_dict())
    ids = _ids(4, 256)
    labels = ids.clone()
    labels[0, :50] = -100
    losses = []
    for model in (chunked, plain):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=labels, skip_logits=True)
        out.loss.backward()
        losses.append(out.loss.float())
    assert chunked(input_ids=ids, labels=labels, skip_logits=True).logits is None  # no (B, T, V) logits
    torch.testing.assert_close(losses[0], losses[1], rtol=2e-3, atol=2e-3)
    grads = dict(plain.named_parameters())
    for name, p in chunked.named_parameters():
        g, ref = p.grad.float(), grads[name].grad.float()
        cosine = torch.nn.functional.cosine_similarity(g.flatten(), ref.flatten(), dim=0)
        assert cosine > 0.99, (name, cosine.item())
    assert chunked.lm_head.weight.grad.shape[0] == SHAPE["vocab_size"]


def test_inductor_compiled_model_trains_like_eager_with_accumulation(tmp_path):
    from safetensors import safe_open

    from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
    from hf_gpt2.training.speed import compile_model

    torch.manual_seed(0)
    config = HfGPT2Config(**SHAPE, **NO_DROPOUT)
    eager = HfGPT2ForCausalLM(config).cuda().train()
    compiled = HfGPT2ForCausalLM(config).cuda().train()
    compiled.load_state_dict(eager.state_dict())
    compile_model(compiled)  # the default inductor backend, as the training loop does
    batches = [_ids(2, 128) for _ in range(2)]
    for model in (eager, compiled):
        for ids in batches:  # two micro-batches accumulate into the same .grad
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss / 2
            loss.backward()
    grads = dict(eager.named_parameters())
    for name, p in compiled.named_parameters():
        cosine = torch.nn.functional.cosine_similarity(p.grad.flatten(), grads[name].grad.flatten(), dim=0)
        assert cosine > 0.99, (name, cosine.item())
    compiled.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert not any("_orig_mod" in key for key in f.keys())


def test_fused_adamw_is_used_on_cuda():
    from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
    from hf_gpt2.recipe import load_recipe
    from hf_gpt2.training.optim import build_optimizers

    model = HfGPT2ForCausalLM(HfGPT2Config(**{**SHAPE, "n_layer": 1})).cuda()
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml")
    optimizer = build_optimizers(model, recipe.optim, torch.device("cuda"))[0]
    assert all(group["fused"] for group in optimizer.param_groups)


def test_training_run_on_cuda_with_bf16_and_compile_resumes_close(tmp_path):
    """The real loop through `accelerate launch` with the single-GPU config (bf16), compiled, then a resume."""
    import json
    import os
    import subprocess
    import sys
    from pydoc_data.topics import topics

    import yaml
    from safetensors.torch import load_file

    repo = Path(__file__).resolve().parents[1]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(sorted(topics.values())[:120]):
        (corpus / f"{i:03d}.txt").write_text(text)
    recipe = {
        "run": {"output_dir": str(tmp_path / "runs"), "seed": 7, "log_every": 2},
        "model": {"n_layer": 2, "n_head": 4, "n_embd": 256, "n_positions": 128},
        "data": {"source": str(corpus / "*.txt"), "cache_dir": str(tmp_path / "cache"), "block_size": 128},
        "train": {
            **{"max_steps": 8, "micro_batch_size": 8, "grad_accum_steps": 2, "compile": True},
            **{"eval_every": 4, "eval_batches": 2, "save_every": 4, "keep_last": 2},
        },
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2},
        "sample": {"prompts": ["The"], "max_new_tokens": 4},
    }
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(recipe))
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    )

    def launch(*overrides: str) -> str:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
        command += ["accelerate_configs/single_gpu.yaml", "train.py", str(tmp_path / "gpu.yaml"), *overrides]
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stderr

    log = launch("run.name=whole")
    assert "mfu n/a" not in log  # the card is in the peak-FLOPs table, so MFU is logged
    whole = tmp_path / "runs" / "whole"
    report = json.loads((whole / "eval.json").read_text())
    assert report["step"] == 8 and report["val_loss"] < 10.0
    for checkpoint in ("step-4", "step-8"):
        keys = load_file(str(whole / "checkpoints" / checkpoint / "model.safetensors")).keys()
        assert keys and not any("_orig_mod" in key for key in keys)
    # resumed without compile: a compiled run's checkpoint is plain (and this keeps the check inside its time limit)
    launch("run.name=resumed", f"train.resume_from={whole / 'checkpoints' / 'step-4'}", "train.compile=false")
    resumed = json.loads((tmp_path / "runs" / "resumed" / "eval.json").read_text())
    # bf16 and atomics make CUDA runs non-bit-exact; the resumed run must land on the same loss
    assert resumed["step"] == 8 and abs(resumed["val_loss"] - report["val_loss"]) < 0.02 * report["val_loss"]
    a, b = (
        load_file(str(whole / "final" / "model.safetensors")),
        load_file(str(tmp_path / "runs/resumed/final/model.safetensors")),
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0.05, atol=5e-3, msg=key)
