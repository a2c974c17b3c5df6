"""Recipes: typed dataclass sections loaded strictly from YAML, with dotted overrides.

A recipe is one YAML file with the sections ``run``, ``model``, ``tokenizer``, ``data``, ``train``, ``optim``,
``sample``, ``eval`` and ``hub``. Loading is strict: an unknown key is an error with a did-you-mean suggestion, every
value is coerced to its field's type (PyYAML reads ``3e-4`` as a string), and every problem is reported at once in
one :class:`~hf_gpt2.errors.RecipeError`. Overrides follow the file as ``section.key=value`` (or
``section.sub.key=value``, e.g. ``train.lora.r=8``)::

    recipe = load_recipe("recipes/quickstart.yaml", ["train.max_steps=20", "optim.lr=3e-4"])
    dump_recipe(recipe, run_dir / "recipe.yaml")          # load_recipe(run_dir / "recipe.yaml") == recipe

Each field is documented once, by the docstring under it; :func:`recipe_reference_markdown` turns those docstrings
into ``recipes/README.md``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from hf_gpt2.errors import RecipeError
from hf_gpt2.tokenization import GPT2_EOS_ID

SCHEDULES = ("cosine", "wsd", "linear", "constant")
DATA_FORMATS = ("text", "sft")
MODEL_DTYPES = ("float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = (
    "sdpa",
    "eager",
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "flex_attention",
)
# transformers.activations.ACT2FN keys (5.24), listed here so that loading a recipe does not import torch.
ACTIVATIONS = (
    "gelu", "gelu_10", "gelu_accurate", "gelu_fast", "gelu_new", "gelu_python", "gelu_python_tanh",
    "gelu_pytorch_tanh", "hardswish", "laplace", "leaky_relu", "linear", "mish", "prelu", "quick_gelu", "relu",
    "relu2", "relu6", "sigmoid", "silu", "sqrtsoftplus", "swish", "tanh", "xielu",
)  # fmt: skip
DEV_MAX_DOCUMENTS = 1000
"""Documents read in dev mode (``run.dev: true``) when ``data.max_documents`` is not set."""
_NULL_WORDS = ("null", "none", "~", "")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


# --------------------------------------------------------------------------------------------------------------------
# Sections


@dataclass(kw_only=True)
class RunConfig:
    """``run``: naming, seeding and the run folder."""

    name: str | None = None
    """Run folder name under ``output_dir``; None gives a docker-style name plus ``-yymmddHH``."""
    output_dir: str = "runs"
    """Folder that holds the run folders."""
    seed: int = 1337
    """Seed for weights init, data order, dropout and sampling."""
    dev: bool = False
    """Dev mode: a tiny slice of the data (``data.max_documents``, or 1000 documents) and frequent logging."""
    log_every: int = 10
    """Log train loss, lr, grad norm and throughput every this many optimizer steps."""


@dataclass(kw_only=True)
class ModelConfig:
    """``model``: where the weights come from, and every ``HfGPT2Config`` field (same names as GPT2Config)."""

    init: str = "scratch"
    """``scratch`` (random init from the fields below), or a Hub id / folder with a stock GPT-2 or hf_gpt2 model."""
    vocab_size: int = 50257
    """Token ids the model predicts; at least the tokenizer's vocabulary (50257 for GPT-2)."""
    n_positions: int = 1024
    """Longest context the position embedding covers."""
    n_embd: int = 768
    """Width of the residual stream."""
    n_layer: int = 12
    """Number of transformer blocks."""
    n_head: int = 12
    """Attention heads per block; must divide ``n_embd``."""
    n_inner: int | None = None
    """Width of the MLP; None means 4 × ``n_embd``."""
    activation_function: str = "gelu_new"
    """MLP activation, a key of ``transformers.activations.ACT2FN`` (GPT-2 uses ``gelu_new``)."""
    resid_pdrop: float = 0.1
    """Dropout on the residual branches (0.0 for pretraining, as nanoGPT and llm.c)."""
    embd_pdrop: float = 0.1
    """Dropout on the token + position embeddings."""
    attn_pdrop: float = 0.1
    """Dropout on the attention probabilities."""
    layer_norm_epsilon: float = 1e-5
    """LayerNorm epsilon."""
    initializer_range: float = 0.02
    """Std of the normal init; residual projections are scaled by 1/sqrt(2 × n_layer) as in the GPT-2 paper."""
    scale_attn_weights: bool = True
    """Divide attention scores by sqrt(head size)."""
    use_cache: bool = True
    """Whether generation keeps a KV cache by default."""
    bos_token_id: int | None = None
    """Beginning-of-sequence id written to the config; null takes the tokenizer's (GPT-2: 50256, ``<|endoftext|>``)."""
    eos_token_id: int | None = None
    """End-of-sequence id written to the config; null takes the tokenizer's EOS, the id prepare writes after every
    document (GPT-2: 50256)."""
    pad_token_id: int | None = None
    """Padding id written to the config (GPT-2 has none); the sequence-classification head scores each row's last
    token that is not this id."""
    tie_word_embeddings: bool = True
    """Share the input embedding with the LM head."""
    vocab_pad_multiple: int = 128
    """The fused loss's chunk of logits is ``vocab_size`` rounded up to a multiple of this wide (50257 → 50304) for
    aligned matmuls; the embedding, LM head and logits keep ``vocab_size`` rows. 1 turns the alignment off."""
    loss_chunk_size: int | None = None
    """Rows per chunk of the fused LM-head + cross-entropy the training loop asks for (``skip_logits=True``: no full
    B·T·V logits); None picks per device (256 on CPU, 4096 on GPU), 0 computes the loss from full logits."""
    attn_implementation: str = "sdpa"
    """Attention kernel: ``sdpa``, ``eager``, ``flash_attention_2``/``3``, ``flex_attention``."""
    dtype: str = "float32"
    """Dtype of the weights (``float32``, ``bfloat16``, ``float16``); mixed precision comes from accelerate."""


