"""Load the model to evaluate: an hf_gpt2 folder, any causal-LM folder, or a Hub id (stock GPT-2 included)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hf_gpt2 import online
from hf_gpt2.devices import resolve_device
from hf_gpt2.errors import CheckpointError
from hf_gpt2.locations import missing_source_problem
from hf_gpt2.tokenization import GPT2_VOCAB_SIZE, load_gpt2_tokenizer

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")


def load_model_and_tokenizer(
    name_or_path: str | Path, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode on ``device``.

    hf_gpt2 folders load through the Auto classes that ``import hf_gpt2`` registers. A model without a tokenizer gets
    OpenAI's GPT-2 BPE, and the log says so (only if its vocabulary is large enough for those ids).

    Args:
        name_or_path: a local folder or a Hub id (``"openai-community/gpt2"``, ``"user/model"``).
        device: where to run (default: CUDA when available, else CPU); one this machine lacks is an error.
        dtype: weight dtype (``"float32"``, ``"bfloat16"``, ...); default: the checkpoint's, as transformers loads it.

    Raises:
        DeviceError: ``device`` is not available here.
        HubError: a Hub id while the Hub cannot be reached.
        CheckpointError: the folder does not exist, the folder or Hub id does not hold a causal LM, or it has no
            tokenizer and a vocabulary too small for GPT-2's BPE.
    """
    source = str(name_or_path)
    local = Path(source).expanduser()
    problem = missing_source_problem(source, "--model")
    if problem:
        raise CheckpointError(problem)
    if local.exists() and not (local / "config.json").is_file():
        raise CheckpointError(f"{source} has no config.json; expected a model folder (save_pretrained output)")
    device = resolve_device(device)
    online.require_hub_reachable_for(source, f"download {source}")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise CheckpointError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    kwargs = {} if dtype is None else {"dtype": dtype}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        reason = online.network_problem(err, f"download {source}") or str(err).strip().splitlines()[0]
        raise CheckpointError(f"cannot load a causal LM from {source!r}: {reason}") from err
    model.to(device).eval()
    return model, _load_tokenizer(source, local, model)


def _load_tokenizer(source: str, local: Path, model: PreTrainedModel) -> PreTrainedTokenizerBase:
    if local.is_dir() and not any((local / name).is_file() for name in TOKENIZER_FILES):
        reason = f"the folder {source} has no tokenizer files ({', '.join(TOKENIZER_FILES)})"
    else:
        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as err:
            reason = f"no tokenizer loads from {source!r} ({type(err).__name__}: {err})"
    vocab_size = int(model.config.vocab_size)
    if vocab_size < GPT2_VOCAB_SIZE:
        raise CheckpointError(
            f"{reason}, and its vocab_size {vocab_size} is smaller than the GPT-2 BPE's {GPT2_VOCAB_SIZE}; "
            "save the tokenizer next to the model (tokenizer.save_pretrained)"
        )
    logger.warning("%s; using OpenAI's GPT-2 BPE tokenizer instead (hf_gpt2.tokenization.load_gpt2_tokenizer)", reason)
    return load_gpt2_tokenizer()
