"""SFT data: row formats, the Human/Assistant template, assistant-only labels, untrainable samples, the cache."""

from __future__ import annotations

import json

import pytest

from hf_gpt2.data.sft import (
    CHAT_TEMPLATE,
    IGNORE_INDEX,
    detect_sft_format,
    install_chat_template,
    parse_hh_transcript,
    prepare_sft_data,
    record_to_messages,
    render_conversation,
    tokenize_conversations,
)
from hf_gpt2.errors import DataError
from hf_gpt2.recipe import recipe_from_dict

HH = "\n\nHuman: Hi\n\nAssistant: Hello there\n\nHuman: Bye\n\nAssistant: See you"


def sft_recipe(tmp_path, source, **data):
    return recipe_from_dict(
        {
            "run": {"seed": 3},
            "data": {"source": str(source), "format": "sft", "cache_dir": str(tmp_path / "cache"), "block_size": 64,
                     "val_fraction": 0.25, **data},
            "train": {"max_steps": 1, "micro_batch_size": 2},
        }
    )  # fmt: skip


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_hh_transcript_parses_into_turns():
    assert parse_hh_transcript(HH) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "See you"},
    ]
    with pytest.raises(DataError, match="row 7"):
        parse_hh_transcript("no turns here", "row 7")


def test_formats_are_detected_and_read(tmp_path):
    data = sft_recipe(tmp_path, "x.jsonl").data
    assert detect_sft_format(["chosen", "rejected"], data) == "hh"
    assert detect_sft_format(["messages"], data) == "messages"
    assert detect_sft_format(["prompt", "completion"], data) == "prompt_completion"
    assert detect_sft_format(["prompt", "response"], data) == "prompt_completion"
    with pytest.raises(DataError, match="cannot tell the SFT format"):
        detect_sft_format(["question", "answer"], data)
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    assert record_to_messages({"messages": chat}, "messages", data, "#0") == chat
    assert record_to_messages({"prompt": "Hi", "completion": " Yo"}, "prompt_completion", data, "#0") == chat
    # hh-style prompts (e.g. Dahoas/full-hh-rlhf) keep their turns; the trailing empty "Assistant:" is the cue
    pc = {"prompt": "\n\nHuman: Hi\n\nAssistant: Yo\n\nHuman: And?\n\nAssistant:", "response": " Done"}
    assert record_to_messages(pc, "prompt_completion", data, "#0") == [
        *chat, {"role": "user", "content": "And?"}, {"role": "assistant", "content": "Done"}
    ]  # fmt: skip


def _labelled(tokenizer, messages, max_length=100):
    (example,) = tokenize_conversations([messages], tokenizer, max_length, ["#0"])
    return [
        (tokenizer.decode([t]), label != IGNORE_INDEX)
        for t, label in zip(example.input_ids, example.labels, strict=True)
    ]


def test_single_turn_mask_by_hand(gpt2_tokenizer):
    tokens = _labelled(gpt2_tokenizer, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    assert tokens == [
        ("\n", False), ("\n", False), ("Human", False), (":", False), (" Hi", False),
        ("\n", False), ("\n", False), ("Assistant", False), (":", False),
        (" Hello", True), ("<|endoftext|>", True),
    ]  # fmt: skip


def test_multi_turn_mask_by_hand(gpt2_tokenizer):
    tokens = _labelled(gpt2_tokenizer, parse_hh_transcript(HH))
    trained = [i for i, (_, on) in enumerate(tokens) if on]
    assert trained == [9, 10, 11, 21, 22, 23]
    assert [tokens[i][0] for i in trained] == [" Hello", " there", "<|endoftext|>", " See", " you", "<|endoftext|>"]
    assert [t for t, _ in tokens[12:21]] == ["\n", "\n", "Human", ":", " Bye", "\n", "\n", "Assistant", ":"]


def test_labels_equal_the_saved_templates_assistant_mask(gpt2_tokenizer, tmp_path):
    """The release's tokenizer renders exactly the training text, and its assistant mask equals our labels."""
    from transformers import AutoTokenizer

    install_chat_template(gpt2_tokenizer)
    gpt2_tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert reloaded.chat_template == CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, *parse_hh_transcript(HH)]
    text, _ = render_conversation(messages, reloaded.eos_token)
    assert reloaded.apply_chat_template(messages, tokenize=False) == text
    prompt = reloaded.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "Be brief.\n\nHuman: Hi\n\nAssistant:"
    unicode = [
        {"role": "user", "content": "Héllo 🤗 日本語?"},
        {"role": "assistant", "content": "🤗 naïve — 東京 "},
        {"role": "user", "content": "  spaces \n\n"},
        {"role": "assistant", "content": "\n trailing  "},
    ]
    for conversation in (messages, unicode):
        out = reloaded.apply_chat_template(conversation, return_dict=True, return_assistant_tokens_mask=True)
        (example,) = tokenize_conversations([conversation], reloaded, 100, ["#0"])
        assert out["input_ids"] == example.input_ids
        assert out["assistant_masks"] == [int(label != IGNORE_INDEX) for label in example.labels]


def test_truncated_away_response_is_an_error_naming_the_sample(gpt2_tokenizer):
    long = [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "ok"}]
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(DataError, match=r"sample #1 of data\.jsonl has no trained .*block_size=20"):
        tokenize_conversations([short, long], gpt2_tokenizer, 20, ["#0 of data.jsonl", "#1 of data.jsonl"])
    with pytest.raises(DataError, match="no assistant turn"):
        tokenize_conversations([[{"role": "user", "content": "Hi"}]], gpt2_tokenizer, 20, ["#0"])


def test_prepare_caches_splits_and_reports_bad_rows(gpt2_tokenizer, tmp_path):
    rows = [{"chosen": f"\n\nHuman: Q{i}?\n\nAssistant: A{i}.", "rejected": "x"} for i in range(8)]
    source = write_jsonl(tmp_path / "hh.jsonl", rows)
    recipe = sft_recipe(tmp_path, source)
    prepared = prepare_sft_data(recipe, gpt2_tokenizer)
    assert not prepared.reused and prepared.meta["sft_format"] == "hh"
    assert {name: s["num_examples"] for name, s in prepared.meta["splits"].items()} == {"train": 6, "val": 2}
    ids, labels = prepared.split("train").example(0)
    assert (
        gpt2_tokenizer.decode(ids).startswith("\n\nHuman: Q") and (labels != IGNORE_INDEX).sum() == 4
    )  # " A", "0", ".", EOS
    assert prepare_sft_data(recipe, gpt2_tokenizer).reused
    assert gpt2_tokenizer.chat_template == CHAT_TEMPLATE

    write_jsonl(source, [*rows, {"chosen": "\n\nHuman: " + "long " * 80 + "\n\nAssistant: A."}])
    with pytest.raises(DataError, match=r"sample #8 of .*hh\.jsonl has no trained"):
        prepare_sft_data(recipe, gpt2_tokenizer)
    skipped = prepare_sft_data(sft_recipe(tmp_path, source, sft_untrainable="skip"), gpt2_tokenizer)
    assert skipped.meta["skipped_rows"] == [8]
    assert sum(s["num_examples"] for s in skipped.meta["splits"].values()) == 8