@dataclass(kw_only=True)
class TokenizerConfig:
    """``tokenizer``: the BPE used by prepare, training, sampling and the release."""

    name: str = "gpt2"
    """``gpt2`` = OpenAI's GPT-2 BPE, offline (tiktoken for prepare); or a Hub id / folder of an HF tokenizer."""
    train_new: bool = False
    """Train a new BPE with ``name``'s pipeline (GPT-2: byte-level, ``<|endoftext|>``) on the training split's
    documents, cached in ``data.cache_dir/tokenizers/``; prepare, training, sampling and the release use it."""
    vocab_size: int | None = None
    """Vocabulary size of the new BPE, EOS and the 256 byte symbols included (``train_new`` only; null:
    ``model.vocab_size``)."""
    train_documents: int | None = None
    """Train the new BPE on at most this many training documents (``train_new`` only; null: all of them; required
    with ``data.streaming``)."""


@dataclass(kw_only=True)
class DataConfig:
    """``data``: the source, its token shards and the context length."""

    source: str = "kjv"
    """``kjv`` (built-in King James Bible, offline), a local path/glob (txt, json, jsonl, parquet), or ``hub:<id>``."""
    format: str = "text"
    """``text`` (pretraining: documents joined with EOS) or ``sft`` (prompt/response pairs, see the sft_* keys)."""
    text_field: str = "text"
    """Column holding the document text in json/jsonl/parquet/Hub data."""
    hub_config: str | None = None
    """Config (subset) name of a Hub dataset, e.g. ``sample-10BT``."""
    hub_split: str = "train"
    """Split of a Hub dataset to read; val is carved out of it by ``val_fraction``."""
    hub_revision: str | None = None
    """Branch, tag or commit of a Hub dataset; use the parquet revision where main holds a loading script."""
    hub_data_files: list[str] | None = None
    """Explicit data files (e.g. ``hf://datasets/ID@REV/path/*.parquet``) read with the parquet/json builder."""
    streaming: bool = False
    """No prepare step: tokenize and pack on the fly while training (``StreamingTokenLoader``), resumable."""
    cache_dir: str = "data_cache"
    """Folder of the token shards; each prepared dataset lives in ``cache_dir/<fingerprint>/``."""
    block_size: int = 1024
    """Tokens per training window (the loader reads block_size + 1); at most ``model.n_positions``."""
    val_fraction: float = 0.005
    """Share of documents held out for validation (chosen by document, deterministically)."""
    max_documents: int | None = None
    """Read at most this many documents from the source (None: all; dev mode: 1000 unless set)."""
    num_proc: int = 0
    """Tokenizer processes for prepare; 0 means one per CPU core."""
    shard_tokens: int = 100_000_000
    """Tokens per ``.bin`` shard file (the last shard of a split is shorter)."""
    # SFT keys: used by hf_gpt2.data.sft (owned by the finetuning work); ignored when format is "text".
    sft_format: str = "auto"
    """SFT row format: ``hh`` (hh-rlhf transcripts in ``text_field`` or ``chosen``), ``messages`` (role/content
    lists), ``prompt_completion`` (prompt + completion/response columns), or ``auto`` (told from the columns)."""
    sft_prompt_field: str = "prompt"
    """Column with the prompt (SFT, ``prompt_completion``)."""
    sft_response_field: str | None = None
    """Column with the response (SFT, ``prompt_completion``); None: ``completion`` or ``response``."""
    sft_untrainable: str = "error"
    """SFT sample with no trained token (e.g. truncated by ``block_size``): ``error`` (names it) or ``skip`` (logs)."""
    packing: bool = False
    """SFT: pack several examples into one block_size row (position ids restart per sample) instead of padding."""


