"""Training building blocks: lr schedules, decay groups, MFU table, batch plan, batches, checkpoints, run folders."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hf_gpt2.errors import CheckpointError, RecipeError, RunFolderError
from hf_gpt2.training.optim import build_optimizers, hidden_matrices, lr_at, param_groups, set_lr
from hf_gpt2.training.state import TrainState

CONFIGS = Path(__file__).resolve().parents[1] / "accelerate_configs"


def optim(**kw):
    base = dict(lr=1.0, min_lr=0.1, warmup_steps=10, schedule="cosine", decay_fraction=0.2)
    return SimpleNamespace(**{**base, **kw})


# -- lr_at -----------------------------------------------------------------------------------------------------------


def test_warmup_is_linear_and_reaches_the_peak_on_its_last_step():
    o = optim()
    assert lr_at(0, o, 110) == pytest.approx(0.1)
    assert lr_at(4, o, 110) == pytest.approx(0.5)
    assert lr_at(9, o, 110) == pytest.approx(1.0)


def test_cosine_goes_from_peak_through_the_midpoint_to_min_lr():
    o = optim()
    assert lr_at(10, o, 110) == pytest.approx(1.0)
    assert lr_at(60, o, 110) == pytest.approx(0.55)  # halfway: (peak + min) / 2
    assert lr_at(110, o, 110) == pytest.approx(0.1)
    assert lr_at(500, o, 110) == pytest.approx(0.1)  # past max_steps: stays at min_lr
    values = [lr_at(s, o, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_linear_and_constant():
    assert lr_at(60, optim(schedule="linear"), 110) == pytest.approx(0.55)
    assert lr_at(110, optim(schedule="linear"), 110) == pytest.approx(0.1)
    assert lr_at(10, optim(schedule="constant"), 110) == lr_at(109, optim(schedule="constant"), 110) == 1.0


def test_wsd_holds_the_peak_then_decays_over_the_last_fraction():
    o = optim(schedule="wsd", decay_fraction=0.2)  # 100 steps: stable to 80, decay 80 → 100
    assert lr_at(50, o, 100) == lr_at(79, o, 100) == 1.0
    assert lr_at(80, o, 100) == pytest.approx(1.0)
    assert lr_at(90, o, 100) == pytest.approx(0.55)
    assert lr_at(100, o, 100) == pytest.approx(0.1)


def test_no_warmup_starts_at_the_peak():
    assert lr_at(0, optim(warmup_steps=0), 100) == pytest.approx(1.0)


def test_unknown_schedule_is_a_recipe_error():
    with pytest.raises(RecipeError, match="optim.schedule"):
        lr_at(20, optim(schedule="exp"), 100)


# -- optimizer -------------------------------------------------------------------------------------------------------


def test_decay_only_on_matrices_and_embeddings(tiny_model):
    decay, no_decay = param_groups(tiny_model, 0.1)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight"} <= decayed
    assert all(n.endswith(".bias") or ".ln_" in n for n in undecayed)
    assert not any(n.endswith(".bias") or ".ln_" in n for n in decayed)
    assert len(decayed) + len(undecayed) == len(list(tiny_model.parameters()))  # tied lm_head counted once


def test_frozen_parameters_are_left_out(tiny_model):
    tiny_model.transformer.wpe.weight.requires_grad_(False)
    decay, _ = param_groups(tiny_model, 0.1)
    assert all(p is not tiny_model.transformer.wpe.weight for p in decay["params"])


def adamw_settings(**changes):
    settings = {"name": "adamw", "lr": 3e-4, "beta1": 0.8, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.05,
                "fused": None, "foreach": None, "muon_lr": 0.02, "muon_momentum": 0.95, "muon_weight_decay": 0.0,
                "muon_adjust_lr": "original"}  # fmt: skip
    return SimpleNamespace(**{**settings, **changes})


def test_adamw_settings_and_fused_on_cpu_unless_turned_off(tiny_model):
    (opt,) = build_optimizers(tiny_model, adamw_settings(), torch.device("cpu"))
    assert opt.defaults["betas"] == (0.8, 0.9) and opt.defaults["eps"] == 1e-6 and opt.defaults["lr"] == 3e-4
    assert opt.defaults["fused"]
    (unfused,) = build_optimizers(tiny_model, adamw_settings(fused=False), torch.device("cpu"))
    assert not unfused.defaults["fused"]
    (foreach,) = build_optimizers(tiny_model, adamw_settings(foreach=True), torch.device("cpu"))
    assert foreach.defaults["foreach"] and not foreach.defaults["fused"]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest(tiny_model):
    adamw, muon = build_optimizers(tiny_model, adamw_settings(name="muon"), torch.device("cpu"))
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    in_muon = sorted(names[id(p)] for p in muon.param_groups[0]["params"])
    matrices = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    assert in_muon == sorted(f"transformer.h.{i}.{m}.weight" for i in range(2) for m in matrices)
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight"} <= in_adamw
    assert not in_adamw & set(in_muon)
    assert len(in_adamw) + len(in_muon) == len(list(tiny_model.parameters()))  # every parameter once (tied head)
    assert [p.dim() for p in hidden_matrices(tiny_model)] == [2] * 8
    set_lr(muon, 1.5e-4, adamw_settings(name="muon"))  # half of the AdamW peak → half of muon_lr
    set_lr(adamw, 1.5e-4, adamw_settings(name="muon"))
    assert muon.param_groups[0]["lr"] == pytest.approx(0.01) and adamw.param_groups[0]["lr"] == 1.5e-4


# -- throughput / MFU ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "precision", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100-SXM4-40GB", "no", 156.0),
        ("NVIDIA A10G", "fp16", 70.0),
        ("NVIDIA A10", "bf16", 125.0),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA L40S", "bf16", 362.1),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
        ("NVIDIA GeForce RTX 3090", "fp16", 71.0),
    ],
)
def test_peak_flops_table(name, precision, tflops):
    from hf_gpt2.training.metrics import peak_flops

    assert peak_flops(name, precision) == pytest.approx(tflops * 1e12)


def test_unknown_gpu_and_cpu_have_no_peak():
    from hf_gpt2.training.metrics import device_peak_flops, peak_flops

    assert peak_flops("Some Future Accelerator", "bf16") is None
    assert device_peak_flops(torch.device("cpu"), "bf16") is None


def test_flops_per_token_of_gpt2_124m_is_about_855_mflop():
    from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
    from hf_gpt2.training.metrics import count_flop_params, flops_per_token

    with torch.device("meta"):
        model = HfGPT2ForCausalLM(HfGPT2Config(vocab_size=50257))
    n = count_flop_params(model)
    everything = sum(p.numel() for p in model.parameters())  # the tied head once
    assert n == everything - model.transformer.wpe.weight.numel()
    assert flops_per_token(n, 12, 768, 1024) == pytest.approx(855e6, rel=0.01)


# -- batch plan and batches ------------------------------------------------------------------------------------------


def test_global_batch_in_tokens_becomes_accumulation_steps_per_process_count():
    from hf_gpt2.recipe import recipe_from_dict
    from hf_gpt2.training.components import plan_batches

    recipe = recipe_from_dict(
        {"data": {"block_size": 32}, "train": {"max_steps": 1, "micro_batch_size": 4, "global_batch_tokens": 1024}}
    )
    one, two = plan_batches(recipe.train, 32, 1), plan_batches(recipe.train, 32, 2)
    assert (one.grad_accum_steps, two.grad_accum_steps) == (8, 4)
    assert one.tokens_per_step == two.tokens_per_step == 1024
    with pytest.raises(RecipeError, match="multiple of 384"):
        plan_batches(recipe.train, 32, 3)


def test_token_windows_train_every_position():
    from hf_gpt2.training.components import to_model_batch

    window = torch.arange(2 * 9).view(2, 9)
    batch = to_model_batch(window, torch.device("cpu"))
    assert torch.equal(batch["input_ids"], window[:, :-1]) and torch.equal(batch["targets"], window[:, 1:])


def test_sft_labels_follow_the_hf_convention_and_are_shifted_here():
    from hf_gpt2.training.components import to_model_batch

    ids = torch.tensor([[5, 6, 7, 8]])
    raw = {
        "input_ids": ids,
        "labels": torch.tensor([[-100, -100, 7, 8]]),
        "position_ids": torch.tensor([[0, 1, 0, 1]]),
    }
    batch = to_model_batch(raw, torch.device("cpu"))
    assert set(batch) == {"input_ids", "position_ids", "targets"}
    assert batch["targets"].tolist() == [[-100, 7, 8, -100]]


def test_loss_matches_the_model_own_loss(tiny_model):
    from hf_gpt2.training.components import compute_loss, to_model_batch

    window = torch.randint(0, 96, (2, 9))
    ours = compute_loss(tiny_model, to_model_batch(window, torch.device("cpu")))
    # the model's loss on the full window predicts the same 8 targets per row
    theirs = tiny_model(window, labels=window).loss
    torch.testing.assert_close(ours, theirs)
    tiny_model.train()  # the fused training path gives the same loss
    torch.testing.assert_close(compute_loss(tiny_model, to_model_batch(window, torch.device("cpu"))), theirs)


# -- accelerate configs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["cpu", "cpu_ddp", "single_gpu", "multi_gpu", "fsdp", "deepspeed_zero2", "multi_node"]
)
def test_accelerate_configs_parse_with_accelerate_itself(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.compute_environment.value == "LOCAL_MACHINE"
    if name == "cpu_ddp":
        assert config.num_processes == 2 and config.use_cpu  # torchrun launcher, gloo on CPU
    if name == "fsdp":
        import hf_gpt2.modeling_hf_gpt2 as modeling

        layer = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        assert hasattr(modeling, layer) and config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if name == "deepspeed_zero2":
        assert config.deepspeed_config["zero_stage"] == 2
        assert "gradient_accumulation_steps" not in config.deepspeed_config  # the recipe sets it
    if name == "multi_node":
        assert config.num_machines == 2


# -- checkpoints -----------------------------------------------------------------------------------------------------


@pytest.fixture
def accelerated(tiny_model):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = tiny_model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, opt = accelerator.prepare(model, opt)
    return accelerator, model, opt


def test_checkpoints_are_rotated_and_verified(tmp_path, accelerated):
    from hf_gpt2.training.checkpointing import load_checkpoint, save_checkpoint, verify_checkpoint
    from hf_gpt2.training.state import checkpoint_dirs

    accelerator, model, _ = accelerated
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        save_checkpoint(accelerator, root, TrainState(step=step), {"position": step * 10}, keep_last=2)
    assert [p.name for p in checkpoint_dirs(root)] == ["step-4", "step-6"]
    assert not list(root.glob(".tmp-*"))
    assert verify_checkpoint(root / "step-6").step == 6
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    state, data = load_checkpoint(accelerator, root / "step-6")
    assert state.step == 6 and data == {"position": 60}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.bin", "random_states_0.pkl", "data_state_0.pt"])
def test_a_damaged_checkpoint_file_is_named(tmp_path, accelerated, victim):
    from hf_gpt2.training.checkpointing import save_checkpoint, verify_checkpoint

    accelerator, _, _ = accelerated
    path = save_checkpoint(accelerator, tmp_path, TrainState(step=1), {}, keep_last=1)
    data = bytearray((path / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / victim).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=re.escape(victim)):
        verify_checkpoint(path)


def test_truncated_or_missing_files_are_named(tmp_path, accelerated):
    from hf_gpt2.training.checkpointing import save_checkpoint, verify_checkpoint

    accelerator, _, _ = accelerated
    path = save_checkpoint(accelerator, tmp_path, TrainState(step=1), {}, keep_last=1)
    (path / "optimizer.bin").write_bytes((path / "optimizer.bin").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="optimizer.bin"):
        verify_checkpoint(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        verify_checkpoint(path)
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(path)


def test_a_checkpoint_without_this_process_files_is_refused(tmp_path, accelerated):
    from hf_gpt2.training.checkpointing import check_resumable, load_checkpoint, save_checkpoint, write_manifest

    accelerator, _, _ = accelerated
    path = save_checkpoint(accelerator, tmp_path, TrainState(step=1), {}, keep_last=1)
    (path / "random_states_0.pkl").unlink()  # accelerate's load_state would carry on without the RNG states
    write_manifest(path)
    with pytest.raises(CheckpointError, match="no random_states_0.pkl for process 0"):
        load_checkpoint(accelerator, path)
    with pytest.raises(CheckpointError, match="saved by 1 processes; resume it with 1 processes, not 2"):
        check_resumable(path, TrainState(step=1, num_processes=1), 1, 2)


@pytest.mark.parametrize(
    ("saved", "now", "message"),
    [
        ({}, {}, None),
        ({"reshardable": False}, {}, "it holds per-process state"),
        ({}, {"reshardable": False}, "this run keeps per-process state"),
        ({}, {"tokens_per_step": 1024}, "set train.global_batch_tokens=512"),
    ],
)
def test_the_process_count_may_change_only_with_whole_state_and_the_same_global_batch(tmp_path, saved, now, message):
    from hf_gpt2.training.checkpointing import check_resumable

    for index in range(2):
        (tmp_path / f"random_states_{index}.pkl").touch()
        (tmp_path / f"data_state_{index}.pt").touch()
    train_state = TrainState(step=1, **{"num_processes": 2, "tokens_per_step": 512, "reshardable": True, **saved})
    kwargs = {"tokens_per_step": 512, "reshardable": True, **now}
    if message is None:
        for index in range(4):  # processes 2 and 3 read process 0's (global) data position
            check_resumable(tmp_path, train_state, index, 4, **kwargs)
        check_resumable(tmp_path, train_state, 0, 1, **kwargs)
        (tmp_path / "data_state_0.pt").unlink()
        with pytest.raises(CheckpointError, match="no data_state_0.pt for process 3"):
            check_resumable(tmp_path, train_state, 3, 4, **kwargs)
        return
    refusal = rf"saved by 2 processes; resume it with 2 processes, not 1 \(.*{message}"
    with pytest.raises(CheckpointError, match=refusal):
        check_resumable(tmp_path, train_state, 0, 1, **kwargs)
    check_resumable(tmp_path, train_state, 1, 2, **kwargs)  # the saved count always resumes


def test_a_saved_checkpoint_keeps_no_marker_and_lists_its_per_process_files(tmp_path, accelerated):
    import json

    from hf_gpt2.training.checkpointing import MANIFEST, save_checkpoint

    accelerator, _, _ = accelerated
    path = save_checkpoint(
        accelerator, tmp_path / "new" / "checkpoints", TrainState(step=2), {"position": 5}, keep_last=1
    )
    manifest = json.loads((path / MANIFEST).read_text())
    assert {"random_states_0.pkl", "data_state_0.pt", "train_state.json"} <= set(manifest)
    assert not [p.name for p in path.iterdir() if p.name.startswith(".")]


# -- run folders -----------------------------------------------------------------------------------------------------


def run_recipe(tmp_path, **train):
    from hf_gpt2.recipe import recipe_from_dict

    return recipe_from_dict(
        {"run": {"name": "r", "output_dir": str(tmp_path)}, "train": {"max_steps": 1, "micro_batch_size": 1, **train}}
    )


def test_docker_style_names():
    from hf_gpt2.training.run_folder import new_run_name

    assert re.fullmatch(r"[a-z]+_[a-z]+-\d{8}", new_run_name())


def test_a_fresh_run_refuses_an_existing_folder_and_points_to_resume(tmp_path):
    from hf_gpt2.training.run_folder import resolve_run

    assert resolve_run(run_recipe(tmp_path)) == (tmp_path / "r", None)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "recipe.yaml").write_text("x")
    with pytest.raises(RunFolderError, match="train.resume_from=latest"):
        resolve_run(run_recipe(tmp_path))


def test_resume_latest_picks_the_newest_checkpoint(tmp_path):
    from hf_gpt2.training.run_folder import resolve_run

    for step in (5, 10, 15):
        folder = tmp_path / "r" / "checkpoints" / f"step-{step}"
        folder.mkdir(parents=True)
        (folder / "train_state.json").write_text("{}")
    (tmp_path / "r" / "checkpoints" / ".tmp-step-20").mkdir()  # a save that was interrupted
    run_dir, checkpoint = resolve_run(run_recipe(tmp_path, resume_from="latest"))
    assert run_dir == tmp_path / "r" and checkpoint.name == "step-15"
    _, explicit = resolve_run(run_recipe(tmp_path, resume_from=str(tmp_path / "r" / "checkpoints" / "step-5")))
    assert explicit.name == "step-5"
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_run(run_recipe(tmp_path, resume_from=str(tmp_path / "nowhere")))


def test_resume_latest_of_a_named_run_without_checkpoint_starts_fresh(tmp_path):
    from hf_gpt2.training.run_folder import resolve_run

    assert resolve_run(run_recipe(tmp_path, resume_from="latest")) == (tmp_path / "r", None)


def test_a_checkpoint_folder_this_node_cannot_see_is_an_error_and_hub_downloads_it_here(tmp_path, monkeypatch):
    from hf_gpt2.pipeline import download_checkpoint
    from hf_gpt2.training.run_folder import checkpoint_on_this_node

    seen = tmp_path / "r" / "checkpoints" / "step-5"
    seen.mkdir(parents=True)
    assert checkpoint_on_this_node("latest", seen) == seen
    elsewhere = tmp_path / "main-node" / "r" / "checkpoints" / "step-5"  # the main's disk, not this node's
    for spec in ("latest", str(elsewhere), None):
        with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {elsewhere}, chosen by the main process")):
            checkpoint_on_this_node(spec, elsewhere)
    with pytest.raises(CheckpointError, match="shares, or resume from the Hub with train.resume_from=hub:USER/NAME"):
        checkpoint_on_this_node("latest", elsewhere)
    downloads = []
    monkeypatch.setattr("hf_gpt2.hub.download_checkpoint", lambda spec: downloads.append(spec) or seen)
    assert checkpoint_on_this_node("hub:user/run@checkpoints", elsewhere, download=download_checkpoint) == seen
    assert downloads == ["hub:user/run@checkpoints"]


def test_mfu_is_reported_as_a_fraction():
    from hf_gpt2.training.metrics import flops_per_token

    # 500k tok/s of GPT-2 124M on one H100 in bf16 is about 43% MFU
    assert 500e3 * flops_per_token(123_653_376, 12, 768, 1024) / 989.4e12 == pytest.approx(0.432, abs=0.01)
    assert math.isfinite(flops_per_token(1, 1, 1, 1))


def test_sft_accumulation_weights_every_trained_token_equally(tiny_config):
    """Micro-batches with 3 and 9 trained tokens give the gradient of the token mean, not a mean of means."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from hf_gpt2 import HfGPT2ForCausalLM
    from hf_gpt2.training.components import compute_loss
    from hf_gpt2.training.step import items_per_micro_batch

    torch.manual_seed(0)
    model = HfGPT2ForCausalLM(tiny_config).train()
    ids = torch.randint(0, tiny_config.vocab_size, (2, 1, 12))
    targets = torch.randint(0, tiny_config.vocab_size, (2, 1, 12))
    targets[0, 0, :9] = -100  # 3 trained tokens
    targets[1, 0, :3] = -100  # 9 trained tokens
    micro = [{"input_ids": ids[i], "targets": targets[i]} for i in range(2)]
    trainer = SimpleNamespace(
        recipe=SimpleNamespace(data=SimpleNamespace(format="sft")), accelerator=Accelerator(cpu=True)
    )
    num_items = items_per_micro_batch(trainer, micro)
    assert num_items.item() == 6.0  # 12 trained tokens / (2 micro-batches × 1 process)
    for batch in micro:
        (compute_loss(model, batch, num_items_in_batch=num_items) / 2).backward()  # / 2: what accumulate does
    accumulated = model.transformer.wte.weight.grad.clone()
    model.zero_grad()
    compute_loss(model, {"input_ids": ids.view(2, 12), "targets": targets.view(2, 12)}).backward()
    torch.testing.assert_close(accumulated, model.transformer.wte.weight.grad, rtol=1e-4, atol=1e-7)
    trainer.recipe.data.format = "text"
    assert items_per_micro_batch(trainer, micro) is None


