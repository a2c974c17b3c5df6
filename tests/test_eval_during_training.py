"""``eval.every``: the benchmark tasks during training, on a slice, without changing training.

A tiny run evaluates a local ``val_loss`` task (the run's own shards) every 2 steps on its first 3 windows: the
scores go to TensorBoard under ``eval_first3/`` at those steps (never at the last one, which the evaluation after
training scores under ``eval/``), into the checkpoints and into eval.json's ``history``; a run stopped and resumed
keeps the earlier points; and its weights are those of a run without the evaluations (dropout on). The card's panels
are checked from their inputs and outputs (points, reference lines, titles), not from pixels.
"""

from __future__ import annotations

import json
import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_training_e2e import train_cli, weights, workspace  # noqa: F401  (workspace: a fixture)

from hf_gpt2.eval_report import EvalPoint, EvalReport, EvalReportError
from hf_gpt2.training.state import TrainState

BASE = {"train": {"max_steps": 8, "micro_batch_size": 2}}
DROPOUT = ["model.resid_pdrop=0.1", "model.embd_pdrop=0.1", "model.attn_pdrop=0.1"]


def _shards(workspace):  # noqa: F811
    from hf_gpt2 import cli

    assert cli.main(["prepare", str(workspace / "tiny.yaml")]) == 0
    return next(p.parent for p in (workspace / "cache").glob("*/meta.json"))


def _scalars(run, tag: str) -> list[tuple[int, float]]:
    from hf_gpt2.hub.curves import read_curves

    return read_curves(run / "tb").series.get(tag, [])


@pytest.mark.slow
def test_a_run_evaluates_every_n_steps_resumes_its_history_and_trains_the_same_weights(
    workspace,  # noqa: F811
    monkeypatch,
    caplog,
):
    import hf_gpt2.training.loop as loop

    shards = _shards(workspace)
    tasks = ["eval.tasks=[val_loss]", f"eval.data.val_loss={shards}", "eval.every=2", "eval.every_limit=3"]
    common = [*DROPOUT, "train.eval_every=4", "sample.prompts=[]"]
    assert train_cli(workspace, "run.name=plain", *common) == 0

    step = loop.optimizer_step

    def stop_after_step_5(trainer):  # as SIGTERM during step 5: the loop saves step 5 and stops
        out = step(trainer)
        if trainer.step == 4:
            trainer.stop_requested = True
        return out

    monkeypatch.setattr(loop, "optimizer_step", stop_after_step_5)
    caplog.set_level(logging.INFO)
    assert train_cli(workspace, "run.name=evaluated", *common, *tasks) == 0
    run = workspace / "runs/evaluated"
    assert not (run / "final").exists()
    saved = TrainState.read(run / "checkpoints/step-5")
    assert [p["step"] for p in saved.eval_history] == [2, 4]
    assert "step 2 | eval.tasks on first 3 items per task: val_loss loss" in caplog.text

    monkeypatch.setattr(loop, "optimizer_step", step)
    assert train_cli(workspace, "run.name=evaluated", *common, *tasks, "train.resume_from=latest") == 0

    a, b = weights(workspace / "runs/plain/final"), weights(run / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the evaluations changed no step

    report = EvalReport.read(run / "eval.json")
    assert report.val_loss is not None and report.step == 8  # the val_loss task does not clash with the field
    assert [(p.step, p.task, p.limit) for p in report.history] == [(s, "val_loss", 3) for s in (2, 4, 6)]
    assert [p.tokens_seen for p in report.history] == [s * report.tokens_seen // 8 for s in (2, 4, 6)]
    windows = report.history[0].n  # val_loss counts tokens: the first 3 windows' worth
    assert all(p.n == windows for p in report.history)
    assert report.tasks["val_loss"]["n"] > 10 * windows  # after training: every window, not the slice
    during = _scalars(run, "eval_first3/val_loss/loss")
    assert [s for s, _ in during] == [2, 4, 6]
    assert [v for _, v in during] == pytest.approx([p.metrics["loss"] for p in report.history], rel=1e-6)
    assert [s for s, _ in _scalars(run, "eval/val_loss/loss")] == [8]
    assert not _scalars(workspace / "runs/plain", "eval_first3/val_loss/loss")

    card = (run / "final/README.md").read_text()
    assert (run / "final/eval_curves.png").is_file() and "![Benchmarks during training](eval_curves.png)" in card
    assert "the first 3 items" in card and "steps 2, 4, 6" in card
    assert not (workspace / "runs/plain/final/eval_curves.png").exists()


def test_an_evaluation_during_training_leaves_the_random_state_and_train_mode_as_they_were():
    from hf_gpt2.training.loop import evaluate_tasks

    model = torch.nn.Dropout(0.5).train()
    seen = {}

    def on_eval(trainer):
        seen["training"] = trainer.model.training
        torch.rand(3), random.random(), np.random.rand()  # draws that would shift every later dropout mask
        torch.manual_seed(0)  # as a loader that synchronizes the seeds across processes
        return [{"step": trainer.step}]

    trainer = SimpleNamespace(
        model=model, on_eval=on_eval, eval_history=[], step=3, accelerator=SimpleNamespace(device=torch.device("cpu"))
    )
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    expected = (torch.rand(2), random.random(), np.random.rand())
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    assert evaluate_tasks(trainer) == [{"step": 3}]
    assert seen["training"] is False and model.training
    assert trainer.eval_history == [{"step": 3}]
    after = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]


# -- the recipe ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval.every=-1"], "eval.every must be >= 0 (0: evaluate only after training), got -1"),
        (["eval.every=2"], "eval.every=2 evaluates eval.tasks during training, but eval.tasks is empty"),
        (["eval.tasks=[hellaswag]", "eval.every_limit=0"], "eval.every_limit must be >= 1 or null (all), got 0"),
        (["eval.tasks=[hellaswag]", "eval.every=8"], "eval.every=8 is not below train.max_steps=8"),
    ],
)
def test_bad_eval_every_settings_are_refused_with_the_fix(overrides, message):
    from hf_gpt2.errors import RecipeError
    from hf_gpt2.recipe import recipe_from_dict

    with pytest.raises(RecipeError) as err:
        recipe_from_dict(BASE, overrides)
    assert message in str(err.value)