@dataclass(kw_only=True)
class LoraConfig:
    """``train.lora``: low-rank adapters; ``r: 0`` turns them off."""

    r: int = 0
    """Adapter rank; 0 means no LoRA."""
    alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    target_modules: list[str] = field(default_factory=lambda: ["c_attn", "c_proj", "c_fc"])
    """Names of the Linear layers that get adapters."""
    merge: bool = True
    """Merge the adapters into the weights in the release."""


@dataclass(kw_only=True)
class TrainConfig:
    """``train``: steps, batch, clipping, evaluation, checkpoints and memory/speed switches."""

    max_steps: int
    """Optimizer steps to train for (required)."""
    micro_batch_size: int
    """Sequences per process per forward/backward (required)."""
    global_batch_tokens: int | None = None
    """Tokens per optimizer step over all processes; gives the accumulation steps. Set this or grad_accum_steps."""
    grad_accum_steps: int | None = None
    """Micro-batches accumulated per optimizer step on each process. Set this or global_batch_tokens (neither: 1)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 turns clipping off."""
    eval_every: int = 250
    """Compute val loss every this many optimizer steps (and at the end); 0 only at the end."""
    eval_batches: int = 20
    """Micro-batches of val data per evaluation, per process."""
    save_every: int = 1000
    """Write a resumable checkpoint every this many optimizer steps; 0 turns periodic checkpoints off."""
    keep_last: int = 3
    """Keep only the newest this many checkpoints."""
    resume_from: str | None = None
    """None (fresh run), ``latest`` (newest checkpoint of this run), a checkpoint path, or ``hub:USER/NAME[@REV]``."""
    gradient_checkpointing: bool = False
    """Recompute block activations in backward to save memory."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    trainable: list[str] | None = None
    """Glob patterns of parameter names to train (others frozen); None trains everything."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters (see ``train.lora.*``)."""

    def accum_steps(self, block_size: int, num_processes: int = 1) -> int:
        """Return the gradient-accumulation steps per optimizer step on each process.

        Args:
            block_size: tokens per sequence (``data.block_size``).
            num_processes: processes taking part (``accelerator.num_processes``).

        Raises:
            RecipeError: if ``global_batch_tokens`` is not a multiple of micro_batch × block × processes.
        """
        if self.grad_accum_steps is not None:
            return self.grad_accum_steps
        if self.global_batch_tokens is None:
            return 1
        per_step = self.micro_batch_size * block_size * num_processes
        if self.global_batch_tokens % per_step != 0 or self.global_batch_tokens < per_step:
            raise RecipeError(
                f"train.global_batch_tokens={self.global_batch_tokens} is not a multiple of micro_batch_size "
                f"× block_size × processes = {self.micro_batch_size} × {block_size} × {num_processes} = {per_step}; "
                f"use a multiple of {per_step} or change train.micro_batch_size"
            )
        return self.global_batch_tokens // per_step

    def tokens_per_step(self, block_size: int, num_processes: int = 1) -> int:
        """Return the tokens consumed by one optimizer step over all processes."""
        return self.accum_steps(block_size, num_processes) * self.micro_batch_size * block_size * num_processes


