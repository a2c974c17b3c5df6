"""Text generation for any causal LM: one function for the training loop's samples, and the streaming pieces of
``hf-gpt2 generate`` (a streamer that holds back stop strings, and one chat turn).

A model attends to at most its context (``config.n_positions``, or ``max_position_embeddings``): the prompt and the
new tokens must fit in it together. A request that does not fit is refused before anything is generated, with the
numbers and the fix (:func:`check_fits_context`); there is no sliding window, so a continuation is never produced
from a silently shortened prompt. The command line, :func:`generate_text` and the end-of-training samples all
refuse the same way, each naming its own setting.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import torch
from transformers import TextStreamer, set_seed

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.ranges import SAMPLING

CHAT_STOP_STRINGS = ("\n\nHuman:",)
"""Where a chat reply ends when the model writes the next Human turn itself instead of EOS (base models do)."""


class GenerationSettingsError(HfGPT2Error):
    """A sampling setting is outside its range."""


class ContextOverflowError(HfGPT2Error):
    """The prompt and the tokens asked for do not fit in the model's context."""


def context_limit(config: Any) -> tuple[int, str] | None:
    """A model config's context and the field it comes from (``n_positions``, ``max_position_embeddings``), or None
    for a model without a fixed one."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value, name
    return None


def check_fits_context(
    config: Any, prompt_tokens: int, max_new_tokens: int, *, length_setting: str = "max_new_tokens"
) -> None:
    """Refuse a request whose prompt plus ``max_new_tokens`` exceeds the model's context.

    Args:
        config: the model's config (``model.config``), which says the context.
        prompt_tokens: tokens of the prompt (an empty prompt is one token, the EOS it starts from).
        max_new_tokens: tokens asked for.
        length_setting: how the message names the new-token count (``--max-new-tokens``, ``sample.max_new_tokens``).

    Raises:
        ContextOverflowError: naming both numbers, the context and what to lower.
    """
    found = context_limit(config)
    if found is None or prompt_tokens + max_new_tokens <= found[0]:
        return
    context, field = found
    where = f"the model's context of {context} positions (config.{field})"
    shorten = f"shorten the prompt to at most {context - max_new_tokens} tokens" if max_new_tokens < context else ""
    if prompt_tokens >= context:
        fix = shorten or f"shorten the prompt and lower {length_setting} below {context}"
        raise ContextOverflowError(
            f"the prompt is {prompt_tokens} tokens, which fills {where} with no room for "
            f"{length_setting}={max_new_tokens}; {fix}"
        )
    raise ContextOverflowError(
        f"the prompt ({prompt_tokens} token{'s' if prompt_tokens != 1 else ''}) + {length_setting}={max_new_tokens} "
        f"= {prompt_tokens + max_new_tokens} "
        f"positions exceeds {where}; lower {length_setting} to at most {context - prompt_tokens}"
        + (f", or {shorten}" if shorten else "")
    )


def prompt_length(tokenizer: Any, prompt: str) -> int:
    """Tokens :func:`generate_text` feeds for ``prompt`` (an empty prompt is the one EOS token it starts from)."""
    return max(1, len(tokenizer(prompt, add_special_tokens=False)["input_ids"])) if prompt else 1


def sampling_kwargs(
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    num_return_sequences: int = 1,
) -> dict[str, Any]:
    """``model.generate`` keyword arguments; ``temperature`` 0 means greedy decoding, ``top_k`` 0 or None and
    ``top_p`` None turn those filters off.

    Raises:
        GenerationSettingsError: a value outside its range (:data:`hf_gpt2.ranges.SAMPLING`), naming it.
    """
    given = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "repetition_penalty": repetition_penalty,
        "num_return_sequences": num_return_sequences,
    }
    problems = [SAMPLING[name].problem(name, value) for name, value in given.items() if value is not None]
    if any(problems):
        raise GenerationSettingsError("; ".join(p for p in problems if p))
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
    length_setting: str = "max_new_tokens",
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
        length_setting: how a refusal names the new-token count (``--max-new-tokens`` on the command line).
        **settings: :func:`sampling_kwargs` arguments: max_new_tokens, temperature (0: greedy), top_k, top_p,
            repetition_penalty, num_return_sequences.

    Raises:
        GenerationSettingsError: a setting outside its range.
        ContextOverflowError: the prompt and ``max_new_tokens`` do not fit in the model's context (nothing is
            generated; see :func:`check_fits_context`).
    """
    kwargs = sampling_kwargs(**settings)
    if seed is not None:
        set_seed(seed)
    device = _device_of(model)
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False) if prompt else None
    if encoded is None or encoded["input_ids"].shape[1] == 0:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        encoded = {"input_ids": torch.tensor([[bos]]), "attention_mask": torch.ones(1, 1, dtype=torch.long)}
    input_ids = encoded["input_ids"].to(device)
    check_fits_context(model.config, input_ids.shape[1], kwargs["max_new_tokens"], length_setting=length_setting)
    extra = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    output = model.generate(
        input_ids=input_ids,
        attention_mask=encoded["attention_mask"].to(device),
        pad_token_id=_pad_token_id(model, tokenizer),
        streamer=streamer,
        **kwargs,
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


__all__ = [
    "CHAT_STOP_STRINGS",
    "ContextOverflowError",
    "GenerationSettingsError",
    "StopAwareStreamer",
    "chat_reply",
    "check_fits_context",
    "context_limit",
    "generate_text",
    "prompt_length",
    "sampling_kwargs",
]