def test_eval_every_is_refused_where_the_model_is_sharded():
    from accelerate import DistributedType

    from hf_gpt2.errors import RecipeError
    from hf_gpt2.pipeline import check_in_training_eval
    from hf_gpt2.recipe import recipe_from_dict

    recipe = recipe_from_dict(BASE, ["eval.tasks=[hellaswag]", "eval.every=2"])
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(deepspeed_plugin=None))
    with pytest.raises(RecipeError, match="eval.every=2 evaluates the training model, which FSDP shards"):
        check_in_training_eval(recipe, fsdp)
    ddp = SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, state=SimpleNamespace(deepspeed_plugin=None))
    check_in_training_eval(recipe, ddp)


# -- eval.json -------------------------------------------------------------------------------------------------------


def _point(step: int, task: str = "hellaswag", **metrics: float) -> EvalPoint:
    return EvalPoint(step=step, tokens_seen=step * 1000, task=task, limit=200, n=200, metrics=metrics)


def test_eval_json_keeps_the_history_and_reads_files_without_it(tmp_path):
    history = [_point(10, acc=0.25, acc_norm=0.26), _point(20, acc=0.27, acc_norm=0.28)]
    report = EvalReport(val_loss=3.0, step=30, tasks={"hellaswag": {"acc": 0.3, "n": 10042.0}}, history=history)
    data = json.loads(report.write(tmp_path / "eval.json").read_text())
    assert data["history"][1] == {"step": 20, "tokens_seen": 20000, "task": "hellaswag", "limit": 200, "n": 200,
                                  "metrics": {"acc": 0.27, "acc_norm": 0.28}}  # fmt: skip
    assert "history" not in EvalReport.read(tmp_path / "eval.json").tasks
    assert EvalReport.read(tmp_path / "eval.json") == report
    clash = EvalReport(val_loss=3.0, tasks={"val_loss": {"loss": 3.1, "n": 96.0}})  # a task named as a field
    assert EvalReport.from_json(json.loads(json.dumps(clash.to_json()))) == clash
    old = EvalReport.from_json({"val_loss": 3.0, "hellaswag": {"acc": 0.3, "n": 10.0}})
    assert old.history == [] and "history" not in old.to_json()
    with pytest.raises(EvalReportError, match=r"history\[0\]: .* should be an object with exactly the keys"):
        EvalReport.from_json({"history": [{"step": 1}]})
    with pytest.raises(EvalReportError, match="history should be a list"):
        EvalReport.from_json({"history": {"step": 1}})


