"""Supervised finetuning data: conversations → token ids + labels trained only on the assistant's turns.

Sources are the same as for pretraining (local jsonl/json/parquet files or ``hub:<id>``); three row formats are read:

* ``hh``: Anthropic/hh-rlhf transcripts, ``"\\n\\nHuman: …\\n\\nAssistant: …"`` in one column (``chosen``);
* ``messages``: a list of ``{"role", "content"}`` turns (``user``/``human``, ``assistant``, ``system``);
* ``prompt_completion``: a prompt column and a completion (or response) column.

Every row becomes a conversation rendered with one Human/Assistant template (:data:`CHAT_TEMPLATE`, installed on
the tokenizer so ``tokenizer.apply_chat_template`` on the release writes exactly what the model was trained on).
Labels are -100 everywhere except on the assistant turns and the EOS that closes each of them. A row left with no
trained token (for instance truncated away by ``data.block_size``) is a :class:`DataError` that names it, never a
silently dropped sample.

Batches are dicts for the training loop: packed rows (several samples per row, ``position_ids`` restarting at 0 for
each sample, no ``attention_mask``: transformers' ``create_causal_mask`` then blocks attention across samples, but
only when the model runs with ``use_cache=False``) or padded rows (``attention_mask``, right padding).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_gpt2.errors import DataError
from hf_gpt2.folders import replace_folder

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
SFT_FORMATS = ("auto", "hh", "messages", "prompt_completion")
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
_SFT_LAYOUT_VERSION = 1  # bump when rendering or tokenization changes, so older caches are not reused
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "bot": "assistant",
          "system": "system"}  # fmt: skip
_MESSAGE_FIELDS = ("messages", "conversations")
_RESPONSE_FIELDS = ("completion", "response")

Message = dict[str, str]


# --------------------------------------------------------------------------------------------------------------------
# Rows → conversations


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


def detect_sft_format(columns: Sequence[str], data: Any) -> str:
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


def _response_field(columns: Sequence[str], data: Any) -> str | None:
    candidates = (data.sft_response_field,) if data.sft_response_field else _RESPONSE_FIELDS
    return next((name for name in candidates if name in columns), None)


def _transcript_field(columns: Sequence[str], data: Any) -> str | None:
    return next((name for name in (data.text_field, "chosen") if name in columns), None)


def record_to_messages(record: dict[str, Any], sft_format: str, data: Any, where: str) -> list[Message]:
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
    if role not in _ROLES or not isinstance(content, str):
        raise DataError(f"{where}: message {str(turn)[:80]} needs a role in {sorted(_ROLES)} and a string content")
    return {"role": _ROLES[role], "content": content}


# --------------------------------------------------------------------------------------------------------------------
# Conversations → tokens and labels


def install_chat_template(tokenizer: Any) -> Any:
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
        role, content = _ROLES.get(message["role"], message["role"]), message["content"]
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
    conversations: Sequence[Sequence[Message]], tokenizer: Any, max_length: int, sources: Sequence[str]
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


# --------------------------------------------------------------------------------------------------------------------
# Preparation: read, tokenize, split and cache


@dataclass
class SFTSplit:
    """The tokenized examples of one split, concatenated: example i is ``ids[offsets[i]:offsets[i+1]]``."""

    ids: np.ndarray
    trained: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, labels) of example i as int64 arrays."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        ids = self.ids[lo:hi].astype(np.int64)
        return ids, np.where(self.trained[lo:hi], ids, IGNORE_INDEX)


@dataclass
class PreparedSFT:
    """Tokenized SFT data in ``data.cache_dir/sft-<fingerprint>/`` (same role as ``PreparedData`` for text)."""

    directory: Path
    meta: dict[str, Any]
    reused: bool

    def split(self, name: str) -> SFTSplit:
        """Memory-map one split ("train" or "val").

        Raises:
            DataError: if the split does not exist or is empty.
        """
        if name not in self.meta["splits"] or self.meta["splits"][name]["num_examples"] == 0:
            raise DataError(
                f"the prepared SFT data in {self.directory} has no {name!r} examples; "
                "raise data.val_fraction or give more rows"
            )
        load = lambda suffix: np.load(self.directory / f"{name}_{suffix}.npy", mmap_mode="r")  # noqa: E731
        return SFTSplit(ids=load("ids"), trained=load("trained"), offsets=load("offsets"))


def prepare_sft_data(recipe: Any, tokenizer: Any, *, force: bool = False) -> PreparedSFT:
    """Read, tokenize, split and cache the SFT data of ``recipe.data``; reuse the cache when nothing changed.

    Also installs :data:`CHAT_TEMPLATE` on ``tokenizer``, so the release saved with it carries the template.
    Run it on the main process first (``accelerator.main_process_first()``); writes are atomic.

    Raises:
        DataError: for a missing source, unreadable rows, or a sample with no trained token.
    """
    data = recipe.data
    install_chat_template(tokenizer)
    files = _local_files(data.source) if not data.source.startswith("hub:") else []
    fingerprint = _fingerprint(recipe, tokenizer, files)
    directory = Path(data.cache_dir) / f"sft-{fingerprint}"
    if (directory / "meta.json").is_file() and not force:
        logger.info("reusing tokenized SFT data in %s", directory)
        return PreparedSFT(directory, json.loads((directory / "meta.json").read_text()), reused=True)
    records, source_name = _read_records(data, files, _max_rows(recipe))
    if not records:
        raise DataError(f"data.source={data.source!r} has no rows")
    sft_format = detect_sft_format(list(records[0]), data)
    where = [f"#{i} of {source_name}" for i in range(len(records))]
    conversations = [record_to_messages(r, sft_format, data, w) for r, w in zip(records, where, strict=True)]
    examples, kept = _tokenize_with_policy(conversations, tokenizer, data, where)
    val_ids = _val_indices(len(examples), data.val_fraction, recipe.run.seed)
    meta = {
        "format": "sft",
        "sft_format": sft_format,
        "source": data.source,
        "tokenizer": str(getattr(tokenizer, "name_or_path", "")),
        "eos_id": tokenizer.eos_token_id,
        "pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        "vocab_size": len(tokenizer),
        "block_size": data.block_size,
        "packing": bool(data.packing),
        "fingerprint": fingerprint,
        "skipped_rows": sorted(set(range(len(records))) - set(kept)),
        "splits": {},
    }
    staging = directory.with_name(f".{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        val_set = set(val_ids.tolist())
        for name, members in (("train", [i for i in range(len(examples)) if i not in val_set]), ("val", val_ids)):
            meta["splits"][name] = _write_split(staging, name, [examples[i] for i in members], len(tokenizer))
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        replace_folder(staging, directory)  # False: another process wrote the same fingerprint first; equal data
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    logger.info(
        "SFT data (%s, %s): %d train / %d val examples, %d train tokens of which %d trained; cached in %s",
        sft_format, data.source, train["num_examples"], val["num_examples"], train["num_tokens"],
        train["num_trained"], directory,
    )  # fmt: skip
    return PreparedSFT(directory, meta, reused=False)


def _tokenize_with_policy(
    conversations: list[list[Message]], tokenizer: Any, data: Any, where: list[str]
) -> tuple[list[SFTExample], list[int]]:
    """Tokenize; with ``data.sft_untrainable: skip`` leave out untrainable rows, logged by index (never silently)."""
    policy = getattr(data, "sft_untrainable", "error")
    if policy not in ("error", "skip"):
        raise DataError(f"data.sft_untrainable={policy!r} is not one of error, skip")
    examples, kept = [], []
    for start in range(0, len(conversations), 1024):
        chunk = slice(start, start + 1024)
        try:
            examples += tokenize_conversations(conversations[chunk], tokenizer, data.block_size, where[chunk])
            kept += list(range(len(conversations)))[chunk]
        except DataError:
            if policy == "error":
                raise
            for i in range(*chunk.indices(len(conversations))):  # one by one to find the culprits
                try:
                    examples += tokenize_conversations([conversations[i]], tokenizer, data.block_size, [where[i]])
                    kept.append(i)
                except DataError as err:
                    logger.warning("skipping (data.sft_untrainable=skip): %s", err)
    if not examples:
        raise DataError(f"no SFT sample of {data.source!r} has a trained token")
    if len(kept) < len(conversations):
        logger.warning("skipped %d of %d SFT samples with no trained token", len(conversations) - len(kept),
                       len(conversations))  # fmt: skip
    return examples, kept


def _write_split(directory: Path, name: str, examples: list[SFTExample], vocab_size: int) -> dict[str, int]:
    lengths = np.asarray([len(e.input_ids) for e in examples], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dtype = np.uint16 if vocab_size <= 65536 else np.uint32
    ids = np.fromiter((t for e in examples for t in e.input_ids), dtype=np.int64, count=int(offsets[-1]))
    trained = np.fromiter((t != IGNORE_INDEX for e in examples for t in e.labels), dtype=bool, count=int(offsets[-1]))
    np.save(directory / f"{name}_ids.npy", ids.astype(dtype))
    np.save(directory / f"{name}_trained.npy", trained)
    np.save(directory / f"{name}_offsets.npy", offsets)
    return {"num_examples": len(examples), "num_tokens": int(offsets[-1]), "num_trained": int(trained.sum())}


def _val_indices(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seed-fixed held-out examples: round(n × fraction), at least 1 when fraction > 0 and n ≥ 2."""
    count = min(n - 1, max(1 if fraction > 0 else 0, round(n * fraction)))
    return np.sort(np.random.default_rng([seed, 7]).permutation(n)[: max(count, 0)])


