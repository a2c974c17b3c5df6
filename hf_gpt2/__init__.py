"""hf_gpt2: GPT-2, all in — an HF-native GPT-2 that is pretrained, finetuned, benchmarked and shared on the Hub.

``import hf_gpt2`` is cheap (no torch, no transformers): the model classes and the GPT-2 tokenizer load on first use
(``hf_gpt2.HfGPT2ForCausalLM``), and ``model_type: hf_gpt2`` is registered with transformers' Auto classes as soon as
those load (see :mod:`hf_gpt2.auto_registration`), so ``AutoModelForCausalLM.from_pretrained(folder)`` works without
``trust_remote_code``. Releases also carry the configuration and modeling files, so they load with
``trust_remote_code=True`` where this package is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from hf_gpt2 import auto_registration

__version__ = "0.1.0"

AUTO_CLASSES: dict[str, str] = {
    "HfGPT2Model": "AutoModel",
    "HfGPT2ForCausalLM": "AutoModelForCausalLM",
    "HfGPT2ForSequenceClassification": "AutoModelForSequenceClassification",
    "HfGPT2ForTokenClassification": "AutoModelForTokenClassification",
    "HfGPT2ForQuestionAnswering": "AutoModelForQuestionAnswering",
}
"""Each model class of ``modeling_hf_gpt2`` → the transformers Auto class it registers with (one line per head)."""

_LAZY: dict[str, str] = {
    "HfGPT2Config": "hf_gpt2.configuration_hf_gpt2",
    "HfGPT2PreTrainedModel": "hf_gpt2.modeling_hf_gpt2",
    **dict.fromkeys(AUTO_CLASSES, "hf_gpt2.modeling_hf_gpt2"),
    "load_gpt2_tokenizer": "hf_gpt2.tokenization",
    "load_gpt2_tiktoken": "hf_gpt2.tokenization",
}
"""Public names and the module that defines them, imported when first asked for."""

auto_registration.install(AUTO_CLASSES)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hf_gpt2' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["AUTO_CLASSES", "__version__", *_LAZY]