@dataclass(kw_only=True)
class OptimConfig:
    """``optim``: AdamW and the learning-rate schedule."""

    lr: float = 6e-4
    """Peak learning rate, reached at the end of warmup."""
    min_lr: float = 6e-5
    """Learning rate at the end of the decay."""
    warmup_steps: int = 700
    """Linear warmup from 0 to ``lr`` over this many optimizer steps."""
    schedule: str = "cosine"
    """Decay after warmup: ``cosine``, ``wsd`` (warmup-stable-decay), ``linear`` or ``constant``."""
    decay_fraction: float = 0.2
    """``wsd`` only: share of the steps spent decaying to ``min_lr`` at the end."""
    weight_decay: float = 0.1
    """AdamW decay, applied to matrices and embeddings only, never to biases or LayerNorm."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    fused: bool | None = None
    """Fused AdamW kernel; None uses it on CUDA when available."""


@dataclass(kw_only=True)
class SampleConfig:
    """``sample``: text generated from the final model (and printed) at the end of a run."""

    prompts: list[str] = field(default_factory=lambda: ["Hello, I'm a language model,"])
    """Prompts to continue."""
    max_new_tokens: int = 64
    """Tokens generated per sample."""
    temperature: float = 0.8
    """Sampling temperature; 0 means greedy decoding."""
    top_k: int | None = 200
    """Sample from the k most likely tokens; None turns top-k off."""
    top_p: float | None = None
    """Nucleus sampling threshold; None turns it off."""
    num_samples: int = 1
    """Samples per prompt."""


@dataclass(kw_only=True)
class EvalConfig:
    """``eval``: benchmark tasks run on the release (``final/``) at the end of a run."""

    tasks: list[str] = field(default_factory=list)
    """Benchmark task names (see ``hf-gpt2 eval --help``); empty runs only the val loss."""
    limit: int | None = None
    """Examples per task (None: all)."""
    batch_size: int = 8
    """Batch size of the benchmark runner."""
    data: dict[str, str] = field(default_factory=dict)
    """Task name → local data path, for tasks that cannot be downloaded (offline)."""


@dataclass(kw_only=True)
class HubConfig:
    """``hub``: pushing the release and checkpoints to the Hugging Face Hub."""

    repo_id: str | None = None
    """Model repo ``USER/NAME`` to push to."""
    push_final: bool = False
    """Push ``final/`` (model card included) when the run ends."""
    push_checkpoints: bool = False
    """Push each checkpoint (in the background) to the ``checkpoint_revision`` branch."""
    private: bool = False
    """Create the repo as private."""
    checkpoint_revision: str = "checkpoints"
    """Branch that receives the checkpoints."""
    license: str = "mit"
    """License written to the model card."""


@dataclass(kw_only=True)
class Recipe:
    """A whole recipe; ``Recipe(...)`` validates every section and the fields that depend on each other."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hub: HubConfig = field(default_factory=HubConfig)

    def __post_init__(self) -> None:
        problems = recipe_problems(self)
        if problems:
            raise RecipeError(_format_problems(problems))


SECTIONS: dict[str, type] = {
    "run": RunConfig,
    "model": ModelConfig,
    "tokenizer": TokenizerConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "optim": OptimConfig,
    "sample": SampleConfig,
    "eval": EvalConfig,
    "hub": HubConfig,
}
MODEL_CONFIG_FIELDS = tuple(
    f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("init", "attn_implementation", "dtype")
)
"""The ``model.*`` keys that are ``HfGPT2Config`` fields (all but init, attn_implementation and dtype)."""


def model_config_kwargs(recipe: Recipe, tokenizer: Any = None) -> dict[str, Any]:
    """Return the ``HfGPT2Config(**kwargs)`` keyword arguments of a recipe's ``model`` section.

    A null ``model.bos_token_id`` / ``eos_token_id`` takes the tokenizer's id: ``tokenizer``'s when given, else
    GPT-2's 50256 (only known without a tokenizer for ``tokenizer.name: gpt2``).
    """
    kwargs = {name: getattr(recipe.model, name) for name in MODEL_CONFIG_FIELDS}
    for key in ("bos_token_id", "eos_token_id"):
        if kwargs[key] is not None:
            continue
        if tokenizer is not None:
            kwargs[key] = getattr(tokenizer, key) if getattr(tokenizer, key) is not None else tokenizer.eos_token_id
        elif recipe.tokenizer.name == "gpt2" and not recipe.tokenizer.train_new:
            kwargs[key] = GPT2_EOS_ID
        else:
            raise ValueError(f"model.{key} is null and no tokenizer was given to take it from")
    return kwargs


def effective_max_documents(recipe: Recipe) -> int | None:
    """Return how many documents to read: ``data.max_documents``, or :data:`DEV_MAX_DOCUMENTS` in dev mode."""
    if recipe.data.max_documents is None and recipe.run.dev:
        return DEV_MAX_DOCUMENTS
    return recipe.data.max_documents


# --------------------------------------------------------------------------------------------------------------------
# Validation


