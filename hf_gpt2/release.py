"""The release: a `save_pretrained` folder that `from_pretrained` loads, plus samples from it.

A release is what people download, and it holds what stock GPT-2 ships, with stock GPT-2's defaults:
``model.safetensors`` and ``config.json`` (with ``auto_map`` for hf_gpt2 models, and GPT-2's ``n_ctx`` in the stock
export), the copied modeling files, a ``generation_config.json`` with the model's token ids only (so a client decodes
greedily to its own ``max_length`` / ``max_new_tokens``, as with stock GPT-2; the recipe's ``sample`` settings drive
the end-of-run samples, not the release), the tokenizer (``tokenizer.json`` plus GPT-2's ``vocab.json`` /
``merges.txt`` for a BPE, EOS as the pad token for batched pipelines, the model's context as ``model_max_length``) and
the resolved ``recipe.yaml``. Every file gets the mode a new file gets here (0644 under umask 022). It is not resume
state (that is ``accelerator.save_state``, see checkpointing.py).
:func:`write_release` writes a trained run's ``final/``; :func:`load_release` loads it back for evaluation.
"""

from __future__ import annotations

import copy
import logging
import os
import stat
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType
from tokenizers.models import BPE
from transformers import AutoModelForCausalLM, GenerationConfig

from hf_gpt2.convert import to_gpt2
from hf_gpt2.errors import RunFolderError
from hf_gpt2.finetune.lora import ADAPTER_DIR, merge_for_release, save_adapter
from hf_gpt2.folders import staged_folder
from hf_gpt2.generation import ContextOverflowError, check_fits_context, context_limit, generate_text, prompt_length
from hf_gpt2.recipe import Recipe, SampleConfig, dump_recipe
from hf_gpt2.training.trainer import Trainer

logger = logging.getLogger(__name__)


_LOAD_TIME_TOKENIZER_KEYS = ("is_local", "local_files_only")


