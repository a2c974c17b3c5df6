"""The suite's metrics as ``evaluate.Metric`` subclasses, instantiated directly (``evaluate.load`` of a Hub name fails
offline). They aggregate what :mod:`hf_gpt2.evaluation.scoring` returns per request; the formulas are
lm-evaluation-harness's.

>>> TargetLikelihoodMetric().compute(log_likelihood=[-1.0, -3.0], is_greedy=[1, 0])
{'acc': 0.5, 'ppl': 7.38905609893065}
"""

from __future__ import annotations

import math

import datasets
import evaluate
import numpy as np

_CITATION_HARNESS = """\
@software{eval-harness,
  author = {Gao, Leo and Tow, Jonathan and others},
  title = {A framework for few-shot language model evaluation},
  url = {https://github.com/EleutherAI/lm-evaluation-harness}
}"""


class _InMemoryMetric(evaluate.Metric):
    """A metric that keeps its inputs in memory (no Arrow scratch files, no lock files under ~/.cache)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(**kwargs)


class TargetLikelihoodMetric(_InMemoryMetric):
    """Cloze accuracy and perplexity (LAMBADA): ``acc`` = share of targets whose every token is the greedy choice,
    ``ppl`` = exp(−mean target log-likelihood)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.__doc__ or "",
            citation=_CITATION_HARNESS,
            inputs_description="log_likelihood: summed log-prob (nats) of each target; is_greedy: 1 if every target "
            "token was the argmax.",
            features=datasets.Features(
                {"log_likelihood": datasets.Value("float64"), "is_greedy": datasets.Value("int8")}
            ),
        )

    def _compute(self, log_likelihood: list[float], is_greedy: list[int]) -> dict[str, float]:
        return {"acc": float(np.mean(is_greedy)), "ppl": math.exp(-float(np.mean(log_likelihood)))}


class RollingPerplexityMetric(_InMemoryMetric):
    """Document-level language modelling: token, word and byte perplexity and bits per byte, each normalised by the
    total count over all documents (words and bytes counted in the original, not detokenized, text)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.__doc__ or "",
            citation=_CITATION_HARNESS,
            inputs_description="per document: log_likelihood (nats, summed over its tokens), num_tokens, num_words, "
            "num_bytes.",
            features=datasets.Features(
                {
                    "log_likelihood": datasets.Value("float64"),
                    "num_tokens": datasets.Value("int64"),
                    "num_words": datasets.Value("int64"),
                    "num_bytes": datasets.Value("int64"),
                }
            ),
        )

    def _compute(
        self, log_likelihood: list[float], num_tokens: list[int], num_words: list[int], num_bytes: list[int]
    ) -> dict[str, float]:
        nll = -math.fsum(log_likelihood)
        tokens, words, n_bytes = sum(num_tokens), sum(num_words), sum(num_bytes)
        return {
            "token_perplexity": math.exp(nll / tokens),
            "word_perplexity": math.exp(nll / words),
            "byte_perplexity": math.exp(nll / n_bytes),
            "bits_per_byte": nll / n_bytes / math.log(2),
            "tokens": float(tokens),
        }


class TokenLossMetric(_InMemoryMetric):
    """Mean cross-entropy per predicted token (nats) and its perplexity: the training loop's validation loss."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.__doc__ or "",
            citation="",
            inputs_description="per window: log_likelihood (nats, summed over its predicted tokens), num_tokens.",
            features=datasets.Features(
                {"log_likelihood": datasets.Value("float64"), "num_tokens": datasets.Value("int64")}
            ),
        )

    def _compute(self, log_likelihood: list[float], num_tokens: list[int]) -> dict[str, float]:
        loss = -math.fsum(log_likelihood) / sum(num_tokens)
        return {"loss": loss, "ppl": math.exp(loss)}


class MultipleChoiceMetric(_InMemoryMetric):
    """Multiple choice by log-likelihood: ``acc`` picks the choice with the highest summed log-probability,
    ``acc_norm`` the highest log-probability per character of the choice (lm-evaluation-harness's length
    normalisation, independent of the tokenizer)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.__doc__ or "",
            citation=_CITATION_HARNESS,
            inputs_description="per item: log_likelihoods of each choice, choice_lengths in characters, label (the "
            "index of the right choice).",
            features=datasets.Features(
                {
                    "log_likelihoods": datasets.Sequence(datasets.Value("float64")),
                    "choice_lengths": datasets.Sequence(datasets.Value("int64")),
                    "label": datasets.Value("int64"),
                }
            ),
        )

    def _compute(
        self, log_likelihoods: list[list[float]], choice_lengths: list[list[int]], label: list[int]
    ) -> dict[str, float]:
        correct = correct_norm = 0
        for lls, lengths, gold in zip(log_likelihoods, choice_lengths, label, strict=True):
            lls_arr = np.asarray(lls, dtype=np.float64)
            correct += int(np.argmax(lls_arr)) == gold
            correct_norm += int(np.argmax(lls_arr / np.maximum(np.asarray(lengths, dtype=np.float64), 1.0))) == gold
        return {"acc": correct / len(label), "acc_norm": correct_norm / len(label)}