def _check_tokenizer(problems: list[str], recipe: Any) -> None:
    tok, model, data = recipe.tokenizer, recipe.model, recipe.data
    add = problems.append
    if not tok.train_new:
        for key in ("vocab_size", "train_documents"):
            if getattr(tok, key) is not None:
                add(f"tokenizer.{key} is only used with tokenizer.train_new=true; remove it or set train_new")
        return
    size = tok.vocab_size or model.vocab_size
    if size < 257:
        add(f"tokenizer.vocab_size={size} is below 257, the 256 byte symbols plus EOS of a byte-level BPE")
    if tok.vocab_size is not None and tok.vocab_size > model.vocab_size:
        add(f"tokenizer.vocab_size={tok.vocab_size} exceeds model.vocab_size={model.vocab_size}; raise "
            "model.vocab_size or leave tokenizer.vocab_size null (= model.vocab_size)")  # fmt: skip
    if tok.train_documents is not None and tok.train_documents < 1:
        add(f"tokenizer.train_documents must be >= 1 or null (all), got {tok.train_documents}")
    if data.streaming and tok.train_documents is None:
        add("tokenizer.train_new with data.streaming needs tokenizer.train_documents (a stream has no end to train "
            "to), e.g. tokenizer.train_documents=100000")  # fmt: skip
    if model.init != "scratch":
        add(f"tokenizer.train_new=true gives new token ids, which model.init={model.init!r} was not trained on; "
            "train_new needs model.init=scratch (finetune with the pretrained model's tokenizer)")  # fmt: skip
    if data.format != "text":
        add(f"tokenizer.train_new trains on pretraining text (data.format=text), not data.format={data.format!r}")


