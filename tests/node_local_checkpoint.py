"""Two CPU processes save and resume a checkpoint as two nodes would; run by tests/test_multinode.py.

``accelerate launch --config_file accelerate_configs/cpu_ddp.yaml tests/node_local_checkpoint.py MODE BASE``

Every process works in its own folder ``BASE/node<rank>`` (MODE ``node-local``: each node's disk) or in ``BASE/shared``
(MODE ``shared``: one filesystem), and passes the same relative ``run/checkpoints`` root, as the training loop does
with a relative ``run.output_dir``. So a path decided by the main process names another folder on the other process,
as it would on a node that does not share the main's disk. Any failed check raises, and the launch exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import torch
from accelerate import Accelerator

from hf_gpt2 import HfGPT2Config, HfGPT2ForCausalLM
from hf_gpt2.errors import CheckpointError
from hf_gpt2.pipeline import download_checkpoint
from hf_gpt2.training.checkpointing import MANIFEST, load_checkpoint, save_checkpoint
from hf_gpt2.training.distributed import find_checkpoint_everywhere
from hf_gpt2.training.loop import saved_at_this_step
from hf_gpt2.training.state import TrainState

STEP = 3
ROOT = Path("run/checkpoints")


def prepared(accelerator: Accelerator) -> torch.nn.Module:
    torch.manual_seed(0)
    config = HfGPT2Config(
        vocab_size=64, bos_token_id=0, eos_token_id=0, n_positions=16, n_embd=16, n_layer=1, n_head=2
    )
    model = HfGPT2ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, _ = accelerator.prepare(model, optimizer)
    return model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> tuple[float, float, list[float]]:
    """The next numbers of the python, numpy and torch generators (what a resume must reproduce)."""
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def check_main_folder(folder: Path, num_processes: int) -> None:
    """The main's checkpoint holds every process's files, listed in its manifest, and nothing temporary."""
    manifest = json.loads((folder / MANIFEST).read_text())
    for rank in range(num_processes):
        for name in (f"random_states_{rank}.pkl", f"data_state_{rank}.pt"):
            assert (folder / name).is_file() and name in manifest, (name, sorted(manifest))
    assert not any(name.startswith(".") for name in manifest), sorted(manifest)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name], list(folder.parent.iterdir())


def main(mode: str, base: Path) -> None:
    accelerator = Accelerator(cpu=True)
    rank, shared = accelerator.process_index, mode == "shared"
    here = base / ("shared" if shared else f"node{rank}")
    here.mkdir(parents=True, exist_ok=True)
    os.chdir(here)
    model = prepared(accelerator)
    seed_everything(100 + rank)
    data_state = {"position": 1000 + rank}
    saved = save_checkpoint(accelerator, ROOT, TrainState(step=STEP), data_state, keep_last=1)
    expected = draws()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    main_folder = base / ("shared" if shared else "node0") / ROOT / f"step-{STEP}"
    if rank == 0 or shared:
        check_main_folder(main_folder, accelerator.num_processes)
    else:
        assert not any(here.iterdir()), sorted(here.rglob("*"))  # the stray folder on "node 1" is gone
    # After SIGTERM, every process must agree whether this step is saved (saving again takes them all).
    assert saved_at_this_step(SimpleNamespace(accelerator=accelerator, checkpoint_root=ROOT, step=STEP))
    accelerator.wait_for_everyone()

    # A local path that a process does not see is one error on every process; hub: downloads it on that node.
    if shared:
        assert find_checkpoint_everywhere(accelerator.state, "latest", saved) == saved
    else:
        try:
            find_checkpoint_everywhere(accelerator.state, "latest", saved)
            raise AssertionError("a checkpoint folder that process 1 cannot see was accepted")
        except CheckpointError as err:
            assert "not on this node" in str(err) and "hub:USER/NAME" in str(err), err
    download = here / "hub-cache" / f"step-{STEP}"
    with mock.patch("hf_gpt2.hub.download_checkpoint", lambda spec: shutil.copytree(main_folder, download)):
        found = find_checkpoint_everywhere(accelerator.state, "hub:user/run", saved, download=download_checkpoint)
    assert found == (saved if rank == 0 or shared else download), found

    seed_everything(999)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    train_state, restored = load_checkpoint(accelerator, found)
    assert train_state.step == STEP and restored == data_state, (train_state, restored)
    assert draws() == expected
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (base / f"{mode}.ok").write_text("ok")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(sys.argv[1], Path(sys.argv[2]).resolve())
