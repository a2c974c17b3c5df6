"""Batched log-likelihood scoring: the one place where the benchmark suite runs the model.

Every task turns its documents into :class:`LoglikelihoodRequest`s (context tokens, continuation tokens) and gets back
one :class:`LoglikelihoodResult` per request: the summed log-probability of the continuation and whether every
continuation token was the greedy choice. This is lm-evaluation-harness's ``loglikelihood`` request type;
``loglikelihood_rolling`` is :func:`rolling_windows` plus the same scorer.

Requests are sorted longest first, right-padded into batches, left-truncated to the model's context and scored with
one forward pass per batch. Under Accelerate the batches are split across processes and the results gathered with
``gather_for_metrics``, so every process returns the full list.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.evaluation.errors import ContextLengthError

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# Config attributes that hold a causal LM's context length, in lm-evaluation-harness's order (it reads these three,
# then the tokenizer's model_max_length); the others are read only when all of those are missing.
LM_EVAL_CONTEXT_ATTRIBUTES = ("n_positions", "max_position_embeddings", "n_ctx")
_OTHER_CONTEXT_ATTRIBUTES = ("max_sequence_length", "seq_length")
# Scored tokens per log-softmax call: bounds the extra memory to _SCORE_CHUNK x vocabulary floats.
_SCORE_CHUNK = 2048
# transformers' "no limit" value of tokenizer.model_max_length (int(1e30)), which lm-evaluation-harness ignores.
TOKENIZER_INFINITY = 1000000000000000019884624838656


@dataclass(frozen=True, slots=True)
class LoglikelihoodRequest:
    """Score ``continuation`` given ``context`` (both token ids; the context may be longer than the model's)."""

    context: Sequence[int]
    continuation: Sequence[int]


@dataclass(frozen=True, slots=True)
class LoglikelihoodResult:
    """The summed log-probability (nats) of a continuation, and whether each of its tokens was the argmax."""

    log_likelihood: float
    is_greedy: bool
    num_tokens: int


def model_context_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None = None) -> int:
    """How many tokens the model attends over, found as lm-evaluation-harness finds it.

    The first of the config's ``n_positions``, ``max_position_embeddings``, ``n_ctx`` (of its ``text_config`` when it
    has one), else the tokenizer's ``model_max_length`` (unless it is transformers' "no limit"), else the config's
    ``max_sequence_length`` or ``seq_length``. Where lm-evaluation-harness would fall back to 2048 tokens, this raises.
    """
    config = getattr(model.config, "text_config", None) or model.config
    for name in LM_EVAL_CONTEXT_ATTRIBUTES:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if tokenizer_limit is not None and int(tokenizer_limit) != TOKENIZER_INFINITY:
        return int(tokenizer_limit)
    for name in _OTHER_CONTEXT_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ContextLengthError(
        f"cannot tell the context length of {type(model).__name__}: its config has none of "
        f"{LM_EVAL_CONTEXT_ATTRIBUTES + _OTHER_CONTEXT_ATTRIBUTES} and its tokenizer sets no model_max_length; "
        "pass --max-length N"
    )


def rolling_windows(
    tokens: Sequence[int], *, context: int, stride: int, prefix_token: int | None
) -> list[LoglikelihoodRequest]:
    """Split a document into requests that predict every token exactly once (lm-evaluation-harness's rolling windows).

    The first window predicts the first ``context`` tokens after ``prefix_token`` (BOS, else EOS: the prefix of
    lm-evaluation-harness, so that the very first token is scored too; with no prefix the first token is only
    context). Each later window predicts the next ``stride`` tokens and sees the ``context`` tokens before its last
    prediction, so a token is predicted with at least ``context - stride`` tokens of history. ``stride == context``
    gives lm-evaluation-harness's disjoint windows.

    Args:
        tokens: the document's token ids.
        context: the number of tokens the model sees per window (at most its context length).
        stride: how many new tokens each window after the first predicts (1 ≤ stride ≤ context).
        prefix_token: the token placed before the document, or None to score from its second token on.
    """
    if not 1 <= stride <= context:
        raise ValueError(f"need 1 <= stride <= context, got stride={stride}, context={context}")
    full = tokens if prefix_token is None else [prefix_token, *tokens]
    requests: list[LoglikelihoodRequest] = []
    done = 1  # full[0] is context only
    while done < len(full):
        end = min(len(full), done + (context if done == 1 else stride))
        start = max(0, end - 1 - context)  # the window's input is full[start:end-1], at most `context` tokens
        requests.append(LoglikelihoodRequest(context=full[start:done], continuation=full[done:end]))
        done = end
    return requests


