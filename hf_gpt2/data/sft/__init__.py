"""Supervised finetuning data: conversations → token ids + labels trained only on the assistant's turns.

- :mod:`~hf_gpt2.data.sft.formats`: rows → conversations (``hh``, ``messages``, ``prompt_completion``);
- :mod:`~hf_gpt2.data.sft.template`: the Human/Assistant chat template, conversations → ids + labels;
- :mod:`~hf_gpt2.data.sft.prepare`: read the rows from the pretraining sources, tokenize, split, cache;
- :mod:`~hf_gpt2.data.sft.loader`: packed or padded batches in a seed-fixed, resumable order.
"""

from hf_gpt2.data.sft.formats import SFT_FORMATS, Message, detect_sft_format, parse_hh_transcript, record_to_messages
from hf_gpt2.data.sft.loader import SFTLoader, pack_examples, pad_examples
from hf_gpt2.data.sft.prepare import PreparedSFT, SFTSplit, prepare_sft_data
from hf_gpt2.data.sft.template import (
    ASSISTANT_HEADER,
    CHAT_TEMPLATE,
    HUMAN_HEADER,
    IGNORE_INDEX,
    SFTExample,
    install_chat_template,
    render_conversation,
    tokenize_conversations,
)

__all__ = [
    "ASSISTANT_HEADER",
    "CHAT_TEMPLATE",
    "HUMAN_HEADER",
    "IGNORE_INDEX",
    "SFT_FORMATS",
    "Message",
    "PreparedSFT",
    "SFTExample",
    "SFTLoader",
    "SFTSplit",
    "detect_sft_format",
    "install_chat_template",
    "pack_examples",
    "pad_examples",
    "parse_hh_transcript",
    "prepare_sft_data",
    "record_to_messages",
    "render_conversation",
    "tokenize_conversations",
]
