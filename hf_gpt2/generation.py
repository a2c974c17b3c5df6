"""Text generation for any causal LM: one function for the training loop's samples, and the streaming pieces of
``hf-gpt2 generate`` (a streamer that holds back stop strings, and one chat turn)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import torch
from transformers import TextStreamer, set_seed

CHAT_STOP_STRINGS = ("\n\nHuman:",)
"""Where a chat reply ends when the model writes the next Human turn itself instead of EOS (base models do)."""


def sampling_kwargs(
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    num_return_sequences: int = 1,
) -> dict[str, Any]:
    """``model.generate`` keyword arguments; ``temperature <= 0`` means greedy decoding."""
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_return_sequences": num_return_sequences}
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p if top_p else 1.0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    if repetition_penalty is not None:
        kwargs["repetition_penalty"] = repetition_penalty
    return kwargs


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def _pad_token_id(model: Any, tokenizer: Any) -> int | None:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else model.config.eos_token_id
    return eos[0] if isinstance(eos, list) else eos


@torch.no_grad()
def generate_text(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    seed: int | None = None,
    streamer: Any = None,
    stop_strings: Sequence[str] | None = None,
    **settings: Any,
) -> list[str]:
    """Continue ``prompt`` and return the generated continuations (without the prompt), one per sequence.

    Args:
        model: any causal LM (hf_gpt2, stock GPT-2, a peft model, ...), in eval mode.
        tokenizer: its tokenizer.
        prompt: the text to continue ("" starts from the EOS token).
        seed: seeds torch (and CUDA) first, for repeatable sampling.
        streamer: a transformers streamer that receives tokens as they come (one sequence only).
        stop_strings: stop a sequence once it produced one of these (they stay in the returned text).
        **settings: :func:`sampling_kwargs` arguments: max_new_tokens, temperature (<= 0: greedy), top_k, top_p,
            repetition_penalty, num_return_sequences.
    """
    if seed is not None:
        set_seed(seed)
    device = _device_of(model)
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False) if prompt else None
    if encoded is None or encoded["input_ids"].shape[1] == 0:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        encoded = {"input_ids": torch.tensor([[bos]]), "attention_mask": torch.ones(1, 1, dtype=torch.long)}
    input_ids = encoded["input_ids"].to(device)
    extra = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    output = model.generate(
        input_ids=input_ids,
        attention_mask=encoded["attention_mask"].to(device),
        pad_token_id=_pad_token_id(model, tokenizer),
        streamer=streamer,
        **sampling_kwargs(**settings),
        **extra,
    )
    return tokenizer.batch_decode(output[:, input_ids.shape[1] :], skip_special_tokens=True)


class StopAwareStreamer(TextStreamer):
    """Writes text to ``stream`` as it is decoded, holding back any tail that may begin a stop string.

    The stop string itself is never written, so a chat reply shows without the model's next ``Human:`` header.
    """

    def __init__(self, tokenizer: Any, stream: TextIO | None = None, stop_strings: Sequence[str] = (), **kwargs: Any):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True, **kwargs)
        self.stream = stream or sys.stdout
        self.stop_strings = tuple(stop_strings)
        self._held = ""
        self._stopped = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if self._stopped:
            text = ""
        self._held += text
        cut = min((self._held.find(s) for s in self.stop_strings if s in self._held), default=-1)
        if cut >= 0:
            self.stream.write(self._held[:cut])
            self._held, self._stopped = "", True
        else:
            keep = max((_overlap(self._held, s) for s in self.stop_strings), default=0)
            if stream_end:
                keep = 0
            self.stream.write(self._held[: len(self._held) - keep])
            self._held = self._held[len(self._held) - keep :]
        if stream_end:
            self.stream.write("\n")
            self._held, self._stopped = "", False
        self.stream.flush()


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def strip_stop_strings(text: str, stop_strings: Sequence[str] = CHAT_STOP_STRINGS) -> str:
    """Cut ``text`` at the first stop string and trim the space the template puts after ``Assistant:``."""
    cuts = [text.find(s) for s in stop_strings if s in text]
    return (text[: min(cuts)] if cuts else text).strip()


def chat_reply(
    model: Any, tokenizer: Any, messages: list[dict[str, str]], *, streamer: Any = None, **settings: Any
) -> str:
    """Answer the conversation ``messages`` (roles user/assistant) with the tokenizer's chat template.

    Returns:
        The assistant's reply, cut at EOS or at the next ``Human:`` header the model writes.
    """
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    (reply,) = generate_text(
        model,
        tokenizer,
        prompt,
        streamer=streamer,
        stop_strings=CHAT_STOP_STRINGS,
        **{**settings, "num_return_sequences": 1},
    )
    return strip_stop_strings(reply)


__all__ = ["CHAT_STOP_STRINGS", "StopAwareStreamer", "chat_reply", "generate_text", "sampling_kwargs"]
