"""The recipe's sections: one typed dataclass per YAML section, each with its own checks, and :class:`Recipe`.

Each field is documented once, by the docstring under it (:mod:`hf_gpt2.recipe.reference` turns them into
``recipes/README.md``). Each section lists its own problems (:meth:`problems`); the rules that involve several
sections are in :mod:`hf_gpt2.recipe.rules`. ``Recipe(...)`` checks them all and reports every problem at once.
The ``model`` section checks its ``HfGPT2Config`` fields with the config's own rules (:mod:`hf_gpt2.model_fields`).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hf_gpt2.errors import RecipeError
from hf_gpt2.locations import repo_id_problem
from hf_gpt2.model_fields import GPT2_EOS_ID, field_problems
from hf_gpt2.recipe.problems import check_choice, format_problems
from hf_gpt2.recipe.rules import cross_section_problems

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SCHEDULES = ("cosine", "wsd", "linear", "constant")
OPTIMIZERS = ("adamw", "muon")
MUON_ADJUST_LR = ("original", "match_rms_adamw")
DATA_FORMATS = ("text", "sft")
SFT_FORMATS = ("auto", "hh", "messages", "prompt_completion")
SFT_UNTRAINABLE = ("error", "skip")
BAD_DOCUMENTS = ("error", "skip")
MODEL_DTYPES = ("float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = (
    "sdpa",
    "eager",
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "flex_attention",
)
DEV_MAX_DOCUMENTS = 1000
"""Documents read in dev mode (``run.dev: true``) when ``data.max_documents`` is not set."""
MODEL_CONFIG_FIELDS = (
    "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function", "resid_pdrop",
    "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range", "scale_attn_weights", "use_cache",
    "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings", "vocab_pad_multiple", "loss_chunk_size",
)  # fmt: skip
"""The ``model.*`` keys that are ``HfGPT2Config`` fields (all but init, attn_implementation and dtype)."""


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

    def problems(self) -> list[str]:
        """This section's problems (empty when it is valid)."""
        problems = []
        if self.log_every < 1:
            problems.append(f"run.log_every must be >= 1, got {self.log_every}")
        if self.name is not None and (not self.name or "/" in self.name or self.name in (".", "..")):
            problems.append(
                f"run.name={self.name!r} must be a plain folder name (no '/'), or null for a generated name"
            )
        return problems


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
    """MLP activation: ``gelu_new`` (GPT-2's tanh-GELU), ``gelu_pytorch_tanh``, ``gelu``, ``relu``, ``silu``,
    ``gelu_fast`` or ``quick_gelu``."""
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

    def config_fields(self) -> dict[str, Any]:
        """The fields that are ``HfGPT2Config`` arguments (all but init, attn_implementation and dtype)."""
        return {name: getattr(self, name) for name in MODEL_CONFIG_FIELDS}

    def problems(self) -> list[str]:
        """This section's problems: the config's own field rules (:mod:`hf_gpt2.model_fields`), then the recipe's."""
        problems = field_problems(self.config_fields(), prefix="model.")
        if "/" not in self.attn_implementation:  # "org/kernel" names a Hub kernel
            check_choice(problems, "model.attn_implementation", self.attn_implementation, ATTN_IMPLEMENTATIONS)
        check_choice(problems, "model.dtype", self.dtype, MODEL_DTYPES)
        for key in ("bos_token_id", "eos_token_id"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < self.vocab_size:
                problems.append(f"model.{key}={value} is outside the vocabulary [0, {self.vocab_size})")
        if not self.init:
            problems.append("model.init must be 'scratch', a Hub id or a folder")
        return problems


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

    def problems(self) -> list[str]:
        """This section's problems (those that involve other sections are in :mod:`hf_gpt2.recipe.rules`)."""
        problems = []
        if not self.train_new:
            for key in ("vocab_size", "train_documents"):
                if getattr(self, key) is not None:
                    problems.append(
                        f"tokenizer.{key} is only used with tokenizer.train_new=true; remove it or set train_new"
                    )
        elif self.train_documents is not None and self.train_documents < 1:
            problems.append(f"tokenizer.train_documents must be >= 1 or null (all), got {self.train_documents}")
        return problems


@dataclass(kw_only=True)
class DataConfig:
    """``data``: the source, its token shards and the context length."""

    source: str = "kjv"
    """``kjv`` (built-in King James Bible, offline), a local path/glob (txt, json, jsonl, parquet), or ``hub:<id>``."""
    format: str = "text"
    """``text`` (pretraining: documents joined with EOS) or ``sft`` (prompt/response pairs, see the sft_* keys)."""
    text_field: str = "text"
    """Column holding the document text in json/jsonl/parquet/Hub data."""
    encoding: str = "utf-8"
    """Text encoding of local .txt/.md/.json/.jsonl files (any Python codec: ``latin-1``, ``cp1252``, ...); a UTF-8
    byte-order mark is dropped."""
    bad_documents: str = "error"
    """A document that cannot be read as text (bytes that do not decode in ``encoding``, a binary file, a malformed
    JSON line, a row whose text field is missing, null or not a string, an unreadable parquet file): ``error`` stops
    and names the file, the line or row and the fix; ``skip`` leaves each one out, logs it and counts them."""
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
    # SFT keys: used by hf_gpt2.data.sft; ignored when format is "text".
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

    def problems(self) -> list[str]:
        """This section's problems."""
        problems = []
        add = problems.append
        if not self.source:
            add("data.source must be 'kjv', a local path or glob, or 'hub:<dataset id>'")
        elif self.source.startswith("hub:") and len(self.source) <= 4:
            add("data.source='hub:' needs a dataset id, e.g. hub:stas/openwebtext-10k")
        check_choice(problems, "data.format", self.format, DATA_FORMATS)
        check_choice(problems, "data.sft_format", self.sft_format, SFT_FORMATS)
        check_choice(problems, "data.sft_untrainable", self.sft_untrainable, SFT_UNTRAINABLE)
        check_choice(problems, "data.bad_documents", self.bad_documents, BAD_DOCUMENTS)
        try:
            is_text = getattr(codecs.lookup(self.encoding), "_is_text_encoding", True)  # base64 is a codec, not text
        except LookupError:
            is_text = False
        if not is_text:
            add(f"data.encoding={self.encoding!r} is not a text encoding Python knows; use e.g. utf-8, latin-1")
        if self.block_size < 1:
            add(f"data.block_size must be >= 1, got {self.block_size}")
        if not 0.0 < self.val_fraction < 1.0:
            add(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.max_documents is not None and self.max_documents < 1:
            add(f"data.max_documents must be >= 1 or null (all), got {self.max_documents}")
        if self.num_proc < 0:
            add(f"data.num_proc must be >= 0 (0 = all cores), got {self.num_proc}")
        if self.shard_tokens < 1:
            add(f"data.shard_tokens must be >= 1, got {self.shard_tokens}")
        return problems


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

    def problems(self) -> list[str]:
        """This section's problems."""
        problems = []
        if self.r < 0 or self.alpha < 1:
            problems.append(f"train.lora.r must be >= 0 and train.lora.alpha >= 1, got r={self.r}, alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"train.lora.dropout must be in [0, 1), got {self.dropout}")
        if self.r > 0 and not self.target_modules:
            problems.append("train.lora.target_modules must name at least one module when train.lora.r > 0")
        return problems


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
    eval_batches: int | None = 20
    """Micro-batches of val data per evaluation, over all processes (the same windows every time); null scores every
    window of the val split once (prepared text data), the fair measure across tokenizers."""
    target_val_bpb: float | None = None
    """Finish the run (release, eval, card as at ``max_steps``) at the first evaluation whose validation bits per byte
    are at or below this: a time-to-target run. Null trains for ``max_steps``."""
    save_every: int = 1000
    """Write a resumable checkpoint every this many optimizer steps; 0 turns periodic checkpoints off. The last step
    is always saved (the release is written from it, and written again from it when the run is resumed)."""
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

    def problems(self) -> list[str]:
        """This section's problems (the global batch against ``data.block_size`` is in :mod:`hf_gpt2.recipe.rules`)."""
        problems = []
        add = problems.append
        for key in ("max_steps", "micro_batch_size", "keep_last"):
            if getattr(self, key) < 1:
                add(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_batches is not None and self.eval_batches < 1:
            add(f"train.eval_batches must be >= 1, or null (the whole val split), got {self.eval_batches}")
        if self.target_val_bpb is not None and self.target_val_bpb <= 0:
            add(f"train.target_val_bpb must be > 0 bits per byte, or null (train for max_steps), got "
                f"{self.target_val_bpb}")  # fmt: skip
        for key in ("eval_every", "save_every"):
            if getattr(self, key) < 0:
                add(f"train.{key} must be >= 0 (0 = off), got {getattr(self, key)}")
        if self.grad_clip < 0:
            add(f"train.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.global_batch_tokens is not None and self.grad_accum_steps is not None:
            add("set only one of train.global_batch_tokens and train.grad_accum_steps (set the other to null)")
        elif self.grad_accum_steps is not None and self.grad_accum_steps < 1:
            add(f"train.grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.trainable is not None and not self.trainable:
            add("train.trainable must list at least one glob pattern, or be null (train everything)")
        return problems + self.lora.problems()


@dataclass(kw_only=True)
class OptimConfig:
    """``optim``: the optimizer (AdamW, or Muon for the hidden matrices) and the learning-rate schedule."""

    name: str = "adamw"
    """``adamw`` for every parameter, or ``muon``: ``torch.optim.Muon`` for the 2-D weights of the transformer blocks'
    Linear layers (attention and MLP matrices) at ``muon_lr``, AdamW for the embeddings, the LM head, biases and
    LayerNorm at ``lr``. Both follow the same schedule."""
    lr: float = 6e-4
    """Peak learning rate (of AdamW), reached at the end of warmup."""
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
    """Fused AdamW kernel; None uses it on CUDA and CPU (unless ``foreach`` is true)."""
    foreach: bool | None = None
    """Multi-tensor (foreach) AdamW instead of the fused kernel; None: the fused one where it runs."""
    muon_lr: float = 0.02
    """``muon`` only: peak learning rate of the hidden matrices (scaled per matrix by ``muon_adjust_lr``)."""
    muon_momentum: float = 0.95
    """``muon`` only: Nesterov momentum of the hidden matrices."""
    muon_weight_decay: float = 0.0
    """``muon`` only: decoupled weight decay of the hidden matrices (multiplied by the scheduled ``muon_lr``)."""
    muon_adjust_lr: str = "original"
    """``muon`` only: per-matrix lr scale: ``original`` (Keller Jordan's sqrt(max(1, rows/cols))) or
    ``match_rms_adamw`` (Moonshot's 0.2 · sqrt(max(rows, cols)), for an AdamW-sized ``muon_lr``)."""

    def problems(self) -> list[str]:
        """This section's problems."""
        problems = []
        add = problems.append
        if self.lr <= 0:
            add(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= max(self.lr, 0):
            add(f"optim.min_lr must be in [0, optim.lr={self.lr}], got {self.min_lr}")
        if self.warmup_steps < 0:
            add(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        check_choice(problems, "optim.schedule", self.schedule, SCHEDULES)
        check_choice(problems, "optim.name", self.name, OPTIMIZERS)
        check_choice(problems, "optim.muon_adjust_lr", self.muon_adjust_lr, MUON_ADJUST_LR)
        if self.fused and self.foreach:
            add("optim.fused and optim.foreach cannot both be true; set one of them to null")
        if self.muon_lr <= 0 or self.muon_weight_decay < 0 or not 0.0 <= self.muon_momentum < 1.0:
            add(f"optim.muon_lr must be > 0, optim.muon_weight_decay >= 0 and optim.muon_momentum in [0, 1), got "
                f"{self.muon_lr}, {self.muon_weight_decay}, {self.muon_momentum}")  # fmt: skip
        if not 0.0 < self.decay_fraction <= 1.0:
            add(f"optim.decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.weight_decay < 0 or self.eps <= 0:
            add("optim.weight_decay must be >= 0 and optim.eps > 0")
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                add(f"optim.{key} must be in [0, 1), got {getattr(self, key)}")
        return problems


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

    def problems(self) -> list[str]:
        """This section's problems."""
        problems = []
        if self.max_new_tokens < 0 or self.num_samples < 0:
            problems.append("sample.max_new_tokens and sample.num_samples must be >= 0")
        if self.temperature < 0:
            problems.append(f"sample.temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"sample.top_k must be >= 1 or null, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            problems.append(f"sample.top_p must be in (0, 1] or null, got {self.top_p}")
        return problems


@dataclass(kw_only=True)
class EvalConfig:
    """``eval``: benchmark tasks run on the release (``final/``) at the end of a run, and optionally on a slice of each
    task every ``eval.every`` steps during training."""

    tasks: list[str] = field(default_factory=list)
    """Benchmark task names (see ``hf-gpt2 eval --help``); empty runs only the val loss."""
    limit: int | None = None
    """Examples per task in the evaluation after training (None: all)."""
    every: int = 0
    """Optimizer steps between evaluations of ``eval.tasks`` during training, on the first ``eval.every_limit``
    items of each task (TensorBoard ``eval_first<N>/<task>/<metric>``, ``history`` in eval.json); 0: only after
    training. The step where training ends is left to the evaluation after training."""
    every_limit: int | None = 200
    """Items per task in the evaluations during training (None: all, which can take long on big tasks)."""
    batch_size: int = 8
    """Batch size of the benchmark runner."""
    data: dict[str, str] = field(default_factory=dict)
    """Task name → local data path, for tasks that cannot be downloaded (offline)."""

    def problems(self) -> list[str]:
        """This section's problems (task names are checked against the evaluation registry before training)."""
        problems = []
        if self.limit is not None and self.limit < 1:
            problems.append(f"eval.limit must be >= 1 or null (all), got {self.limit}")
        if self.batch_size < 1:
            problems.append(f"eval.batch_size must be >= 1, got {self.batch_size}")
        if self.every < 0:
            problems.append(f"eval.every must be >= 0 (0: evaluate only after training), got {self.every}")
        if self.every > 0 and not self.tasks:
            problems.append(
                f"eval.every={self.every} evaluates eval.tasks during training, but eval.tasks is empty; name the "
                "tasks (e.g. eval.tasks=[hellaswag]) or set eval.every=0"
            )
        if self.every_limit is not None and self.every_limit < 1:
            problems.append(f"eval.every_limit must be >= 1 or null (all), got {self.every_limit}")
        return problems


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

    def problems(self) -> list[str]:
        """This section's problems."""
        problems = []
        if (self.push_final or self.push_checkpoints) and not self.repo_id:
            problems.append("hub.repo_id (USER/NAME) is required when hub.push_final or hub.push_checkpoints is true")
        problem = repo_id_problem(self.repo_id) if self.repo_id is not None else None
        if problem:
            problems.append(f"hub.repo_id={problem}")  # the rule a push and --repo-id apply
        if not self.checkpoint_revision:
            problems.append("hub.checkpoint_revision must be a branch name")
        return problems


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
            raise RecipeError(format_problems(problems))


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


def recipe_problems(recipe: Recipe) -> list[str]:
    """Return every problem of a recipe (or of any object with the section attributes); empty when it is valid."""
    problems = [problem for name in SECTIONS for problem in getattr(recipe, name).problems()]
    return problems + cross_section_problems(recipe)


def model_config_kwargs(recipe: Recipe, tokenizer: PreTrainedTokenizerBase | None = None) -> dict[str, Any]:
    """Return the ``HfGPT2Config(**kwargs)`` keyword arguments of a recipe's ``model`` section.

    A null ``model.bos_token_id`` / ``eos_token_id`` takes the tokenizer's id: ``tokenizer``'s when given, else
    GPT-2's 50256 (only known without a tokenizer for ``tokenizer.name: gpt2``).
    """
    kwargs = recipe.model.config_fields()
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
