"""`hf-gpt2 generate`: sample from any causal LM folder or Hub id, streaming tokens as they come; `--chat` talks."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, set_seed

from hf_gpt2.data.sft.template import CHAT_TEMPLATE
from hf_gpt2.errors import CheckpointError, HfGPT2Error
from hf_gpt2.generation import CHAT_STOP_STRINGS, StopAwareStreamer, chat_reply, generate_text
from hf_gpt2.tokenization import load_tokenizer_for

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    """Load the model, then stream a completion of ``--prompt`` or chat (``--chat``)."""
    if args.max_new_tokens < 1 or args.num_return_sequences < 1:
        raise HfGPT2Error("--max-new-tokens and --num-return-sequences must be at least 1")
    if args.chat and args.num_return_sequences != 1:
        raise HfGPT2Error("--chat answers with one reply; drop --num-return-sequences")
    model, tokenizer = load_for_generation(args.model, args.device, args.dtype, args.trust_remote_code)
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
    }
    if args.chat:
        return chat_loop(model, tokenizer, settings, args.seed)
    return complete(model, tokenizer, args.prompt, settings, args.num_return_sequences, args.seed)


def load_for_generation(
    name_or_path: str, device: str | None, dtype: str, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Any causal LM and its tokenizer (OpenAI's GPT-2 BPE when the folder has none), in eval mode on ``device``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {"trust_remote_code": trust_remote_code}
    if dtype != "auto":
        kwargs["dtype"] = getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
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
        generate_text(model, tokenizer, prompt, streamer=StopAwareStreamer(tokenizer), **settings)
    return 0


def chat_loop(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: dict, seed: int | None) -> int:
    """Read Human turns from stdin and stream the Assistant's replies until an empty line or end of input."""
    if not getattr(tokenizer, "chat_template", None):
        logger.warning("the tokenizer has no chat template; using hf_gpt2's Human/Assistant template")
        tokenizer.chat_template = CHAT_TEMPLATE
    if seed is not None:
        set_seed(seed)
    interactive = sys.stdin.isatty()
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 1024)
    messages: list[dict[str, str]] = []
    while True:
        if interactive:
            sys.stdout.write("Human: ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        messages.append({"role": "user", "content": line.strip()})
        messages = _fit_context(tokenizer, messages, limit - settings["max_new_tokens"])
        sys.stdout.write("Assistant: ")
        sys.stdout.flush()
        streamer = StopAwareStreamer(tokenizer, stop_strings=CHAT_STOP_STRINGS)
        reply = chat_reply(model, tokenizer, messages, streamer=streamer, **settings)
        messages.append({"role": "assistant", "content": reply})


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