def test_a_node_without_the_release_folder_evaluates_the_same_weights_from_memory(tiny_model, tmp_path):
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    from hf_gpt2.release import load_release

    PartialState(cpu=True)  # accelerate's logger needs it, as in a run
    tiny_model.train()
    accelerator = SimpleNamespace(
        device=torch.device("cpu"),
        distributed_type=DistributedType.MULTI_GPU,
        process_index=8,
        unwrap_model=lambda model, keep_torch_compile: model,
    )
    trainer = SimpleNamespace(accelerator=accelerator, model=tiny_model, recipe=SimpleNamespace())
    trainer.recipe.train = SimpleNamespace(lora=SimpleNamespace(merge=True))
    model = load_release(tmp_path / "final", trainer)  # the main node wrote final/ on its own disk
    assert not model.training
    assert model is tiny_model  # the trained weights themselves (no LoRA to merge)
    accelerator.distributed_type = DistributedType.FSDP
    with pytest.raises(RunFolderError, match=r"process 8 cannot see .*final.*shares"):
        load_release(tmp_path / "final", trainer)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero3_is_refused_before_any_work_and_zero2_is_not(stage):
    from hf_gpt2.training.components import check_sharding_support

    accelerator = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=stage)))
    if stage == 2:
        check_sharding_support(accelerator)
        check_sharding_support(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None)))
        return
    with pytest.raises(RecipeError, match=r"ZeRO-3 is not supported.*accelerate_configs/fsdp.yaml"):
        check_sharding_support(accelerator)
