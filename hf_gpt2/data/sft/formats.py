"""SFT rows → conversations: three row formats, told apart by their columns (``data.sft_format: auto``).

* ``hh``: Anthropic/hh-rlhf transcripts, ``"\\n\\nHuman: …\\n\\nAssistant: …"`` in one column (``chosen``);
* ``messages``: a list of ``{"role", "content"}`` turns (``user``/``human``, ``assistant``, ``system``);
* ``prompt_completion``: a prompt column and a completion (or response) column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hf_gpt2.errors import DataError
from hf_gpt2.recipe import DataConfig

SFT_FORMATS = ("auto", "hh", "messages", "prompt_completion")
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "bot": "assistant",
         "system": "system"}  # fmt: skip
"""Role names found in SFT data → the template's roles."""
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_MESSAGE_FIELDS = ("messages", "conversations")
_RESPONSE_FIELDS = ("completion", "response")

Message = dict[str, str]


def parse_hh_transcript(text: str, where: str = "transcript") -> list[Message]:
    """Split an hh-rlhf transcript ``"\\n\\nHuman: …\\n\\nAssistant: …"`` into messages.

    Text before the first ``Human:`` becomes a system message; the single space after each ``Human:`` /
    ``Assistant:`` belongs to the format, not the content.

    Raises:
        DataError: if the text holds no ``\\n\\nHuman:`` or ``\\n\\nAssistant:`` turn.
    """
    parts = _HH_TURN.split(text)
    if len(parts) < 3:
        raise DataError(f"{where} has no '\\n\\nHuman:' / '\\n\\nAssistant:' turns: {text[:80]!r}")
    messages: list[Message] = [{"role": "system", "content": parts[0]}] if parts[0] else []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content[1:] if content.startswith(" ") else content})
    return messages


def detect_sft_format(columns: Sequence[str], data: DataConfig) -> str:
    """Resolve ``data.sft_format`` (``auto`` looks at the column names).

    Raises:
        DataError: if the format is unknown or the columns fit none of the formats.
    """
    wanted = data.sft_format
    if wanted not in SFT_FORMATS:
        raise DataError(f"data.sft_format={wanted!r} is not one of {', '.join(SFT_FORMATS)}")
    if wanted != "auto":
        return wanted
    if any(name in columns for name in _MESSAGE_FIELDS):
        return "messages"
    if data.sft_prompt_field in columns and _response_field(columns, data) is not None:
        return "prompt_completion"
    if _transcript_field(columns, data) is not None:
        return "hh"
    raise DataError(
        f"cannot tell the SFT format from the columns {list(columns)}: expected 'messages', "
        f"'{data.sft_prompt_field}' + 'completion'/'response', or an hh-rlhf transcript column "
        f"('{data.text_field}' or 'chosen'); set data.sft_format and the field names"
    )


def _response_field(columns: Sequence[str], data: DataConfig) -> str | None:
    candidates = (data.sft_response_field,) if data.sft_response_field else _RESPONSE_FIELDS
    return next((name for name in candidates if name in columns), None)


def _transcript_field(columns: Sequence[str], data: DataConfig) -> str | None:
    return next((name for name in (data.text_field, "chosen") if name in columns), None)


def record_to_messages(record: dict[str, Any], sft_format: str, data: DataConfig, where: str) -> list[Message]:
    """Turn one source row into a conversation in the resolved ``sft_format``.

    Raises:
        DataError: if the row lacks the needed column or a turn is malformed; ``where`` names the row.
    """
    columns = list(record)
    if sft_format == "hh":
        field = _transcript_field(columns, data)
        if field is None or not isinstance(record[field], str):
            raise DataError(f"{where} has no transcript string in '{data.text_field}' or 'chosen' (columns {columns})")
        return parse_hh_transcript(record[field], where)
    if sft_format == "messages":
        field = next((name for name in _MESSAGE_FIELDS if name in columns), None)
        if field is None or not isinstance(record[field], list):
            raise DataError(f"{where} has no 'messages' list (columns {columns})")
        return [_normalize_message(turn, where) for turn in record[field]]
    response = _response_field(columns, data)
    prompt = record.get(data.sft_prompt_field)
    if response is None or not isinstance(prompt, str) or not isinstance(record[response], str):
        raise DataError(
            f"{where} needs string columns '{data.sft_prompt_field}' and "
            f"'{data.sft_response_field or 'completion/response'}' (columns {columns})"
        )
    if _HH_TURN.search(prompt):  # an hh-style prompt ending in "\n\nAssistant:" (e.g. Dahoas/full-hh-rlhf)
        turns = parse_hh_transcript(prompt, where)
        if turns[-1]["role"] == "assistant" and not turns[-1]["content"].strip():
            turns.pop()
    else:
        turns = [{"role": "user", "content": prompt}]
    completion = record[response]
    return [*turns, {"role": "assistant", "content": completion[1:] if completion.startswith(" ") else completion}]


def _normalize_message(turn: Any, where: str) -> Message:
    if not isinstance(turn, dict):
        raise DataError(f"{where}: a message is {type(turn).__name__}, not a dict with 'role' and 'content'")
    role, content = turn.get("role", turn.get("from")), turn.get("content", turn.get("value"))
    if role not in ROLES or not isinstance(content, str):
        raise DataError(f"{where}: message {str(turn)[:80]} needs a role in {sorted(ROLES)} and a string content")
    return {"role": ROLES[role], "content": content}