def recipe_problems(recipe: Any) -> list[str]:
    """Return every problem of a recipe (an object with the section attributes); empty when it is valid."""
    problems: list[str] = []
    add = problems.append
    run, model, tok, data, train, optim, sample, ev, hub = (getattr(recipe, name) for name in SECTIONS)

    if run.log_every < 1:
        add(f"run.log_every must be >= 1, got {run.log_every}")
    if run.name is not None and (not run.name or "/" in run.name or run.name in (".", "..")):
        add(f"run.name={run.name!r} must be a plain folder name (no '/'), or null for a generated name")

    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        if getattr(model, key) < 1:
            add(f"model.{key} must be >= 1, got {getattr(model, key)}")
    if model.n_head >= 1 and model.n_embd % model.n_head != 0:
        add(
            f"model.n_embd={model.n_embd} is not divisible by model.n_head={model.n_head}; pick n_head dividing n_embd"
        )
    if model.n_inner is not None and model.n_inner < 1:
        add(f"model.n_inner must be >= 1 or null (4 × n_embd), got {model.n_inner}")
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if not 0.0 <= getattr(model, key) < 1.0:
            add(f"model.{key} must be in [0, 1), got {getattr(model, key)}")
    if model.layer_norm_epsilon <= 0 or model.initializer_range <= 0:
        add("model.layer_norm_epsilon and model.initializer_range must be > 0")
    _check_choice(problems, "model.activation_function", model.activation_function, ACTIVATIONS)
    if "/" not in model.attn_implementation:  # "org/kernel" names a Hub kernel
        _check_choice(problems, "model.attn_implementation", model.attn_implementation, ATTN_IMPLEMENTATIONS)
    _check_choice(problems, "model.dtype", model.dtype, MODEL_DTYPES)
    for key in ("bos_token_id", "eos_token_id"):
        value = getattr(model, key)
        if value is not None and not 0 <= value < model.vocab_size:
            add(f"model.{key}={value} is outside the vocabulary [0, {model.vocab_size})")
    if not model.init:
        add("model.init must be 'scratch', a Hub id or a folder")

    _check_tokenizer(problems, recipe)
    if tok.name == "gpt2" and not tok.train_new and model.vocab_size < 50257:
        add(f"model.vocab_size={model.vocab_size} is smaller than the GPT-2 tokenizer's 50257 tokens")

    if not data.source:
        add("data.source must be 'kjv', a local path or glob, or 'hub:<dataset id>'")
    elif data.source.startswith("hub:") and len(data.source) <= 4:
        add("data.source='hub:' needs a dataset id, e.g. hub:stas/openwebtext-10k")
    _check_choice(problems, "data.format", data.format, DATA_FORMATS)
    _check_choice(problems, "data.sft_format", data.sft_format, ("auto", "hh", "messages", "prompt_completion"))
    _check_choice(problems, "data.sft_untrainable", data.sft_untrainable, ("error", "skip"))
    if data.block_size < 1:
        add(f"data.block_size must be >= 1, got {data.block_size}")
    if data.block_size > model.n_positions:
        add(f"data.block_size={data.block_size} exceeds model.n_positions={model.n_positions}; "
            f"lower data.block_size or raise model.n_positions")  # fmt: skip
    if not 0.0 < data.val_fraction < 1.0:
        add(f"data.val_fraction must be in (0, 1), got {data.val_fraction}")
    if data.max_documents is not None and data.max_documents < 1:
        add(f"data.max_documents must be >= 1 or null (all), got {data.max_documents}")
    if data.num_proc < 0:
        add(f"data.num_proc must be >= 0 (0 = all cores), got {data.num_proc}")
    if data.shard_tokens < 1:
        add(f"data.shard_tokens must be >= 1, got {data.shard_tokens}")

    for key in ("max_steps", "micro_batch_size", "eval_batches", "keep_last"):
        if getattr(train, key) < 1:
            add(f"train.{key} must be >= 1, got {getattr(train, key)}")
    for key in ("eval_every", "save_every"):
        if getattr(train, key) < 0:
            add(f"train.{key} must be >= 0 (0 = off), got {getattr(train, key)}")
    if train.grad_clip < 0:
        add(f"train.grad_clip must be >= 0 (0 = off), got {train.grad_clip}")
    if train.global_batch_tokens is not None and train.grad_accum_steps is not None:
        add("set only one of train.global_batch_tokens and train.grad_accum_steps (set the other to null)")
    elif train.grad_accum_steps is not None and train.grad_accum_steps < 1:
        add(f"train.grad_accum_steps must be >= 1, got {train.grad_accum_steps}")
    elif train.global_batch_tokens is not None and train.micro_batch_size >= 1 and data.block_size >= 1:
        try:
            train.accum_steps(data.block_size, 1)
        except RecipeError as err:
            add(str(err))
    if train.trainable is not None and not train.trainable:
        add("train.trainable must list at least one glob pattern, or be null (train everything)")
    lora = train.lora
    if lora.r < 0 or lora.alpha < 1:
        add(f"train.lora.r must be >= 0 and train.lora.alpha >= 1, got r={lora.r}, alpha={lora.alpha}")
    if not 0.0 <= lora.dropout < 1.0:
        add(f"train.lora.dropout must be in [0, 1), got {lora.dropout}")
    if lora.r > 0 and not lora.target_modules:
        add("train.lora.target_modules must name at least one module when train.lora.r > 0")

    if optim.lr <= 0:
        add(f"optim.lr must be > 0, got {optim.lr}")
    if not 0 <= optim.min_lr <= max(optim.lr, 0):
        add(f"optim.min_lr must be in [0, optim.lr={optim.lr}], got {optim.min_lr}")
    if optim.warmup_steps < 0:
        add(f"optim.warmup_steps must be >= 0, got {optim.warmup_steps}")
    _check_choice(problems, "optim.schedule", optim.schedule, SCHEDULES)
    if not 0.0 < optim.decay_fraction <= 1.0:
        add(f"optim.decay_fraction must be in (0, 1], got {optim.decay_fraction}")
    if optim.weight_decay < 0 or optim.eps <= 0:
        add("optim.weight_decay must be >= 0 and optim.eps > 0")
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(optim, key) < 1.0:
            add(f"optim.{key} must be in [0, 1), got {getattr(optim, key)}")

    if sample.max_new_tokens < 0 or sample.num_samples < 0:
        add("sample.max_new_tokens and sample.num_samples must be >= 0")
    if sample.temperature < 0:
        add(f"sample.temperature must be >= 0 (0 = greedy), got {sample.temperature}")
    if sample.top_k is not None and sample.top_k < 1:
        add(f"sample.top_k must be >= 1 or null, got {sample.top_k}")
    if sample.top_p is not None and not 0.0 < sample.top_p <= 1.0:
        add(f"sample.top_p must be in (0, 1] or null, got {sample.top_p}")

    if ev.limit is not None and ev.limit < 1:
        add(f"eval.limit must be >= 1 or null (all), got {ev.limit}")
    if ev.batch_size < 1:
        add(f"eval.batch_size must be >= 1, got {ev.batch_size}")

    if (hub.push_final or hub.push_checkpoints) and not hub.repo_id:
        add("hub.repo_id (USER/NAME) is required when hub.push_final or hub.push_checkpoints is true")
    if hub.repo_id is not None and hub.repo_id.count("/") != 1:
        add(f"hub.repo_id={hub.repo_id!r} must look like USER/NAME")
    if not hub.checkpoint_revision:
        add("hub.checkpoint_revision must be a branch name")
    return problems