class LoglikelihoodScorer:
    """Scores :class:`LoglikelihoodRequest`s with a causal LM, batched, on CPU, GPU or several Accelerate processes.

    Tokenization follows lm-evaluation-harness's ``HFLM``: whole texts (documents, contexts) are encoded with the
    tokenizer's own special tokens (:meth:`encode_document`; GPT-2's BPE adds none), pieces that continue a sequence
    without them (:meth:`encode`), and a (context, continuation) pair as one string split after the context
    (:meth:`encode_pair`).

    Args:
        model: a causal LM whose forward returns ``.logits`` (an hf_gpt2 model, a stock GPT-2, any causal LM).
        tokenizer: its tokenizer.
        batch_size: requests per forward pass (per process).
        accelerator: when given, batches are split across its processes and results gathered.
        progress: show a progress bar (on the main process only).
        max_length: the context to score with; defaults to :func:`model_context_length`.
        add_special_tokens: what :meth:`encode_document` passes to the tokenizer; None keeps the tokenizer's default
            (lm-evaluation-harness's ``add_bos_token=None``), False never adds them, True always.
        prefix_token_id: the token placed before a document or an empty context; None = the tokenizer's BOS token,
            else its EOS token (lm-evaluation-harness's ``prefix_token_id``).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 8,
        accelerator: Accelerator | None = None,
        progress: bool = True,
        max_length: int | None = None,
        add_special_tokens: bool | None = None,
        prefix_token_id: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise HfGPT2Error(f"the batch size must be >= 1, got {batch_size}")
        if max_length is not None and max_length < 1:
            raise ContextLengthError(f"the maximum length must be >= 1 token, got {max_length}")
        self.accelerator = accelerator
        self.model = accelerator.unwrap_model(model) if accelerator is not None else model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.max_length = max_length or model_context_length(self.model, tokenizer)
        self.add_special_tokens = add_special_tokens
        self._prefix_token_id = prefix_token_id
        self.device = next(self.model.parameters()).device  # inputs go where the weights are
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    @property
    def prefix_token_id(self) -> int:
        """The token before a document or an empty context: the one asked for, else BOS, else EOS (GPT-2: 50256)."""
        for token_id in (self._prefix_token_id, self.tokenizer.bos_token_id, self.tokenizer.eos_token_id):
            if token_id is not None:
                return int(token_id)
        raise HfGPT2Error(
            "the tokenizer has neither a BOS nor an EOS token to start a document with; pass --prefix-token-id ID"
        )

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (a piece that continues a sequence)."""
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of each text, in one tokenizer call (fast tokenizers batch it)."""
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]]

    def encode_document(self, text: str) -> list[int]:
        """Token ids of a whole text (a document, a context), as lm-evaluation-harness's ``HFLM.tok_encode``: with the
        tokenizer's special tokens (see ``add_special_tokens``), except when the text already starts with the prefix
        token's text."""
        return self.encode_documents([text])[0]

    def encode_documents(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode_document` of each text, in one tokenizer call per setting (fast tokenizers batch it)."""
        if not texts:
            return []
        prefix_text = self.tokenizer.decode([self.prefix_token_id])
        plain = [bool(prefix_text) and text.startswith(prefix_text) for text in texts]
        ids: list[list[int]] = [[] for _ in texts]
        for skip_special, kwargs in ((True, {"add_special_tokens": False}), (False, self._special_kwargs())):
            indices = [i for i, p in enumerate(plain) if p == skip_special]
            if indices:
                encoded = self.tokenizer([texts[i] for i in indices], verbose=False, **kwargs)["input_ids"]
                for i, row in zip(indices, encoded, strict=True):
                    ids[i] = list(row)
        return ids

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Tokenize a (context, continuation) pair the way lm-evaluation-harness does.

        Trailing whitespace of the context (spaces, newlines, tabs) moves to the continuation; the pair is encoded as
        one string and split after the context's tokens, so the continuation gets the tokens it has in running text.
        An empty context becomes the prefix token (or, when the continuation itself starts with that token, its
        first token), as in lm-evaluation-harness; so does a context of only whitespace, which lm-evaluation-harness
        cannot score.
        """
        stripped = context.rstrip()
        context, continuation = stripped, context[len(stripped) :] + continuation
        if not context:
            continuation_ids = self.encode(continuation)
            if continuation_ids and continuation_ids[0] == self.prefix_token_id:
                return continuation_ids[:1], continuation_ids[1:]
            return [self.prefix_token_id], continuation_ids
        whole, context_ids = self.encode_documents([context + continuation, context])
        return context_ids, whole[len(context_ids) :]

    def _special_kwargs(self) -> dict[str, bool]:
        return {} if self.add_special_tokens is None else {"add_special_tokens": self.add_special_tokens}

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, desc: str = "") -> list[LoglikelihoodResult]:
        """Score every request; returns results in request order (on every process when under Accelerate)."""
        self._check_fits(requests, desc)
        # Longest first: similar lengths share a batch, and running out of memory happens at the start.
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].context) - len(requests[i].continuation))
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for index, log_likelihood, is_greedy in self._scored_batches(requests, order, desc):
            results[index] = LoglikelihoodResult(
                log_likelihood=log_likelihood,
                is_greedy=is_greedy,
                num_tokens=len(requests[index].continuation),
            )
        missing = [i for i, r in enumerate(results) if r is None]
        assert not missing, f"requests {missing[:5]} were not scored"
        return results  # type: ignore[return-value]

    def _check_fits(self, requests: Sequence[LoglikelihoodRequest], desc: str) -> None:
        longest = max((len(r.continuation) for r in requests), default=0)
        if longest > self.max_length:
            raise ContextLengthError(
                f"{desc or 'a task'} needs to score {longest} tokens at once, but the model's context is "
                f"{self.max_length} tokens; use a model with a longer context"
            )
        if any(len(r.context) == 0 for r in requests):
            raise ValueError("every request needs at least one context token (use the EOS token for none)")
        truncated = sum(len(r.context) + len(r.continuation) > self.max_length + 1 for r in requests)
        if truncated and self.is_main_process:
            logger.warning(
                "%s: %d of %d requests are longer than the model's context of %d tokens; their contexts are "
                "left-truncated",
                desc or "scoring",
                truncated,
                len(requests),
                self.max_length,
            )

    def _index_batches(self, order: list[int]) -> Iterator[list[int]]:
        """Yield this process's batches of request indices."""
        if self.accelerator is None:
            for start in range(0, len(order), self.batch_size):
                yield order[start : start + self.batch_size]
            return
        loader = torch.utils.data.DataLoader(torch.tensor(order, dtype=torch.long), batch_size=self.batch_size)
        for batch in self.accelerator.prepare_data_loader(loader, device_placement=False):
            yield batch.tolist()

    def _scored_batches(
        self, requests: Sequence[LoglikelihoodRequest], order: list[int], desc: str
    ) -> Iterator[tuple[int, float, bool]]:
        num_processes = 1 if self.accelerator is None else self.accelerator.num_processes
        num_batches = math.ceil(len(order) / (self.batch_size * num_processes))
        bar = tqdm(total=num_batches, desc=desc, disable=not (self.progress and self.is_main_process), leave=False)
        for indices in self._index_batches(order):
            scores = self._score_batch([requests[i] for i in indices])  # (B, 2): log-likelihood, is_greedy
            rows = torch.cat([torch.tensor(indices, dtype=torch.float64, device=self.device)[:, None], scores], dim=1)
            if self.accelerator is not None:
                rows = self.accelerator.gather_for_metrics(rows.to(self.accelerator.device))
            for index, log_likelihood, is_greedy in rows.tolist():
                yield int(index), log_likelihood, bool(is_greedy)
            bar.update(1)
        bar.close()

    @torch.inference_mode()
    def _score_batch(self, batch: list[LoglikelihoodRequest]) -> torch.Tensor:
        """One forward pass over a right-padded batch; returns (B, 2) float64: summed log-prob, all-greedy flag."""
        inputs, starts, targets = [], [], []
        for request in batch:  # token lists or numpy arrays (val_loss windows are views of the shard tokens)
            continuation = np.asarray(request.continuation, dtype=np.int64)
            tokens = np.concatenate([np.asarray(request.context, dtype=np.int64), continuation])
            tokens = tokens[-(self.max_length + 1) :]
            inputs.append(torch.from_numpy(tokens[:-1]))
            starts.append(len(tokens) - 1 - len(continuation))  # input position that predicts continuation[0]
            targets.append(torch.from_numpy(continuation))
        width = max(len(x) for x in inputs)
        input_ids = torch.zeros(len(batch), width, dtype=torch.long)
        attention_mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, ids in enumerate(inputs):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
        }
        # Only the positions that predict a continuation token go through the LM head: the last `width - first`
        # positions, or the positions themselves when fewer (rows of different lengths put theirs far apart).
        first = min(starts)
        spans = [range(start, start + len(target)) for start, target in zip(starts, targets, strict=True)]
        needed = sorted({p for span in spans for p in span})
        kept: list[int] | None = None
        if self._keeps_logits and len(needed) < width - first:
            kept = needed
            kwargs["logits_to_keep"] = torch.tensor(needed, dtype=torch.long, device=self.device)
        elif self._keeps_logits:
            kwargs["logits_to_keep"] = width - first
        with self.accelerator.autocast() if self.accelerator is not None else contextlib.nullcontext():
            logits = self.model(**kwargs).logits  # (B, T_kept, V)
        if kept is not None and logits.shape[1] != len(kept):
            raise HfGPT2Error(
                f"{type(self.model).__name__} returned {logits.shape[1]} positions for a logits_to_keep tensor of "
                f"{len(kept)}; its forward does not support tensor logits_to_keep"
            )
        columns = {p: i for i, p in enumerate(kept)} if kept is not None else None
        return _sum_token_scores(logits, spans, targets, columns=columns, offset=width - logits.shape[1])


def _sum_token_scores(
    logits: torch.Tensor,
    spans: Sequence[range],
    targets: Sequence[torch.Tensor],
    *,
    columns: dict[int, int] | None,
    offset: int,
) -> torch.Tensor:
    """(B, 2) float64: each row's summed log-probability of its targets and whether every target was the argmax.

    ``spans[row]`` are the input positions that predict ``targets[row]``; their logits are ``logits[row, columns[p]]``
    (a logits_to_keep tensor) or ``logits[row, p - offset]`` (the last positions kept). A long contiguous span is
    scored on a view of its rows; short ones are gathered in chunks of (n, V), so a batch of multiple-choice endings
    takes a few log-softmax calls instead of one per request, and the extra memory stays at _SCORE_CHUNK rows.
    """
    out = torch.zeros(len(spans), 2, dtype=torch.float64, device=logits.device)
    short = [row for row, span in enumerate(spans) if columns is not None or len(span) < _SCORE_CHUNK // 8]
    for row in sorted(set(range(len(spans))) - set(short)):
        row_logits = logits[row, spans[row].start - offset : spans[row].stop - offset].float()  # (n, V), a view
        out[row] = _token_scores(row_logits, targets[row].to(logits.device)).sum(0)
    owner = torch.tensor([row for row in short for _ in spans[row]], dtype=torch.long)
    cols = [columns[p] if columns is not None else p - offset for row in short for p in spans[row]]
    flat_targets = torch.cat([targets[row] for row in short]) if short else torch.zeros(0, dtype=torch.long)
    for chunk in torch.arange(len(owner)).split(_SCORE_CHUNK):
        rows = owner[chunk].to(logits.device)
        chunk_logits = logits[rows, torch.tensor(cols, dtype=torch.long)[chunk].to(logits.device)].float()  # (n, V)
        out.index_add_(0, rows, _token_scores(chunk_logits, flat_targets[chunk].to(logits.device)))
    out[:, 1] = (out[:, 1] == 0).double()  # no target missed the argmax
    return out


def _token_scores(token_logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """(n, 2) float64 per target token: its log-probability, and 1.0 where it was not the argmax."""
    logprobs = token_logits.gather(-1, target_ids[:, None]).squeeze(-1) - token_logits.logsumexp(-1)
    missed = token_logits.argmax(-1) != target_ids
    return torch.stack([logprobs.double(), missed.double()], dim=1)