def save_release(
    model: Any,
    tokenizer: Any,
    directory: str | os.PathLike,
    recipe: Recipe | None = None,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a release folder atomically (a temporary folder, then a rename); replaces an older release there.

    Call it on the main process with the unwrapped model (``accelerator.unwrap_model(model)``); under FSDP/DeepSpeed
    pass ``state_dict=accelerator.get_state_dict(model)`` gathered on every process.

    Args:
        model: a ``PreTrainedModel`` (hf_gpt2 models get ``auto_map`` and their modeling files).
        tokenizer: saved beside the model (may be None), see :func:`save_tokenizer_files`.
        directory: the release folder, e.g. ``runs/<name>/final``.
        recipe: the resolved recipe, written as ``recipe.yaml``.
        state_dict: full weights to save instead of ``model.state_dict()``.

    Returns:
        The release folder.
    """
    directory = Path(directory)
    with staged_folder(directory) as stage:
        model.save_pretrained(stage.path, state_dict=state_dict)
        write_stock_generation_config(model, stage.path)
        if tokenizer is not None:
            save_tokenizer_files(tokenizer, stage.path, model_max_length=context_length(model.config))
        if recipe is not None:
            dump_recipe(recipe, stage.path / "recipe.yaml")
        match_file_modes(stage.path)
    if not stage.placed:
        raise RunFolderError(f"{directory} was written by another process at the same time; write it once")
    logger.info("release written to %s", directory)
    return directory


def save_stock_gpt2_export(model: Any, tokenizer: Any, directory: str | os.PathLike) -> Path | None:
    """Write the model as a stock transformers ``GPT2LMHeadModel`` folder (no custom code needed to load it).

    Its ``config.json`` also carries ``n_ctx`` (= ``n_positions``) as OpenAI's GPT-2 configs do: llama.cpp's GGUF
    converter reads it. Returns None (and logs why) when the model is not an hf_gpt2 model.
    """
    if getattr(model.config, "model_type", None) != "hf_gpt2":
        logger.info("the model is a %s, not hf_gpt2; skipping the stock GPT-2 export", model.config.model_type)
        return None
    stock = to_gpt2(model)
    stock.config.n_ctx = stock.config.n_positions
    return save_release(stock, tokenizer, directory)


def check_stock_export(model: Any) -> None:
    """Convert a weightless copy of ``model`` (on the meta device) to stock GPT-2, as the end of a run will.

    Called before training, so that a model the stock export cannot represent fails now and not after the run.

    Raises:
        ConversionError: naming what does not convert.
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "hf_gpt2":
        return
    with torch.device("meta"):
        to_gpt2(AutoModelForCausalLM.from_config(copy.deepcopy(config)))


def context_length(config: Any) -> int | None:
    """The longest sequence a model takes: ``n_positions`` (GPT-2) or ``max_position_embeddings``; None if neither."""
    found = context_limit(config)
    return found[0] if found else None


def write_stock_generation_config(model: Any, directory: Path) -> None:
    """Write the ``generation_config.json`` that stock ``save_pretrained`` writes for a new model: token ids only.

    Sampling settings or a length in a release override every client's own (a pipeline's greedy default, lm-eval's
    ``max_gen_toks``, a caller's ``max_length``), so none are written, and a model loaded from an older release that
    carried them does not pass them on.
    """
    GenerationConfig.from_model_config(model.config).save_pretrained(directory)


def save_tokenizer_files(tokenizer: Any, directory: Path, *, model_max_length: int | None = None) -> list[str]:
    """Save ``tokenizer`` as clients of a GPT-2 folder expect it; the caller's tokenizer object is left unchanged.

    Besides ``tokenizer.json`` and ``tokenizer_config.json``:

    - a BPE also gets ``vocab.json`` and ``merges.txt`` (for OpenAI's BPE, byte-identical to OpenAI's files), which
      tokenizers built from vocabulary files need (transformers 4's slow ``GPT2Tokenizer``,
      ``tokenizers.ByteLevelBPETokenizer.from_file``, other runtimes);
    - a tokenizer without a pad token gets its EOS as the pad token, as GPT-2 users set it by hand: batched
      ``pipeline(...)`` and ``tokenizer(texts, padding=True)`` refuse to run without one, and the attention mask keeps
      the padding out of the logits that count;
    - ``model_max_length`` becomes the model's context, so truncation stops where the model does;
    - where the tokenizer was loaded from (``is_local``, ``local_files_only``, which transformers records when it
      loads one) is left out, and so are the truncation and padding that an earlier call such as
      ``tokenizer(texts, truncation=True, max_length=...)`` leaves set on the fast backend (saved, they would truncate
      every later encoding of the release's tokenizer).

    Returns:
        The names of the files written.
    """
    saved = copy.deepcopy(tokenizer)
    backend = getattr(saved, "backend_tokenizer", None)
    if backend is not None:  # a call with truncation/padding leaves them set on the backend: not the tokenizer's own
        backend.no_truncation()
        backend.no_padding()
    for where_it_was_loaded_from in _LOAD_TIME_TOKENIZER_KEYS:
        saved.init_kwargs.pop(where_it_was_loaded_from, None)
    if saved.pad_token is None and saved.eos_token is not None:
        saved.pad_token = saved.eos_token
    if model_max_length is not None:
        saved.model_max_length = model_max_length
    files = [Path(name).name for name in saved.save_pretrained(str(directory))]
    return files + _save_bpe_vocabulary(saved, directory)


def _save_bpe_vocabulary(tokenizer: Any, directory: Path) -> list[str]:
    """``vocab.json`` + ``merges.txt`` of a tokenizers BPE model (nothing for WordPiece, Unigram, ...)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not isinstance(backend.model, BPE):
        return []
    return sorted(Path(name).name for name in backend.model.save(str(directory)))


def match_file_modes(folder: Path) -> None:
    """Give every file under ``folder`` the permissions a newly created file gets here (the umask's).

    safetensors writes ``model.safetensors`` with mode 0600, while the other files of a release get 0644 under
    umask 022: on a shared disk others could read the config but not the weights.
    """
    probe = folder / ".mode-probe"
    probe.touch()
    mode = stat.S_IMODE(probe.stat().st_mode)
    probe.unlink()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)


@torch.no_grad()
def generate_samples(model: Any, tokenizer: Any, sample: SampleConfig, *, seed: int = 0) -> list[dict[str, str]]:
    """Sample continuations of ``sample.prompts`` (an empty prompt starts from ``<|endoftext|>``).

    Args:
        model: an unwrapped causal LM on its device.
        tokenizer: its tokenizer.
        sample: the recipe's ``sample`` section (prompts, max_new_tokens, temperature, top_k, top_p, num_samples).
        seed: seeds torch's generator first, so that the samples are reproducible.

    Returns:
        ``[{"prompt": ..., "text": ...}, ...]``, ``num_samples`` per prompt.

    Raises:
        ContextOverflowError: a prompt plus ``sample.max_new_tokens`` does not fit in the model's context (the
            pipeline checks this before training, :func:`check_samples_fit`).
    """
    if not sample.max_new_tokens or not sample.num_samples:
        return []
    check_samples_fit(sample, tokenizer, model.config)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    results = []
    settings = {
        "max_new_tokens": sample.max_new_tokens,
        "temperature": sample.temperature,
        "top_k": sample.top_k,
        "top_p": sample.top_p,
        "num_return_sequences": sample.num_samples,
    }
    for prompt in sample.prompts:
        texts = generate_text(model, tokenizer, prompt, length_setting="sample.max_new_tokens", **settings)
        results.extend({"prompt": prompt, "text": text} for text in texts)
    model.train(was_training)
    return results


def check_samples_fit(sample: SampleConfig, tokenizer: Any, config: Any) -> None:
    """Refuse ``sample.prompts`` that, with ``sample.max_new_tokens``, do not fit in the model's context.

    The pipeline calls it before training, so the end-of-run samples cannot fail for their length.

    Raises:
        ContextOverflowError: naming the prompt, the numbers and what to lower.
    """
    if not sample.max_new_tokens or not sample.num_samples:
        return
    for i, prompt in enumerate(sample.prompts):
        try:
            check_fits_context(
                config, prompt_length(tokenizer, prompt), sample.max_new_tokens, length_setting="sample.max_new_tokens"
            )
        except ContextOverflowError as err:
            raise ContextOverflowError(f"sample.prompts[{i}]: {err}") from None


def write_release(trainer: Trainer) -> Path:
    """Gather the weights (sharded under FSDP/DeepSpeed) and write ``<run>/final`` on the main process."""
    accelerator, model = trainer.accelerator, trainer.model
    accelerator.wait_for_everyone()
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    state_dict = accelerator.get_state_dict(model) if sharded else None
    final = trainer.run_dir / "final"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
        lora = trainer.recipe.train.lora
        if lora.r:  # LoRA: ship plain weights (merged, or the base with the adapter beside it)
            save_release(merge_for_release(unwrapped, merge=lora.merge), trainer.tokenizer, final, trainer.recipe)
            if not lora.merge:
                save_adapter(unwrapped, final / ADAPTER_DIR, trainer.recipe.model.init)
                match_file_modes(final / ADAPTER_DIR)
        else:
            save_release(unwrapped, trainer.tokenizer, final, trainer.recipe, state_dict=state_dict)
    accelerator.wait_for_everyone()
    return final


def load_release(final: Path, trainer: Trainer) -> Any:
    """Load the release folder back (as a user would) onto this process's device.

    On a node that does not share the main node's filesystem (multi-node without a shared disk) ``final/`` is not
    there; such a process evaluates the same weights from memory instead (the trained model, merged like the release
    when LoRA is on). That needs the whole model in memory, so FSDP/DeepSpeed across such nodes is refused.
    """
    accelerator = trainer.accelerator
    if (final / "config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(final).to(accelerator.device).eval()
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise RunFolderError(
            f"process {accelerator.process_index} cannot see {final}, which the main process wrote, and its "
            f"{accelerator.distributed_type.value} shard is not the whole model; put run.output_dir on a "
            "filesystem every node shares"
        )
    logger.info("%s is on the main node's disk: evaluating the same weights from memory here", final)
    unwrapped = accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    return merge_for_release(unwrapped, merge=trainer.recipe.train.lora.merge).eval()