def _check_choice(problems: list[str], key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        problems.append(f"{key}={value!r} is not one of {', '.join(choices)}{_did_you_mean(value, choices)}")


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _format_problems(problems: Sequence[str], origin: str | None = None) -> str:
    where = f"{origin}: " if origin else ""
    if len(problems) == 1:
        return f"{where}{problems[0]}"
    return f"{where}{len(problems)} problems: " + "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))


# --------------------------------------------------------------------------------------------------------------------
# Coercion


class _Invalid(Exception):
    """A value does not fit a field's type; the message says what was expected."""


@cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation`` (int, float, bool, str, list[str], dict[str, str], X | None)."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULL_WORDS):
            return None
        return _coerce(value, args[0])
    if value is None:
        raise _Invalid(f"expected {_type_name(annotation)}, got null")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise _Invalid("expected a bool (true/false)")
    if annotation is int:
        if isinstance(value, bool):
            raise _Invalid("expected an int")
        if isinstance(value, int):
            return value
        number = _parse_number(value, "an int")
        if not float(number).is_integer():
            raise _Invalid("expected an int")
        return int(number)
    if annotation is float:
        if isinstance(value, bool):
            raise _Invalid("expected a float")
        return float(_parse_number(value, "a float"))
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Invalid("expected a string")
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, str):
            value = _parse_yaml_value(value) if value.lstrip().startswith("[") else [value]
        if not isinstance(value, list):
            raise _Invalid("expected a list, e.g. [a, b]")
        return [_coerce(item, item_type) for item in value]
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        if isinstance(value, str):
            value = _parse_yaml_value(value)
        if not isinstance(value, dict):
            raise _Invalid("expected a mapping, e.g. {task: path}")
        return {_coerce(k, key_type): _coerce(v, value_type) for k, v in value.items()}
    raise TypeError(f"no coercion for {annotation!r}")  # a new field type needs a branch above


def _parse_number(value: Any, what: str) -> int | float:
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (int, float):
            try:
                return parse(text)
            except ValueError:
                continue
    raise _Invalid(f"expected {what}")


def _parse_yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise _Invalid(f"cannot parse {text!r} as YAML ({err.__class__.__name__})") from err


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def _build_section(cls: type, raw: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    """Return ``cls(**raw)`` with every value coerced; unknown keys, bad values and missing keys go to ``problems``.

    A field whose value is bad keeps its default (or a placeholder) so that the other problems can still be found.
    """
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key{_unknown_key_hint(key, prefix, list(fields))}")
            continue
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, Mapping):
                problems.append(f"{prefix}{key}: expected a mapping of {prefix}{key}.* keys, got {value!r}")
                continue
            kwargs[key] = _build_section(annotation, value, f"{prefix}{key}.", problems)
            continue
        try:
            kwargs[key] = _coerce(value, annotation)
        except _Invalid as err:
            problems.append(f"{prefix}{key}={value!r}: {err}")
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if name not in raw:
                problems.append(f"{prefix}{name} is required ({_type_name(hints[name])})")
            kwargs[name] = _placeholder(hints[name])
    return cls(**kwargs)


def _placeholder(annotation: Any) -> Any:
    return {int: 1, float: 1.0, bool: False, str: ""}.get(annotation)


def _unknown_key_hint(key: str, prefix: str, known: Sequence[str]) -> str:
    # The right key in the wrong section (train.lr → optim.lr) is a common slip.
    owners = [section for section, cls in SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}]
    if owners:
        return f" (did you mean {owners[0]}.{key}?)"
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if match:
        return f" (did you mean {prefix}{match[0]}?)"
    return f"; known keys: {', '.join(known)}"


# --------------------------------------------------------------------------------------------------------------------
# Loading, overrides, dumping