def _local_files(source: str) -> list[Path]:
    pattern = os.path.expanduser(source)
    files = (
        [Path(p) for p in sorted(glob.glob(pattern, recursive=True))] if glob.has_magic(pattern) else [Path(pattern)]
    )
    if Path(pattern).is_dir():
        files = sorted(p for p in Path(pattern).rglob("*") if p.suffix in (".json", ".jsonl", ".parquet"))
    files = [p for p in files if p.is_file()]
    if not files:
        raise DataError(f"data.source={source!r} matches no json/jsonl/parquet file")
    suffixes = {p.suffix for p in files}
    if not suffixes <= {".json", ".jsonl", ".parquet"} or len({s == ".parquet" for s in suffixes}) > 1:
        raise DataError(
            f"data.source={source!r}: SFT reads .jsonl/.json or .parquet files (not mixed), got {suffixes}"
        )
    return files


def _max_rows(recipe: Any) -> int | None:
    from hf_gpt2.recipe import effective_max_documents

    return effective_max_documents(recipe)


def _read_records(data: Any, files: list[Path], max_rows: int | None) -> tuple[list[dict[str, Any]], str]:
    """Rows as dicts, with a name for error messages."""
    from datasets import load_dataset

    if data.streaming:
        raise DataError("data.streaming is not supported for data.format=sft; SFT sets are read whole")
    try:
        if files:
            builder = "parquet" if files[0].suffix == ".parquet" else "json"
            dataset = load_dataset(builder, data_files=[str(p) for p in files], split="train")
            name = str(files[0]) if len(files) == 1 else f"{data.source} ({len(files)} files)"
        elif getattr(data, "hub_data_files", None):
            builder = (
                "json" if data.hub_data_files[0].endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")) else "parquet"
            )
            dataset = load_dataset(builder, data_files=list(data.hub_data_files), split="train")
            name = data.source
        else:
            hub_id = data.source.removeprefix("hub:")
            dataset = load_dataset(hub_id, name=data.hub_config, split=data.hub_split, revision=data.hub_revision)
            name = f"{data.source}[{data.hub_split}]"
    except (OSError, ValueError, ConnectionError) as err:
        raise DataError(f"could not read SFT data from {data.source!r}: {str(err).strip().splitlines()[0]}") from err
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    return dataset.to_list(), name


