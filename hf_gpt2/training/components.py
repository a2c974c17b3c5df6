"""What the loop is built from: the batch plan, the model, loader batches → model inputs, and the loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import PreTrainedConfig, PreTrainedTokenizerBase

from hf_gpt2.configuration_hf_gpt2 import HfGPT2Config
from hf_gpt2.errors import RecipeError
from hf_gpt2.finetune import apply_trainable
from hf_gpt2.finetune.init_model import load_init_model
from hf_gpt2.finetune.lora import apply_lora
from hf_gpt2.modeling_hf_gpt2 import HfGPT2ForCausalLM
from hf_gpt2.recipe import Recipe, TrainConfig, model_config_kwargs

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, kw_only=True)
class BatchPlan:
    """How one optimizer step is made of micro-batches across processes."""

    micro_batch_size: int
    block_size: int
    num_processes: int
    grad_accum_steps: int

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step, summed over processes and accumulation steps (the global batch)."""
        return self.micro_batch_size * self.block_size * self.num_processes * self.grad_accum_steps


def plan_batches(train: TrainConfig, block_size: int, num_processes: int) -> BatchPlan:
    """Turn ``train.global_batch_tokens`` or ``train.grad_accum_steps`` into accumulation steps for this launch.

    Raises:
        RecipeError: the global batch is not a multiple of micro_batch × block × processes.
    """
    return BatchPlan(
        micro_batch_size=train.micro_batch_size,
        block_size=block_size,
        num_processes=num_processes,
        grad_accum_steps=train.accum_steps(block_size, num_processes),
    )


def build_model(recipe: Recipe, vocab_size: int, tokenizer: PreTrainedTokenizerBase) -> torch.nn.Module:
    """Build the model from ``model.init``: a fresh HfGPT2ForCausalLM (``scratch``), or hf_gpt2 / GPT-2 weights.

    Args:
        recipe: the resolved recipe.
        vocab_size: the data's vocabulary size; the model's must be at least this.
        tokenizer: the run's tokenizer; a fresh model takes its BOS/EOS ids unless the recipe sets them.

    Raises:
        RecipeError: an impossible shape (n_embd not divisible by n_head, vocabulary or context too small), or
            an EOS id other than the one the data ends its documents with.
    """
    section = recipe.model
    if section.init == "scratch":
        try:
            config = HfGPT2Config(**model_config_kwargs(recipe, tokenizer))
        except (ValueError, TypeError) as err:
            raise RecipeError(f"model: {err}") from None
        check_shapes(config, recipe, vocab_size)
        check_eos(config, tokenizer)
        model = HfGPT2ForCausalLM(config)
    else:  # a Hub id, a stock GPT-2 or hf_gpt2 folder, or a training checkpoint (checkpoints/step-N)
        model = load_init_model(section.init).train()
        check_shapes(model.config, recipe, vocab_size)
    model.set_attn_implementation(section.attn_implementation)
    dtype = _DTYPES.get(section.dtype)
    if dtype is None:
        raise RecipeError(f"model.dtype={section.dtype!r} is not one of {', '.join(_DTYPES)}")
    return model.to(dtype)


def check_shapes(config: PreTrainedConfig, recipe: Recipe, vocab_size: int) -> None:
    """Refuse shapes that cannot train: vocabulary smaller than the data's, context shorter than data.block_size."""
    problems = []
    if config.vocab_size < vocab_size:
        problems.append(
            f"model.vocab_size={config.vocab_size} is smaller than the tokenizer's vocabulary ({vocab_size}); "
            f"use at least {vocab_size}"
        )
    if recipe.data.block_size > config.n_positions:
        problems.append(
            f"data.block_size={recipe.data.block_size} exceeds model.n_positions={config.n_positions}; "
            f"lower data.block_size or raise model.n_positions"
        )
    if problems:
        raise RecipeError("; ".join(problems))


def check_sharding_support(accelerator: Accelerator) -> None:
    """Refuse DeepSpeed ZeRO-3 before any work starts: the tied embedding / LM head (one parameter used by two
    modules, one of them through the chunked loss) has not been verified under ZeRO-3's partitioning.

    Raises:
        RecipeError: naming the accelerate configs that shard the same way and work.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and getattr(plugin, "zero_stage", None) == 3:
        raise RecipeError(
            "DeepSpeed ZeRO-3 is not supported (the tied embedding / LM head is not verified under its "
            "partitioning); use accelerate_configs/fsdp.yaml (FSDP2 shards parameters, gradients and optimizer state "
            "like ZeRO-3) or accelerate_configs/deepspeed_zero2.yaml"
        )


def check_eos(config: PreTrainedConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse a fresh model whose EOS id is not the tokenizer's: generation would never stop where documents end."""
    if config.eos_token_id != tokenizer.eos_token_id:
        raise RecipeError(
            f"model.eos_token_id={config.eos_token_id} is not the tokenizer's EOS id {tokenizer.eos_token_id} "
            f"({tokenizer.eos_token!r}), which prepare writes after every document; leave model.eos_token_id null "
            "to take the tokenizer's"
        )


def apply_finetune_hooks(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """Let ``hf_gpt2.finetune`` add LoRA adapters and freeze parameters; the loop stays agnostic."""
    if recipe.train.lora.r:
        return apply_lora(model, recipe)  # also applies train.trainable on top of the adapters
    return apply_trainable(model, recipe)


def to_model_batch(raw: torch.Tensor | dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Turn a loader batch into model inputs plus ``targets`` aligned with the logits.

    A (B, T+1) token window gives ``input_ids = w[:, :-1]`` and ``targets = w[:, 1:]`` (every position is trained).
    A dict (SFT, packing) passes ``input_ids``, ``attention_mask`` and ``position_ids`` through; its ``labels`` follow
    the HF convention (not shifted, -100 ignored) and are shifted here.
    """
    if isinstance(raw, torch.Tensor):
        batch = {"input_ids": raw[:, :-1], "targets": raw[:, 1:]}
    else:
        batch = dict(raw)
        if "targets" not in batch:
            labels = batch.pop("labels", None)
            labels = batch["input_ids"] if labels is None else labels
            batch["targets"] = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        batch.pop("labels", None)
    return {key: value.to(device, non_blocking=True).contiguous() for key, value in batch.items()}


def compute_loss(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], num_items_in_batch: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of the model over the batch's ``targets`` (positions with -100 are ignored).

    The targets go in as ``shift_labels`` (already aligned with the logits), so every position of a window trains, and
    ``skip_logits=True`` asks the model for its fused, chunked LM-head + loss: the (B, T, V) logits are never built.
    ``num_items_in_batch`` replaces the batch's own count of trained tokens as the divisor (token-weighted
    gradient accumulation).
    """
    inputs = {key: value for key, value in batch.items() if key != "targets"}
    targets = batch["targets"]  # (B, T)
    if num_items_in_batch is not None:
        inputs["num_items_in_batch"] = num_items_in_batch
    # `labels` only switches the loss on: with `shift_labels` given, transformers' loss does not shift again.
    return model(**inputs, labels=targets, shift_labels=targets, use_cache=False, skip_logits=True).loss
