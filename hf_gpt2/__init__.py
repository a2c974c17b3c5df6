"""hf_gpt2: GPT-2, all in — an HF-native GPT-2 that is pretrained, finetuned, benchmarked and shared on the Hub.

Importing the package registers ``model_type: hf_gpt2`` with transformers' Auto classes, so
``AutoModelForCausalLM.from_pretrained(folder)`` works without ``trust_remote_code``. Releases also carry the
configuration and modeling files, so they load with ``trust_remote_code=True`` where this package is not installed.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from hf_gpt2.configuration_hf_gpt2 import HfGPT2Config
from hf_gpt2.modeling_hf_gpt2 import HfGPT2ForCausalLM, HfGPT2Model, HfGPT2PreTrainedModel
from hf_gpt2.tokenization import load_gpt2_tiktoken, load_gpt2_tokenizer

__version__ = "0.1.0"

AutoConfig.register(HfGPT2Config.model_type, HfGPT2Config, exist_ok=True)
AutoModel.register(HfGPT2Config, HfGPT2Model, exist_ok=True)
AutoModelForCausalLM.register(HfGPT2Config, HfGPT2ForCausalLM, exist_ok=True)
# Saved folders get an `auto_map` and a copy of the two model files, so they load through trust_remote_code too.
HfGPT2Config.register_for_auto_class()
HfGPT2Model.register_for_auto_class("AutoModel")
HfGPT2ForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "HfGPT2Config",
    "HfGPT2Model",
    "HfGPT2ForCausalLM",
    "HfGPT2PreTrainedModel",
    "load_gpt2_tokenizer",
    "load_gpt2_tiktoken",
    "__version__",
]
