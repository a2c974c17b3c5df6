"""Conversations → token ids + labels, through one Human/Assistant chat template.

Every conversation is rendered with :data:`CHAT_TEMPLATE` (installed on the tokenizer, so
``tokenizer.apply_chat_template`` on the release writes exactly what the model was trained on). Labels are -100
everywhere except on the assistant turns and the EOS that closes each of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from hf_gpt2.data.sft.formats import ROLES, Message
from hf_gpt2.errors import DataError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
HUMAN_HEADER = "\n\nHuman: "
ASSISTANT_HEADER = "\n\nAssistant:"
"""The generation prompt. The assistant's text starts with a space (`` Hello``), as in hh-rlhf and GPT-2's BPE."""
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] }}"
    "{%- elif message['role'] in ['user', 'human'] -%}{{ '\\n\\nHuman: ' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}{{ '\\n\\nAssistant:' }}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{%- else -%}{{ raise_exception('unknown role ' + message['role'] + '; use user, assistant or system') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '\\n\\nAssistant:' }}{%- endif -%}"
)
"""GPT-2 has no chat template; this is hh-rlhf's Human/Assistant format with an EOS closing each assistant turn."""


def install_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Set :data:`CHAT_TEMPLATE` on ``tokenizer`` (saved by ``save_pretrained`` as ``chat_template.jinja``).

    A different template already on the tokenizer is replaced, with a warning: the model is trained on this one.
    """
    current = getattr(tokenizer, "chat_template", None)
    if current and current != CHAT_TEMPLATE:
        logger.warning("replacing the tokenizer's chat template with hf_gpt2's Human/Assistant template")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def render_conversation(messages: Sequence[Message], eos_token: str) -> tuple[str, list[tuple[int, int]]]:
    """Render like :data:`CHAT_TEMPLATE` and return the text plus the character spans that are trained.

    Each span is an assistant turn: the space after ``Assistant:``, the content and the EOS.
    """
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    for message in messages:
        role, content = ROLES.get(message["role"], message["role"]), message["content"]
        if role == "system":
            pieces.append(content)
        elif role == "user":
            pieces.append(HUMAN_HEADER + content)
        elif role == "assistant":
            pieces.append(ASSISTANT_HEADER)
            length += len(ASSISTANT_HEADER)
            pieces.append(" " + content + eos_token)
            spans.append((length, length + len(pieces[-1])))
            length += len(pieces[-1])
            continue
        else:
            raise DataError(f"unknown role {role!r}; use user, assistant or system")
        length += len(pieces[-1])
    return "".join(pieces), spans


@dataclass(frozen=True)
class SFTExample:
    """One tokenized conversation: ``labels`` equal ``input_ids`` on trained tokens and -100 elsewhere."""

    input_ids: list[int]
    labels: list[int]


def tokenize_conversations(
    conversations: Sequence[Sequence[Message]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    sources: Sequence[str],
) -> list[SFTExample]:
    """Tokenize whole rendered conversations (as ``apply_chat_template`` does) and label the assistant spans.

    A token is trained when its first character lies in an assistant span. The first token of every example is never
    trained: in a packed row it would be predicted from the previous sample.

    Raises:
        DataError: naming ``sources[i]`` when example i has no trained token after truncation to ``max_length``.
    """
    eos = tokenizer.eos_token
    if eos is None:
        raise DataError("the tokenizer has no eos_token; SFT needs one to end each assistant turn")
    rendered = [render_conversation(messages, eos) for messages in conversations]
    encoded = tokenizer(
        [text for text, _ in rendered],
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
    )
    examples = []
    for i, ((_, spans), ids, offsets) in enumerate(
        zip(rendered, encoded["input_ids"], encoded["offset_mapping"], strict=True)
    ):
        starts = np.asarray([start for start, _ in offsets[:max_length]], dtype=np.int64)
        trained = np.zeros(len(starts), dtype=bool)
        for lo, hi in spans:
            trained |= (starts >= lo) & (starts < hi)
        trained[:1] = False
        if not trained.any():
            reason = "it has no assistant turn" if not spans else f"data.block_size={max_length} truncates them away"
            raise DataError(
                f"SFT sample {sources[i]} has no trained (assistant) token: {reason} "
                f"({len(ids)} tokens); fix the row, raise data.block_size, or set data.sft_untrainable=skip"
            )
        ids = ids[:max_length]
        examples.append(SFTExample(list(ids), np.where(trained, ids, IGNORE_INDEX).tolist()))
    return examples