def test_a_train_state_without_history_still_loads_and_a_bad_one_is_named():
    from hf_gpt2.errors import CheckpointError

    assert TrainState.from_json({"step": 4}).eval_history == []
    with pytest.raises(CheckpointError, match="eval_history should be a list of objects with an integer 'step'"):
        TrainState.from_json({"step": 4, "eval_history": [{"task": "hellaswag"}]})


# -- the card --------------------------------------------------------------------------------------------------------


def test_the_card_panels_show_the_slice_beside_gpt2s_numbers_on_the_whole_task(tmp_path):
    from hf_gpt2.evaluation import LM_EVAL_GPT2, PAPER_124M
    from hf_gpt2.hub.curves import eval_panels, plot_eval_panels

    report = EvalReport(
        step=30,
        tasks={"hellaswag": {"acc": 0.3, "acc_norm": 0.31, "n": 10042.0}},
        history=[
            _point(20, acc=0.27, acc_norm=0.28),
            _point(10, acc=0.25, acc_norm=0.26),
            _point(10, "lambada_openai_paper", acc=0.1, ppl=900.0),
        ],
    )
    panels = eval_panels(report)
    lambada = "lambada_openai_paper"
    assert [(p.task, p.metric) for p in panels] == [
        ("hellaswag", "acc"), ("hellaswag", "acc_norm"), (lambada, "acc"), (lambada, "ppl")
    ]  # fmt: skip
    norm = panels[1]
    assert norm.points == [(10, 0.26), (20, 0.28)]
    assert norm.final == (30, 0.31, 10042)
    assert norm.references == [("GPT-2 124M, lm-eval (whole task)", LM_EVAL_GPT2["hellaswag"]["acc_norm"])]
    assert norm.title == "hellaswag acc_norm during training (first 200 items)"
    paper = panels[3]
    assert paper.final is None  # not evaluated after training
    assert paper.references == [("GPT-2 124M, paper (whole task)", PAPER_124M["lambada_openai_paper"]["ppl"])]

    assert plot_eval_panels(panels, tmp_path / "eval_curves.png").stat().st_size > 0
    assert plot_eval_panels([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    assert eval_panels(EvalReport(step=30, tasks={"hellaswag": {"acc": 0.3}})) == []


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_share_the_evaluation_and_train_the_same_weights_as_without_it(workspace):  # noqa: F811
    from test_training_e2e import accelerate_launch

    shards = _shards(workspace)
    recipe = str(workspace / "tiny.yaml")
    common = [*DROPOUT, "train.eval_every=4", "sample.prompts=[]", "train.save_every=0"]
    tasks = ["eval.tasks=[val_loss]", f"eval.data.val_loss={shards}", "eval.every=3", "eval.every_limit=5"]
    plain = accelerate_launch("cpu_ddp.yaml", "train.py", recipe, "run.name=ddp-plain", *common)
    assert plain.returncode == 0, plain.stderr[-3000:]
    evaluated = accelerate_launch("cpu_ddp.yaml", "train.py", recipe, "run.name=ddp-evaluated", *common, *tasks)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "2 process(es)" in evaluated.stderr
    a, b = weights(workspace / "runs/ddp-plain/final"), weights(workspace / "runs/ddp-evaluated/final")
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = EvalReport.read(workspace / "runs/ddp-evaluated/eval.json").history
    assert [(p.step, p.limit) for p in history] == [(3, 5), (6, 5)]
    block = 32  # the tiny recipe's data.block_size: each val window scores that many tokens
    assert all(p.n == 5 * block for p in history)  # the 5 windows split over the processes, gathered once each
    assert evaluated.stderr.count("eval.tasks on first 5 items per task") == 2  # one line per evaluation


def test_the_cards_val_loss_fallback_is_the_val_split_not_a_slice():
    from hf_gpt2.hub.curves import Curves
    from hf_gpt2.hub.summary import RunSummary, _facts

    series = {"eval_first3/val_loss/loss": [(2, 9.0), (6, 8.0)], "val/loss": [(4, 7.0), (8, 5.0)]}
    facts = _facts(RunSummary(curves=Curves(series=series)), None)  # an eval.json without val_loss
    assert facts["final_val_loss"] == 5.0
