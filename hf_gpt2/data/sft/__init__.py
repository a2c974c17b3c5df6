"""Supervised finetuning data: conversations → token ids + labels trained only on the assistant's turns."""

from hf_gpt2.data.sft.prepare import *  # noqa: F403
