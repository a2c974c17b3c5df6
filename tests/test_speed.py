"""GPU fast-path helpers: safe on CPU, compile keeps checkpoint names, the prefetch loader keeps resume exact."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
from hf_gpt2.training.speed import PrefetchLoader, compile_model, configure_backends


class _CountingLoader:
    """A resumable loader like TokenWindowLoader: yields (2, 5) windows; its state is the next index."""

    def __init__(self, n: int = 6) -> None:
        self.n, self.position = n, 0

    def __iter__(self):
        while self.position < self.n:
            self.position += 1
            yield {"input_ids": torch.full((2, 5), self.position - 1), "labels": torch.zeros(2, 5, dtype=torch.long)}

    def __len__(self) -> int:
        return self.n

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


def test_configure_backends_leaves_cpu_untouched():
    before = torch.get_float32_matmul_precision()
    flags = configure_backends()
    assert torch.get_float32_matmul_precision() == before
    assert flags == {} or flags["tf32"]


def test_prefetch_loader_is_a_passthrough_on_cpu():
    loader = _CountingLoader()
    wrapped = PrefetchLoader(loader, device="cpu")
    assert not wrapped.enabled and len(wrapped) == 6
    seen = []
    for batch in wrapped:
        seen.append(int(batch["input_ids"][0, 0]))
        if len(seen) == 3:
            break
    assert seen == [0, 1, 2]
    state = wrapped.state_dict()
    resumed = PrefetchLoader(_CountingLoader(), device="cpu")
    resumed.load_state_dict(state)
    assert [int(b["input_ids"][0, 0]) for b in resumed] == [3, 4, 5]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefetch_loader_moves_batches_and_resumes_exactly_on_cuda():
    wrapped = PrefetchLoader(_CountingLoader(), device="cuda")
    seen = []
    for batch in wrapped:
        assert batch["input_ids"].is_cuda
        seen.append(int(batch["input_ids"][0, 0]))
        if len(seen) == 2:
            break
    resumed = PrefetchLoader(_CountingLoader(), device="cuda")
    resumed.load_state_dict(wrapped.state_dict())  # batch 2 was prefetched but never handed out
    assert [int(b["input_ids"][0, 0]) for b in resumed] == [2, 3, 4, 5]


@pytest.mark.parametrize(
    "backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]
)  # inductor is the training loop's backend: it generates and builds C++ kernels here (~30 s), Triton on CUDA
def test_compiled_model_accumulates_gradients_and_saves_plain_names(tmp_path, backend):
    config = HfGPT2Config(
        vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, loss_chunk_size=16,
    )  # fmt: skip
    torch.manual_seed(0)
    eager = HfGPT2ForCausalLM(config).train()
    compiled = HfGPT2ForCausalLM(config).train()
    compiled.load_state_dict(eager.state_dict())
    assert compile_model(compiled, backend=backend) is compiled
    micro_batches = [torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    for model in (eager, compiled):
        for x in micro_batches:  # gradient accumulation over two micro-batches
            (model(x, labels=x, skip_logits=True).loss / 2).backward()  # the training loop's call
    for name, p in compiled.named_parameters():
        torch.testing.assert_close(p.grad, dict(eager.named_parameters())[name].grad, rtol=1e-4, atol=1e-5)
    assert not any("_orig_mod" in key for key in compiled.state_dict())
    compiled.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert not any("_orig_mod" in key for key in f.keys())


@pytest.mark.parametrize("loss_chunk_size", [16, 0])
def test_the_training_forward_and_loss_compile_as_one_graph(loss_chunk_size):
    """A graph break would split the compiled step (stock GPT2LMHeadModel has one); the chunked loss has none."""
    from torch import _dynamo

    config = HfGPT2Config(
        vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, loss_chunk_size=loss_chunk_size
    )
    x = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    explained = _dynamo.explain(HfGPT2ForCausalLM(config).train())(x, labels=x, skip_logits=True)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.slow
def test_gpu_throughput_script_smoke_runs_on_cpu():
    results = _load_benchmark("gpu_throughput").main(["--smoke"])
    assert [(r["model"], r["compiled"]) for r in results] == [
        ("hf_gpt2", True),
        ("stock", True),
        ("hf_gpt2-nochunk", True),
        ("hf_gpt2", False),
        ("stock", False),
        ("hf_gpt2-nochunk", False),
    ]  # fmt: skip  (compiled first: the numbers that matter most come first when a time limit stops the run)
    assert all("error" not in r and r["tokens_per_s"] > 0 for r in results), results
    assert all(r["vs_stock"] > 0 for r in results) and [r["vs_stock"] for r in results][1::3] == [1.0, 1.0]
    # the same seed, data and steps: the chunked and the plain loss train the same model
    by_name = {(r["model"], r["compiled"]): r["loss"] for r in results}
    for compiled in (False, True):
        assert by_name["hf_gpt2", compiled] == pytest.approx(by_name["hf_gpt2-nochunk", compiled], rel=2e-2)


def _load_benchmark(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_wheels_carry_every_dependency_the_gpu_image_lacks():
    import importlib.metadata
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    wheels = _load_benchmark("gpu_wheels")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())

    def normalize(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    required = {normalize(re.split(r"[<>=!~ \[;]", dep)[0]) for dep in pyproject["project"]["dependencies"]}
    carried = {normalize(name) for name in wheels.CARRIED}
    missing = required - carried - {normalize(name) for name in wheels.ON_THE_GPU_IMAGE}
    assert not missing, f"add {missing} to benchmarks/gpu_wheels.py CARRIED (or ON_THE_GPU_IMAGE)"
    pins = wheels.pinned()
    assert len(pins) == len(wheels.CARRIED)
    for pin in pins:
        name, version = pin.split("==")
        assert importlib.metadata.version(name) == version  # the versions the tests run with here


@pytest.mark.slow
def test_gpu_check_script_runs_every_step_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh --smoke end to end without a GPU: imports, both benchmarks (tiny), the GPU tests."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHON=sys.executable, HF_GPT2_WHEELS=str(tmp_path / "no-wheels"))
    env["TIME_TO_LOSS_ARGS"] = f"--contenders stock,speedrun --keep {tmp_path / 'ttl'}"
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--smoke", str(tmp_path / "out")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert summary == ["imports: ok", "throughput: ok", "time_to_loss: ok", "tests: ok"]
    assert "transformers " in (tmp_path / "out" / "env.txt").read_text()
    assert "hf_gpt2-nochunk" in (tmp_path / "out" / "throughput.log").read_text()
    assert (tmp_path / "out" / "gpu_throughput.json").is_file() and (tmp_path / "out" / "pytest_gpu.log").is_file()
    race = json.loads((tmp_path / "out" / "time_to_loss.json").read_text())
    assert [r["name"] for r in race["results"]] == ["stock", "speedrun"]


@pytest.mark.slow
def test_time_to_loss_smoke_races_stock_and_the_levers(tmp_path):
    """The race end to end on a 1-layer model: stock sets the target, each hf_gpt2 contender trains through train.py,
    every evaluation is on the same val split, and a contender stops at the target."""
    results = _load_benchmark("time_to_loss").main(
        ["--smoke", "--contenders", "stock,hf_gpt2,+muon,+bpe8192", "--json", str(tmp_path / "race.json")]
    )
    target = json.loads((tmp_path / "race.json").read_text())["target"]
    assert [r["name"] for r in results] == ["stock", "hf_gpt2", "+muon", "+bpe8192"]
    assert target == results[0]["evals"][-1]["bpb"] and results[0]["reached"]["step"] == 6
    for r in results:
        assert [e["step"] for e in r["evals"]] == [3, 6][: len(r["evals"])] and r["evals"]
        assert all(0 < e["bpb"] < 8 for e in r["evals"])
        hit = r["reached"]
        assert hit is None or (hit["bpb"] <= target and hit is r["evals"][-1] and hit["train_s"] > 0)
    assert results[3]["tokens_per_step"] == results[0]["tokens_per_step"] == 256
