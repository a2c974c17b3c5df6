"""Pretraining and finetuning with Accelerate. A leaf: it knows nothing of releases, evaluation or the Hub
(:mod:`hf_gpt2.pipeline` hands in the checkpoint upload and the Hub download as functions).

Modules, in the order a run uses them:

- ``launch``: the processes, the batch plan, the run folder and the checkpoint, decided before anything is written;
- ``distributed``: how the processes agree (the main decides, any one's error is everyone's);
- ``run_folder``: run names and folders, ``train.resume_from`` resolution, creating the folder;
- ``components``: batch plan, model, loader batches → model inputs, the loss;
- ``optim``: AdamW decay groups and the pure ``lr_at(step, optim, max_steps)``;
- ``trainer``: the run's state (``Trainer``) and how it is built, prepared once by Accelerate;
- ``step``: one optimizer step (accumulate, check the loss, clip, lr, step);
- ``loop``: ``train(trainer)``: logging, val loss, checkpoints, SIGTERM; ``restore`` to resume;
- ``checkpointing`` and ``state``: atomic, rotated ``save_state`` checkpoints with data position, RNGs and
  ``train_state.json``; exact resume;
- ``metrics`` and ``speed``: tokens/s, MFU from a per-GPU peak table, memory; backends, compile, prefetching.
"""