def recipe_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = (), *, origin: str | None = None) -> Recipe:
    """Build a :class:`Recipe` from a nested mapping (as read from YAML) plus dotted overrides.

    Raises:
        RecipeError: listing every unknown key, bad value, bad override and failed check at once.
    """
    problems: list[str] = []
    merged = _nested_copy(raw)
    for override in overrides:
        _apply_override(merged, override, problems)
    sections: dict[str, Any] = {}
    for name, value in merged.items():
        if name not in SECTIONS:
            problems.append(
                f"{name}: unknown section{_did_you_mean(str(name), SECTIONS)}; sections: {', '.join(SECTIONS)}"
            )
            continue
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            problems.append(f"{name}: expected a mapping of {name}.* keys, got {value!r}")
            continue
        sections[name] = value
    built = {name: _build_section(cls, sections.get(name, {}), f"{name}.", problems) for name, cls in SECTIONS.items()}
    if problems:
        # Report the checks too, except those about keys whose values were already rejected.
        bad_keys = {k for p in problems if "." in (k := p.split("=")[0].split(":")[0].split(" ")[0])}
        checks = recipe_problems(types.SimpleNamespace(**built))
        problems += [p for p in checks if not any(k in p for k in bad_keys)]
        raise RecipeError(_format_problems(problems, origin))
    try:
        return Recipe(**built)
    except RecipeError as err:
        raise RecipeError(f"{origin}: {err}" if origin else str(err)) from None


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Load a recipe YAML file strictly and apply ``section.key=value`` overrides.

    Args:
        path: the recipe file, e.g. ``recipes/quickstart.yaml``.
        overrides: ``section.key=value`` strings (``section.sub.key=value`` for nested sections), applied in order.

    Raises:
        RecipeError: for a missing or unparsable file, and for every problem of the recipe, all in one message.
    """
    path = Path(path)
    if not path.is_file():
        shipped = sorted(p.name for p in Path("recipes").glob("*.yaml")) if Path("recipes").is_dir() else []
        hint = f"; shipped recipes in recipes/: {', '.join(shipped)}" if shipped else ""
        raise RecipeError(f"recipe file {str(path)!r} not found{hint}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RecipeError(
            f"{path}: a recipe is a mapping of sections ({', '.join(SECTIONS)}), got {type(raw).__name__}"
        )
    return recipe_from_dict(raw, overrides, origin=str(path))


def apply_overrides(recipe: Recipe, overrides: Sequence[str]) -> Recipe:
    """Return a new recipe with ``section.key=value`` overrides applied (the original is unchanged)."""
    return recipe_from_dict(recipe_to_dict(recipe), overrides)


def _apply_override(tree: dict[str, Any], override: str, problems: list[str]) -> None:
    key, sep, value = override.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        problems.append(f"override {override!r} must look like section.key=value (e.g. train.max_steps=100)")
        return
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            problems.append(f"override {override!r}: {part} is not a section")
            return
        node = child
    node[parts[-1]] = value  # a string; _coerce converts it to the field's type


def _nested_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _nested_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Return the recipe as plain nested dicts and lists (YAML- and JSON-serializable), sections in order."""
    return dataclasses.asdict(recipe)


def dump_recipe(recipe: Recipe, path: str | Path) -> Path:
    """Write the resolved recipe as YAML; ``load_recipe(path)`` returns an equal recipe.

    The file is written to a temporary name and renamed, so a reader never sees half a recipe.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# resolved hf_gpt2 recipe: every key, after overrides\n"
    text += yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True, width=119)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------------------------------
# Documentation


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Return ``{field name: docstring}`` of a section dataclass, read from the string literal under each field."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def recipe_reference_markdown() -> str:
    """Return a Markdown table of every recipe key with its type, default and docstring (for recipes/README.md)."""
    lines: list[str] = []
    for section, cls in SECTIONS.items():
        lines += _section_reference(section, cls)
    return "\n".join(lines) + "\n"


def _section_reference(prefix: str, cls: type) -> list[str]:
    hints = _field_types(cls)
    docs = field_docs(cls)
    lines = [f"### `{prefix}`", "", (inspect.getdoc(cls) or "").split(": ", 1)[-1].replace("``", "`"), "",
             "| key | type | default | meaning |", "|---|---|---|---|"]  # fmt: skip
    nested: list[tuple[str, type]] = []
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            nested.append((f"{prefix}.{f.name}", annotation))
            default = "see below"
        elif f.default is not dataclasses.MISSING:
            default = f"`{yaml.safe_dump(f.default, default_flow_style=True).strip().removesuffix('...').strip()}`"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"`{yaml.safe_dump(f.default_factory(), default_flow_style=True).strip()}`"
        else:
            default = "**required**"
        type_name = str(annotation).replace("typing.", "") if typing.get_origin(annotation) else _type_name(annotation)
        type_name = type_name.replace(" | ", " or ")
        doc = docs.get(f.name, "").replace("``", "`").replace("|", "\\|")
        default = default.replace("|", "\\|")
        lines.append(f"| `{prefix}.{f.name}` | {type_name} | {default} | {doc} |")
    lines.append("")
    for name, sub in nested:
        lines += _section_reference(name, sub)
    return lines


REFERENCE_MARKER = "<!-- generated by `python -m hf_gpt2.recipe recipes/README.md`; edit the docstrings instead -->"


def update_reference(readme: str | Path) -> None:
    """Rewrite everything after :data:`REFERENCE_MARKER` in ``readme`` with :func:`recipe_reference_markdown`."""
    path = Path(readme)
    head = path.read_text(encoding="utf-8").split(REFERENCE_MARKER)[0]
    path.write_text(f"{head}{REFERENCE_MARKER}\n\n{recipe_reference_markdown()}", encoding="utf-8")


if __name__ == "__main__":
    import sys

    update_reference(sys.argv[1] if len(sys.argv) > 1 else "recipes/README.md")
