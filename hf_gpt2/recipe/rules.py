"""The rules that span sections of a recipe; each section checks its own fields itself (``problems()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_gpt2.errors import RecipeError
from hf_gpt2.model_fields import GPT2_VOCAB_SIZE

if TYPE_CHECKING:
    from hf_gpt2.recipe.sections import Recipe

BYTE_LEVEL_MINIMUM = 257
"""The smallest byte-level BPE: the 256 byte symbols plus EOS."""


def cross_section_problems(recipe: Recipe) -> list[str]:
    """Every problem that involves more than one section of ``recipe``; empty when there is none."""
    model, data, train = recipe.model, recipe.data, recipe.train
    problems = new_tokenizer_problems(recipe)
    if recipe.tokenizer.name == "gpt2" and not recipe.tokenizer.train_new and model.vocab_size < GPT2_VOCAB_SIZE:
        problems.append(
            f"model.vocab_size={model.vocab_size} is smaller than the GPT-2 tokenizer's {GPT2_VOCAB_SIZE} tokens"
        )
    if data.block_size > model.n_positions:
        problems.append(
            f"data.block_size={data.block_size} exceeds model.n_positions={model.n_positions}; "
            "lower data.block_size or raise model.n_positions"
        )
    sample = recipe.sample
    samples_asked = bool(sample.prompts) and sample.num_samples > 0
    if model.init == "scratch" and samples_asked and sample.max_new_tokens >= model.n_positions:
        problems.append(
            f"sample.max_new_tokens={sample.max_new_tokens} leaves no room for a prompt in model.n_positions="
            f"{model.n_positions} (even an empty prompt is one token); lower sample.max_new_tokens to at most "
            f"{model.n_positions - 1}"
        )
    if train.eval_batches is None and (data.format != "text" or data.streaming):
        problems.append(
            "train.eval_batches=null (the whole val split) needs prepared text data; with data.format=sft or "
            "data.streaming give a number of batches"
        )
    every = recipe.eval.every
    if every > 0 and every >= train.max_steps:
        problems.append(
            f"eval.every={every} is not below train.max_steps={train.max_steps}, so no evaluation during training "
            "would run (the last step is evaluated after training); lower eval.every or set eval.every=0"
        )
    if train.global_batch_tokens is not None and train.grad_accum_steps is None:
        if train.micro_batch_size >= 1 and data.block_size >= 1:
            try:
                train.accum_steps(data.block_size, 1)
            except RecipeError as err:
                problems.append(str(err))
    return problems


def new_tokenizer_problems(recipe: Recipe) -> list[str]:
    """What ``tokenizer.train_new`` needs from the other sections: a model that starts from scratch, a vocabulary
    that fits the model's, text to train on, and an end to a streamed source."""
    tok, model, data = recipe.tokenizer, recipe.model, recipe.data
    if not tok.train_new:
        return []
    problems = []
    add = problems.append
    size = tok.vocab_size or model.vocab_size
    if size < BYTE_LEVEL_MINIMUM:
        add(f"tokenizer.vocab_size={size} is below 257, the 256 byte symbols plus EOS of a byte-level BPE")
    if tok.vocab_size is not None and tok.vocab_size > model.vocab_size:
        add(f"tokenizer.vocab_size={tok.vocab_size} exceeds model.vocab_size={model.vocab_size}; raise "
            "model.vocab_size or leave tokenizer.vocab_size null (= model.vocab_size)")  # fmt: skip
    if data.streaming and tok.train_documents is None:
        add("tokenizer.train_new with data.streaming needs tokenizer.train_documents (a stream has no end to train "
            "to), e.g. tokenizer.train_documents=100000")  # fmt: skip
    if model.init != "scratch":
        add(f"tokenizer.train_new=true gives new token ids, which model.init={model.init!r} was not trained on; "
            "train_new needs model.init=scratch (finetune with the pretrained model's tokenizer)")  # fmt: skip
    if data.format != "text":
        add(f"tokenizer.train_new trains on pretraining text (data.format=text), not data.format={data.format!r}")
    return problems