def _fingerprint(recipe: Any, tokenizer: Any, files: list[Path]) -> str:
    data = recipe.data
    vocab_hash = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    key = {
        "layout": _SFT_LAYOUT_VERSION,
        "template": CHAT_TEMPLATE,
        "source": data.source,
        "files": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        "hub": [data.hub_config, data.hub_split, data.hub_revision, getattr(data, "hub_data_files", None)],
        "fields": [data.text_field, data.sft_prompt_field, data.sft_response_field],
        "sft_format": data.sft_format,
        "untrainable": getattr(data, "sft_untrainable", "error"),
        "max_rows": _max_rows(recipe),
        "block_size": data.block_size,
        "packing": bool(data.packing),
        "val": [data.val_fraction, recipe.run.seed],
        "tokenizer": [vocab_hash, tokenizer.eos_token],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------------------
# Batches


def pack_examples(
    examples: Sequence[tuple[np.ndarray, np.ndarray]], length: int, pad_id: int
) -> dict[str, torch.Tensor]:
    """One packed row of ``length`` tokens: samples back to back, position ids restarting at 0 for each sample.

    The tail is padding (labels -100, its own position run), so ``create_causal_mask`` sees it as another sample.
    """
    ids = np.full(length, pad_id, dtype=np.int64)
    labels = np.full(length, IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros(length, dtype=np.int64)
    cursor = 0
    for sample_ids, sample_labels in examples:
        n = len(sample_ids)
        assert cursor + n <= length, "pack_examples got more tokens than fit"
        ids[cursor : cursor + n], labels[cursor : cursor + n] = sample_ids, sample_labels
        positions[cursor : cursor + n] = np.arange(n)
        cursor += n
    positions[cursor:] = np.arange(length - cursor)
    return {
        "input_ids": torch.from_numpy(ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(positions),
    }


def pad_examples(examples: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch ``{input_ids, labels, attention_mask}`` as long as its longest sample."""
    width = max(len(ids) for ids, _ in examples)
    batch = {
        "input_ids": torch.full((len(examples), width), pad_id, dtype=torch.long),
        "labels": torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long),
        "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
    }
    for row, (ids, labels) in enumerate(examples):
        batch["input_ids"][row, : len(ids)] = torch.from_numpy(np.asarray(ids))
        batch["labels"][row, : len(ids)] = torch.from_numpy(np.asarray(labels))
        batch["attention_mask"][row, : len(ids)] = 1
    return batch


class SFTLoader:
    """Endless seed-ordered SFT batches; the same constructor and state contract as ``TokenWindowLoader``.

    The examples are shuffled once per epoch (order fixed by ``seed`` and the epoch). Every process walks the same
    global sequence of rows and takes its own ``micro_batch_size`` rows of each ``num_processes × micro_batch_size``,
    so ``state_dict()`` (epoch and position in that epoch's order) is identical on every process and a resumed run
    continues with exactly the batches it would have seen. Packing comes from ``prepared.meta["packing"]``.
    """

    def __init__(
        self,
        prepared: PreparedSFT,
        split: str,
        block_size: int,
        micro_batch_size: int,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> None:
        self.data = prepared.split(split)
        self.split_name = split
        self.block_size = block_size
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.process_index = process_index
        self.num_processes = num_processes
        self.packing = bool(prepared.meta["packing"])
        self.pad_id = int(prepared.meta["pad_id"])
        lengths = np.diff(self.data.offsets)
        if lengths.max() > block_size:
            raise DataError(
                f"SFT examples were prepared with up to {int(lengths.max())} tokens but block_size is {block_size}; "
                "prepare again with this data.block_size"
            )
        self.epoch, self.cursor = 0, 0
        self._order = self._order_for(0)

    def _order_for(self, epoch: int) -> np.ndarray:
        if self.split_name != "train":
            return np.arange(len(self.data))  # evaluation: the same examples, in file order, every time
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.data))

    def _take(self) -> tuple[np.ndarray, np.ndarray]:
        if self.cursor == len(self._order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._order_for(self.epoch)
        example = self.data.example(int(self._order[self.cursor]))
        self.cursor += 1
        return example

    def _peek_length(self) -> int:
        if self.cursor == len(self._order):
            return int(np.diff(self.data.offsets)[self._order_for(self.epoch + 1)[0]])
        i = int(self._order[self.cursor])
        return int(self.data.offsets[i + 1] - self.data.offsets[i])

    def _next_row(self) -> list[tuple[np.ndarray, np.ndarray]]:
        row = [self._take()]
        used = len(row[0][0])
        while self.packing and used + self._peek_length() <= self.block_size:
            row.append(self._take())
            used += len(row[-1][0])
        return row

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        """The next micro-batch of this process: packed ``(B, block_size)`` rows or padded ``(B, longest)`` rows."""
        rows = [self._next_row() for _ in range(self.micro_batch_size * self.num_processes)]
        mine = rows[self.process_index * self.micro_batch_size : (self.process_index + 1) * self.micro_batch_size]
        if not self.packing:
            return pad_examples([row[0] for row in mine], self.pad_id)
        packed = [pack_examples(row, self.block_size, self.pad_id) for row in mine]
        return {key: torch.stack([p[key] for p in packed]) for key in packed[0]}

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: epoch and position in that epoch's order (the same on every process)."""
        return {"split": self.split_name, "epoch": self.epoch, "cursor": self.cursor, "num_examples": len(self.data),
                "seed": self.seed, "packing": self.packing}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`.

        Raises:
            DataError: if it was saved for other data (another number of examples, seed or packing).
        """
        mine = self.state_dict()
        for key in ("num_examples", "seed", "packing"):
            if state.get(key) != mine[key]:
                raise DataError(
                    f"the checkpoint's SFT loader state has {key}={state.get(key)!r} but this run has {mine[key]!r}; "
                    "resume with the recipe (data, seed) the checkpoint was trained with"
                )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._order_for(self.epoch)
