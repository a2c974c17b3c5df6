"""`hf-gpt2 generate`: sample from any causal LM folder or Hub id, streaming tokens as they come; `--chat` talks."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, set_seed

from hf_gpt2 import online
from hf_gpt2.data.sft.template import CHAT_TEMPLATE
from hf_gpt2.devices import resolve_device
from hf_gpt2.errors import CheckpointError, HfGPT2Error
from hf_gpt2.generation import (
    CHAT_STOP_STRINGS,
    ContextOverflowError,
    StopAwareStreamer,
    chat_reply,
    check_fits_context,
    context_limit,
    generate_text,
    prompt_length,
)
from hf_gpt2.locations import missing_source_problem
from hf_gpt2.tokenization import load_tokenizer_for

logger = logging.getLogger(__name__)

LENGTH_FLAG = "--max-new-tokens"


def run(args: argparse.Namespace) -> int:
    """Load the model, then stream a completion of ``--prompt`` or chat (``--chat``).

    The flags' ranges are checked while parsing (:mod:`hf_gpt2.commands.arguments`); here the device must exist and
    the prompt plus ``--max-new-tokens`` must fit in the model's context, both before anything is generated.
    """
    if args.chat and args.num_return_sequences != 1:
        raise HfGPT2Error("--chat answers with one reply; drop --num-return-sequences")
    device = resolve_device(args.device)
    model, tokenizer = load_for_generation(args.model, device, args.dtype, args.trust_remote_code)
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
    }
    if args.chat:
        check_fits_context(model.config, 1, args.max_new_tokens, length_setting=LENGTH_FLAG)
        return chat_loop(model, tokenizer, settings, args.seed)
    prompt_tokens = prompt_length(tokenizer, args.prompt)
    check_fits_context(model.config, prompt_tokens, args.max_new_tokens, length_setting=LENGTH_FLAG)
    return complete(model, tokenizer, args.prompt, settings, args.num_return_sequences, args.seed)


def load_for_generation(
    name_or_path: str, device: str | torch.device | None, dtype: str, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Any causal LM and its tokenizer (OpenAI's GPT-2 BPE when the folder has none), in eval mode on ``device``.

    Raises:
        CheckpointError: the folder does not exist, or holds no causal LM.
        HubError: a Hub id while the Hub cannot be reached.
        DeviceError: ``device`` is not available here.
    """
    problem = missing_source_problem(str(name_or_path), "--model")
    if problem:
        raise CheckpointError(problem)
    device = resolve_device(device)
    online.require_hub_reachable_for(str(name_or_path), f"download {name_or_path}")
    kwargs = {"trust_remote_code": trust_remote_code}
    if dtype != "auto":
        kwargs["dtype"] = getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = online.network_problem(err, f"download {name_or_path}") or first
        raise CheckpointError(f"could not load a causal LM from {name_or_path!r}: {first}") from err
    adapter = Path(name_or_path) / "adapter"
    if (adapter / "adapter_config.json").is_file():  # a release with kept LoRA adapters (train.lora.merge: false)
        logger.info("applying the LoRA adapter in %s", adapter)
        model = PeftModel.from_pretrained(model, adapter)
    return model.to(device).eval(), load_tokenizer_for(name_or_path)


def complete(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    settings: dict,
    num_sequences: int,
    seed: int | None,
) -> int:
    """Stream ``num_sequences`` continuations of ``prompt`` to stdout, one after the other."""
    if seed is not None:
        set_seed(seed)
    for i in range(num_sequences):
        if num_sequences > 1:
            sys.stdout.write(f"--- sample {i + 1} ---\n")
        sys.stdout.write(prompt)
        sys.stdout.flush()
        streamer = StopAwareStreamer(tokenizer)
        generate_text(model, tokenizer, prompt, streamer=streamer, length_setting=LENGTH_FLAG, **settings)
    return 0


def chat_loop(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: dict, seed: int | None) -> int:
    """Read Human turns from stdin and stream the Assistant's replies until an empty line or end of input."""
    if not getattr(tokenizer, "chat_template", None):
        logger.warning("the tokenizer has no chat template; using hf_gpt2's Human/Assistant template")
        tokenizer.chat_template = CHAT_TEMPLATE
    if seed is not None:
        set_seed(seed)
    interactive = sys.stdin.isatty()
    found = context_limit(model.config)
    limit = found[0] if found else None
    messages: list[dict[str, str]] = []
    while True:
        if interactive:
            sys.stdout.write("Human: ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        turn = [*messages, {"role": "user", "content": line.strip()}]
        if limit is not None:
            turn = _fit_context(tokenizer, turn, limit - settings["max_new_tokens"])
        try:  # before "Assistant:" is written: a message that cannot fit gets no answer
            prompt = tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
            prompt_tokens = prompt_length(tokenizer, prompt)
            check_fits_context(model.config, prompt_tokens, settings["max_new_tokens"], length_setting=LENGTH_FLAG)
        except ContextOverflowError as err:
            if not interactive:
                raise
            sys.stderr.write(f"hf-gpt2 generate: that message is too long: {err}\n")  # the chat goes on without it
            continue
        sys.stdout.write("Assistant: ")
        sys.stdout.flush()
        streamer = StopAwareStreamer(tokenizer, stop_strings=CHAT_STOP_STRINGS)
        reply = chat_reply(model, tokenizer, turn, streamer=streamer, length_setting=LENGTH_FLAG, **settings)
        messages = [*turn, {"role": "assistant", "content": reply}]


def _fit_context(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], budget: int
) -> list[dict[str, str]]:
    """Drop the oldest exchanges until the prompt fits ``budget`` tokens (the newest Human turn always stays)."""
    while len(messages) > 1:
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= budget:
            break
        messages = messages[2:]
    return messages
