"""Pretraining and finetuning with Accelerate: the loop, optimizer and lr schedule, checkpoints, releases.

Modules, in the order data flows through them:

- ``components``: batch plan, model, tokenizer, loader batches → model inputs, the loss;
- ``optim``: AdamW decay groups and the pure ``lr_at(step, optim, max_steps)``;
- ``loop``: ``run_training(recipe)`` and its small steps (``optimizer_step``, ``val_loss``, ...);
- ``checkpointing``: atomic, rotated ``save_state`` checkpoints with data position and RNGs; exact resume;
- ``run_folder``: run names and folders, ``train.resume_from`` resolution;
- ``metrics``: tokens/s, MFU from a per-GPU peak table, memory;
- ``hf_gpt2.pipeline``: the ``final/`` release (written by ``hf_gpt2.release``), samples, benchmark tasks, eval.json, model
  card, push.
"""

from hf_gpt2.release import generate_samples, save_release
from hf_gpt2.training.loop import LossNotFiniteError, run_training
from hf_gpt2.training.optim import build_optimizer, lr_at, param_groups

__all__ = [
    "LossNotFiniteError",
    "build_optimizer",
    "generate_samples",
    "lr_at",
    "param_groups",
    "run_training",
    "save_release",
]
