"""hf_gpt2: GPT-2, all in — an HF-native GPT-2 that is pretrained, finetuned, benchmarked and shared on the Hub.

Importing the package registers ``model_type: hf_gpt2`` with transformers' Auto classes, so
``AutoModelForCausalLM.from_pretrained(folder)`` works without ``trust_remote_code``. Releases also carry the
configuration and modeling files, so they load with ``trust_remote_code=True`` where this package is not installed.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from hf_gpt2.configuration_hf_gpt2 import HfGPT2Config
from hf_gpt2.modeling_hf_gpt2 import (
    HfGPT2ForCausalLM,
    HfGPT2ForQuestionAnswering,
    HfGPT2ForSequenceClassification,
    HfGPT2ForTokenClassification,
    HfGPT2Model,
    HfGPT2PreTrainedModel,
)
from hf_gpt2.tokenization import load_gpt2_tiktoken, load_gpt2_tokenizer

__version__ = "0.1.0"

AutoConfig.register(HfGPT2Config.model_type, HfGPT2Config, exist_ok=True)
HfGPT2Config.register_for_auto_class()
for _auto_class, _model_class in (
    (AutoModel, HfGPT2Model),
    (AutoModelForCausalLM, HfGPT2ForCausalLM),
    (AutoModelForSequenceClassification, HfGPT2ForSequenceClassification),
    (AutoModelForTokenClassification, HfGPT2ForTokenClassification),
    (AutoModelForQuestionAnswering, HfGPT2ForQuestionAnswering),
):
    _auto_class.register(HfGPT2Config, _model_class, exist_ok=True)
    # saved folders get a copy of the model files and an `auto_map` naming every class, for trust_remote_code
    _model_class.register_for_auto_class(_auto_class.__name__)

__all__ = [
    "HfGPT2Config",
    "HfGPT2Model",
    "HfGPT2ForCausalLM",
    "HfGPT2ForSequenceClassification",
    "HfGPT2ForTokenClassification",
    "HfGPT2ForQuestionAnswering",
    "HfGPT2PreTrainedModel",
    "load_gpt2_tokenizer",
    "load_gpt2_tiktoken",
    "__version__",
]
