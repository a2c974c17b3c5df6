"""End-to-end training runs on a tiny model: the run folder, exact resume after SIGKILL, SIGTERM, NaN, bad input.

Every run uses a 2-layer, 32-wide model with 32-token blocks on the stdlib's pydoc topics (real English, offline).
Runs that must be killed go through subprocesses; the rest run in-process through ``train.main`` (the CLI path).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "run": {"name": None, "seed": 7, "log_every": 2},
    "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 32},
    "data": {"block_size": 32, "val_fraction": 0.05, "num_proc": 1},
    "train": {
        "max_steps": 8,
        "micro_batch_size": 4,
        "grad_accum_steps": 2,
        "eval_every": 4,
        "eval_batches": 2,
        "save_every": 4,
        "keep_last": 2,
    },
    "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 2},
    "sample": {"prompts": ["The"], "max_new_tokens": 4},
}


def run_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A corpus of pydoc topics (one .txt file per topic), a shared data cache, and the tiny recipe file."""
    from pydoc_data.topics import topics

    root = tmp_path_factory.mktemp("training")
    corpus = root / "corpus"
    corpus.mkdir()
    for i, text in enumerate(sorted(topics.values())[:120]):
        (corpus / f"{i:03d}.txt").write_text(text)
    recipe = json.loads(json.dumps(TINY))
    recipe["run"]["output_dir"] = str(root / "runs")
    recipe["data"].update(source=str(corpus / "*.txt"), cache_dir=str(root / "cache"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return root


def train_cli(workspace: Path, *overrides: str, capsys=None) -> int:
    """Run `python train.py tiny.yaml OVERRIDES` in this process; return its exit code."""
    sys.path.insert(0, str(REPO))
    try:
        import train
    finally:
        sys.path.remove(str(REPO))
    torch.set_num_threads(1)
    return train.main([str(workspace / "tiny.yaml"), *overrides])


def train_subprocess(workspace: Path, *overrides: str, prelude: str = "") -> subprocess.Popen:
    """Start `python train.py tiny.yaml OVERRIDES` (after `prelude`, e.g. a patch) in a new process."""
    code = f"{prelude}\nimport sys, train\nsys.exit(train.main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(workspace / "tiny.yaml"), *overrides],
        cwd=REPO,
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def error_of(captured_err: str) -> str:
    """The one error line of the CLI (progress bars also write to stderr); fails on a traceback or several errors."""
    assert "Traceback" not in captured_err, captured_err
    errors = [line for line in captured_err.splitlines() if "error:" in line]
    assert len(errors) == 1, captured_err
    return errors[0]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (to prove that a refused run changed nothing)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        if root.exists()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(workspace) -> Path:
    """One complete tiny run (shared by the tests that inspect its folder)."""
    assert train_cli(workspace, "run.name=done") == 0
    return workspace / "runs" / "done"


# -- a complete run --------------------------------------------------------------------------------------------------


def test_the_run_folder_has_everything(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"recipe.yaml", "tb", "checkpoints", "final", "final-gpt2", "eval.json", "samples.json"} <= names
    assert [p.name for p in sorted((finished_run / "checkpoints").iterdir())] == ["step-4", "step-8"]
    assert list((finished_run / "tb").rglob("events.out.tfevents.*"))
    report = json.loads((finished_run / "eval.json").read_text())
    assert report["step"] == 8 and report["val_loss"] > 0


def test_the_loss_decreases(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(finished_run / "tb")).Reload()
    train = [e.value for e in events.Scalars("train/loss")]
    val = [e.value for e in events.Scalars("val/loss")]
    assert len(train) == 4 and len(val) == 2
    assert train[-1] < train[0] - 0.3 and val[-1] < val[0] - 0.3
    assert {"train/lr", "train/grad_norm", "perf/tokens_per_s", "perf/memory_gb"} <= set(events.Tags()["scalars"])


def test_the_release_loads_with_from_pretrained(finished_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    from hf_gpt2.recipe import load_recipe

    final = finished_run / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"].endswith("HfGPT2ForCausalLM")
    assert {"model.safetensors", "generation_config.json", "tokenizer.json", "recipe.yaml"} <= {
        p.name for p in final.iterdir()
    }
    assert load_recipe(final / "recipe.yaml").train.max_steps == 8
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    stock = GPT2LMHeadModel.from_pretrained(finished_run / "final-gpt2").eval()
    ids = AutoTokenizer.from_pretrained(final)("In the beginning", return_tensors="pt").input_ids
    torch.testing.assert_close(model(ids).logits, stock(ids).logits[..., : model.config.vocab_size])
    generation = json.loads((final / "generation_config.json").read_text())
    assert not {"max_new_tokens", "do_sample", "temperature", "top_k"} & set(generation)  # sample.* is the recipe's


# -- exact resume ----------------------------------------------------------------------------------------------------

KILL_AT_STEP_6 = """
import os, signal
import hf_gpt2.training.loop as loop
_step = loop.optimizer_step
def optimizer_step(trainer):
    if trainer.step == 6:  # after the checkpoint at step 4, in the middle of the run
        os.kill(os.getpid(), signal.SIGKILL)
    return _step(trainer)
loop.optimizer_step = optimizer_step
"""


@pytest.mark.slow
def test_sigkill_then_resume_latest_is_bit_exact_with_dropout(workspace):
    dropout = ["model.resid_pdrop=0.1", "model.embd_pdrop=0.1", "model.attn_pdrop=0.1"]
    whole = train_subprocess(workspace, "run.name=whole", *dropout)
    killed = train_subprocess(workspace, "run.name=killed", *dropout, prelude=KILL_AT_STEP_6)
    killed_out, _ = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed_out
    assert (workspace / "runs/killed/checkpoints/step-4").is_dir()
    assert not (workspace / "runs/killed/final").exists()
    resumed = train_subprocess(workspace, "run.name=killed", "train.resume_from=latest", *dropout)
    resumed_out, _ = resumed.communicate(timeout=300)
    whole_out, _ = whole.communicate(timeout=300)
    assert resumed.returncode == 0, resumed_out
    assert whole.returncode == 0, whole_out
    a, b = weights(workspace / "runs/whole/final"), weights(workspace / "runs/killed/final")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    val = [json.loads((workspace / f"runs/{n}/eval.json").read_text())["val_loss"] for n in ("whole", "killed")]
    assert val[0] == val[1]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(workspace):
    proc = train_subprocess(
        workspace, "run.name=preempted", "train.max_steps=100000", "train.save_every=2", "train.eval_every=0"
    )
    checkpoints = workspace / "runs/preempted/checkpoints"
    deadline = time.time() + 240
    while not (checkpoints / "step-2").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "SIGTERM" in out
    from hf_gpt2.training.checkpointing import verify_checkpoint
    from hf_gpt2.training.state import latest_checkpoint

    last = latest_checkpoint(checkpoints)
    assert verify_checkpoint(last).step >= 2
    assert not (workspace / "runs/preempted/final").exists()


# -- NaN -------------------------------------------------------------------------------------------------------------


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(workspace, monkeypatch, capsys):
    import hf_gpt2.training.step as step

    calls = {"n": 0}
    real = step.compute_loss

    def poisoned(model, batch, **kwargs):
        loss = real(model, batch, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] > 2 * 5 else loss  # 2 micro-batches per step: step 6 is NaN

    monkeypatch.setattr(step, "compute_loss", poisoned)
    capsys.readouterr()
    assert train_cli(workspace, "run.name=nan", "train.save_every=5", "train.eval_every=0") == 2
    err = error_of(capsys.readouterr().err)
    assert "step 6" in err and "step-5" in err
    from hf_gpt2.training.checkpointing import verify_checkpoint
    from hf_gpt2.training.state import checkpoint_dirs

    assert [p.name for p in checkpoint_dirs(workspace / "runs/nan/checkpoints")] == ["step-5"]
    assert verify_checkpoint(workspace / "runs/nan/checkpoints/step-5").step == 5
    assert not (workspace / "runs/nan/final").exists()


# -- bad input -------------------------------------------------------------------------------------------------------


@pytest.fixture
def empty_file(workspace) -> Path:
    path = workspace / "empty" / "empty.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("")
    return path


BAD_INPUT = {
    "misspelt key": (["train.max_stepz=5"], "max_steps"),
    "wrong type": (["train.max_steps=soon"], "train.max_steps"),
    "impossible shape": (["model.n_head=5"], "n_head"),
    "batch not divisible": (["train.grad_accum_steps=null", "train.global_batch_tokens=100"], "multiple of"),
    "missing data": (["data.source=/no/such/folder/*.txt"], "/no/such/folder"),
    "unknown eval task": (["eval.tasks=[lambda_openai]"], "lambada"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(workspace, capsys, case):
    overrides, expected = BAD_INPUT[case]
    before = tree_digest(workspace / "runs", workspace / "cache")
    capsys.readouterr()
    assert train_cli(workspace, "run.name=bad", *overrides) == 2
    err = error_of(capsys.readouterr().err)
    assert expected in err, err
    assert tree_digest(workspace / "runs", workspace / "cache") == before
    assert not (workspace / "runs" / "bad").exists()


def test_empty_data_is_refused(workspace, capsys, empty_file):
    capsys.readouterr()
    assert train_cli(workspace, "run.name=bad", f"data.source={empty_file}") == 2
    err = error_of(capsys.readouterr().err)
    assert "empty" in err.lower(), err
    assert not (workspace / "runs" / "bad").exists()


def test_missing_recipe_file(workspace, capsys):
    sys.path.insert(0, str(REPO))
    import train

    sys.path.remove(str(REPO))
    capsys.readouterr()
    assert train.main([str(workspace / "nope.yaml")]) == 2
    err = error_of(capsys.readouterr().err)
    assert "nope.yaml" in err and "not found" in err


def test_a_fresh_run_into_an_existing_folder_is_refused(workspace, finished_run, capsys):
    before = tree_digest(finished_run)
    capsys.readouterr()
    assert train_cli(workspace, "run.name=done") == 2
    err = error_of(capsys.readouterr().err)
    assert "train.resume_from=latest" in err
    assert tree_digest(finished_run) == before


def test_a_corrupt_checkpoint_is_named_and_nothing_changes(workspace, finished_run, capsys, tmp_path):
    import shutil

    broken = workspace / "runs" / "broken"
    shutil.copytree(finished_run, broken)
    shutil.rmtree(broken / "final")  # a run stopped before its release
    victim = broken / "checkpoints" / "step-8" / "model.safetensors"
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    before = tree_digest(broken)
    capsys.readouterr()
    assert train_cli(workspace, "run.name=broken", "train.resume_from=latest", "train.max_steps=12") == 2
    err = error_of(capsys.readouterr().err)
    assert str(victim) in err and "corrupt" in err
    assert tree_digest(broken) == before


def test_the_subprocess_cli_prints_no_traceback(workspace):
    proc = subprocess.run(
        [sys.executable, "train.py", str(workspace / "tiny.yaml"), "train.max_steps=soon"],
        cwd=REPO,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr


# -- DDP on CPU ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(config: str, script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file accelerate_configs/CONFIG SCRIPT ARGS` from the repository root."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"accelerate_configs/{config}"]
    if config == "cpu_ddp.yaml":
        command += ["--main_process_port", str(free_port())]
    command += [script, *args]
    return subprocess.run(command, cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_quickstart_on_two_cpu_processes_matches_one_with_the_same_global_batch(workspace):
    tiny = [
        f"run.output_dir={workspace / 'runs'}",
        f"data.cache_dir={workspace / 'kjv_cache'}",
        "model.n_layer=2",
        "model.n_embd=64",
        "model.n_head=2",
        "data.block_size=64",
        "train.micro_batch_size=4",
        "train.grad_accum_steps=null",
        "train.global_batch_tokens=512",
        "train.max_steps=12",
        "train.eval_every=6",
        "train.eval_batches=4",
        "train.save_every=6",
        "optim.lr=3e-3",
        "optim.warmup_steps=2",
        "sample.max_new_tokens=4",
    ]
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    one = accelerate_launch("cpu.yaml", "train.py", recipe, "run.name=ddp1", *tiny)
    assert one.returncode == 0, one.stderr[-3000:]
    two = accelerate_launch("cpu_ddp.yaml", "train.py", recipe, "run.name=ddp2", *tiny)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stderr and "1 accumulation" in two.stderr and "2 accumulation" in one.stderr
    val = [json.loads((workspace / f"runs/{n}/eval.json").read_text())["val_loss"] for n in ("ddp1", "ddp2")]
    assert val[1] == pytest.approx(val[0], rel=0.03), val
    assert val[0] < 10.0  # it learned something (ln 50257 = 10.8 at the start)
    saved = json.loads((workspace / "runs/ddp2/checkpoints/step-12/train_state.json").read_text())
    assert saved["num_processes"] == 2 and (workspace / "runs/ddp2/checkpoints/step-12/data_state_1.pt").is_file()
    assert saved["tokens_per_step"] == 512 and saved["reshardable"] is True

    # The process count may change on resume (same global batch): 2 → 1 and 1 → 2 continue the same data stream
    # with the same optimizer state, so the final weights match the uninterrupted run up to float rounding.
    for source, config, name in (("ddp2", "cpu.yaml", "ddp2-on-1"), ("ddp1", "cpu_ddp.yaml", "ddp1-on-2")):
        checkpoint = workspace / f"runs/{source}/checkpoints/step-6"
        resumed = accelerate_launch(config, "train.py", recipe, f"run.name={name}", f"train.resume_from={checkpoint}",
                                    *tiny)  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "the same weights, optimizer state, data stream and global batch (512 tokens per step)" in (
            resumed.stderr
        )
        a, b = weights(workspace / f"runs/{source}/final"), weights(workspace / f"runs/{name}/final")
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst < 1e-4, (name, worst)  # 0.0 here; resuming at the wrong data position gives 9e-3


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("mode", ["node-local", "shared"])
def test_two_nodes_checkpoint_to_the_main_process_and_each_resumes_its_own_state(tmp_path, mode):
    """Each process saves into its own folder ("node-local": as on nodes that share no disk) or into one ("shared").

    The main's checkpoint must hold and list both processes' RNG states and data positions, the other "node" must
    keep no stray folder (and nothing may be deleted on the shared disk), a local folder that a process cannot see
    must be one error on both processes, and each process must resume its own state from a per-process copy, as a
    Hub download gives it. The checks run inside tests/node_local_checkpoint.py.
    """
    result = accelerate_launch("cpu_ddp.yaml", "tests/node_local_checkpoint.py", mode, str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / f"{mode}.ok").is_file()
    if mode == "node-local":
        assert "wrote the per-process files sent by processes [1]" in result.stderr


def test_resuming_with_a_model_that_does_not_fit_changes_nothing(workspace, finished_run, capsys):
    import shutil

    other = workspace / "runs" / "reshaped"
    shutil.copytree(finished_run, other)
    shutil.rmtree(other / "final")  # a run stopped before its release
    before = tree_digest(other)
    capsys.readouterr()
    assert train_cli(workspace, "run.name=reshaped", "train.resume_from=latest", "model.n_embd=64") == 2
    err = error_of(capsys.readouterr().err)
    assert "cannot load checkpoint" in err and "step-8" in err
    assert tree_digest(other) == before


def test_finetuning_starts_from_a_release(workspace, finished_run):
    overrides = [
        "run.name=finetuned",
        f"model.init={finished_run / 'final'}",
        "train.max_steps=2",
        "train.save_every=0",
        "train.gradient_checkpointing=true",
    ]
    assert train_cli(workspace, *overrides) == 0
    report = json.loads((workspace / "runs/finetuned/eval.json").read_text())
    start = json.loads((finished_run / "eval.json").read_text())["val_loss"]
    assert report["val_loss"] < min(start + 0.5, 10.0)  # it starts from the trained weights, not from scratch (~10.8)


# -- a new tokenizer -------------------------------------------------------------------------------------------------


def test_a_new_tokenizer_is_trained_used_released_and_retrained_identically_on_resume(workspace, tmp_path):
    """``tokenizer.train_new``: the release and the stock export carry the new BPE, and a resume whose cache is gone
    (another machine) trains the same tokenizer again, so the data position check passes and the weights match."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    cache = tmp_path / "cache"
    new_bpe = ["tokenizer.train_new=true", "model.vocab_size=384", f"data.cache_dir={cache}"]
    assert train_cli(workspace, "run.name=new-bpe", *new_bpe) == 0
    run = workspace / "runs/new-bpe"
    trained = next((cache / "tokenizers").glob("corpus-bpe384-*"))
    for release in ("final", "final-gpt2"):
        assert (run / release / "tokenizer.json").read_bytes() == (trained / "tokenizer.json").read_bytes()
    tokenizer = AutoTokenizer.from_pretrained(run / "final")
    assert len(tokenizer) == 384 and tokenizer.eos_token_id == 0
    model = AutoModelForCausalLM.from_pretrained(run / "final")
    assert model.config.vocab_size == 384 and model.config.eos_token_id == 0
    assert model.generation_config.eos_token_id == 0
    ids = tokenizer("The", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape[1] > ids.shape[1] and int(out.max()) < 384
    stock = GPT2LMHeadModel.from_pretrained(run / "final-gpt2")
    assert stock.config.vocab_size == 384
    assert (
        "| tokenizer | a new BPE with `gpt2`'s pipeline, trained on the data's training split"
        in (run / "final/README.md").read_text()
    )
    prepared = json.loads(next(p for p in cache.glob("*/meta.json") if "tokenizers" not in str(p)).read_text())
    assert prepared["vocab_size"] == 384 and prepared["tokenizer"] == str(trained)

    import shutil

    shutil.rmtree(cache)  # resume elsewhere: the tokenizer and the shards are rebuilt from the recipe
    checkpoint = run / "checkpoints/step-4"
    assert train_cli(workspace, "run.name=new-bpe-resumed", f"train.resume_from={checkpoint}", *new_bpe) == 0
    a, b = weights(run / "final"), weights(workspace / "runs/new-bpe-resumed/final")
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- streaming -------------------------------------------------------------------------------------------------------


def test_streaming_trains_without_a_prepare_step_and_resumes_exactly(workspace, tmp_path):
    stream = ["data.streaming=true", f"data.cache_dir={tmp_path / 'no-cache'}"]
    assert train_cli(workspace, "run.name=stream-whole", *stream) == 0
    assert not (tmp_path / "no-cache").exists()  # nothing was prepared
    report = json.loads((workspace / "runs/stream-whole/eval.json").read_text())
    assert report["step"] == 8 and report["val_loss"] > 0
    # Resume from the step-4 checkpoint of the same run into a new run: the stream continues where it was.
    checkpoint = workspace / "runs/stream-whole/checkpoints/step-4"
    assert train_cli(workspace, "run.name=stream-resumed", f"train.resume_from={checkpoint}", *stream) == 0
    a, b = weights(workspace / "runs/stream-whole/final"), weights(workspace / "runs/stream-resumed/final")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_a_finished_run_is_refused_and_changes_nothing(workspace, finished_run, capsys):
    before = tree_digest(finished_run)
    for spec in ("latest", str(finished_run / "checkpoints/step-4"), str(finished_run)):
        assert train_cli(workspace, "run.name=done", f"train.resume_from={spec}", "train.max_steps=12") == 2
        err = capsys.readouterr().err
        assert "is finished" in err and "run.name=NEW_NAME" in err and "Traceback" not in err
    assert tree_digest(finished_run) == before


# -- levers of time to a target loss ---------------------------------------------------------------------------------

LEVERS = {
    "muon": ["optim.name=muon", "optim.muon_lr=0.05"],
    "wsd": ["optim.schedule=wsd", "optim.decay_fraction=0.25"],
    "foreach-adamw": ["optim.foreach=true"],
    "smaller-batch": ["train.micro_batch_size=2", "train.grad_accum_steps=2"],
    "new-bpe": ["tokenizer.train_new=true", "model.vocab_size=384"],
}


def val_curves(run: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb")).Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in ("train/loss", "val/loss", "val/bpb")}


@pytest.mark.parametrize("lever", LEVERS)
def test_each_lever_trains_and_logs_bits_per_byte(workspace, tmp_path, lever):
    extra = [f"data.cache_dir={tmp_path / 'cache'}"] if lever == "new-bpe" else []
    assert train_cli(workspace, f"run.name=lever-{lever}", *LEVERS[lever], *extra, "train.save_every=0") == 0
    run = workspace / f"runs/lever-{lever}"
    curves = val_curves(run)
    assert curves["train/loss"][-1] < curves["train/loss"][0] - 0.3
    assert curves["val/bpb"][-1] < curves["val/bpb"][0] - 0.1
    report = json.loads((run / "eval.json").read_text())
    assert report["val_bits_per_byte"] == pytest.approx(curves["val/bpb"][-1], rel=1e-6)
    assert "| final validation bits per byte |" in (run / "final/README.md").read_text()
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel  # the release is still GPT-2, whatever the lever

    ours = AutoModelForCausalLM.from_pretrained(run / "final").eval()
    stock = GPT2LMHeadModel.from_pretrained(run / "final-gpt2").eval()
    ids = torch.randint(0, ours.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, stock(ids).logits, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_compiled_training_trains(workspace):
    assert train_cli(workspace, "run.name=lever-compile", "train.compile=true", "train.save_every=0") == 0
    curves = val_curves(workspace / "runs/lever-compile")
    assert curves["train/loss"][-1] < curves["train/loss"][0] - 0.3 and curves["val/bpb"][-1] < curves["val/bpb"][0]


def test_muon_runs_resume_bit_exactly(workspace):
    """Both optimizers' states (AdamW moments, Muon momentum) are in the checkpoint: the resumed run ends equal."""
    muon = ["optim.name=muon", "optim.muon_lr=0.05", "optim.muon_weight_decay=0.01"]
    assert train_cli(workspace, "run.name=muon-whole", *muon) == 0
    checkpoint = workspace / "runs/muon-whole/checkpoints/step-4"
    assert {"optimizer.bin", "optimizer_1.bin"} <= {p.name for p in checkpoint.iterdir()}
    assert json.loads((checkpoint / "train_state.json").read_text())["optimizer"] == "muon"
    assert train_cli(workspace, "run.name=muon-resumed", f"train.resume_from={checkpoint}", *muon) == 0
    a, b = weights(workspace / "runs/muon-whole/final"), weights(workspace / "runs/muon-resumed/final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    reports = [json.loads((workspace / f"runs/{n}/eval.json").read_text()) for n in ("muon-whole", "muon-resumed")]
    assert reports[0]["val_bits_per_byte"] == reports[1]["val_bits_per_byte"]


def test_resuming_with_another_optimizer_is_refused_and_changes_nothing(workspace, finished_run, capsys):
    before = tree_digest(finished_run)
    checkpoint = finished_run / "checkpoints/step-4"
    assert train_cli(workspace, "run.name=switch", f"train.resume_from={checkpoint}", "optim.name=muon") == 2
    err = error_of(capsys.readouterr().err)
    assert "optim.name=adamw" in err and "not muon" in err
    assert tree_digest(finished_run) == before and not (workspace / "runs/switch").exists()


def test_a_target_val_bpb_finishes_the_run_at_the_first_evaluation_that_reaches_it(workspace, finished_run):
    first_bpb = val_curves(finished_run)["val/bpb"][0]
    target = ["train.eval_batches=null", f"train.target_val_bpb={first_bpb + 1.0}"]
    assert train_cli(workspace, "run.name=target", *target) == 0
    report = json.loads((workspace / "runs/target/eval.json").read_text())
    assert report["step"] == 4 and report["val_bits_per_byte"] <= first_bpb + 1.0  # stopped at the first evaluation
    assert (workspace / "runs/target/final/model.safetensors").is_file()  # a finished run: released
