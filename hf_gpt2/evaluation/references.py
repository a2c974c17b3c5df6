"""Reference numbers for GPT-2 124M ("117M" in the paper), for the table printed beside a model's results.

Accuracies are fractions, as the tasks report them (the table prints them in %).
"""

from __future__ import annotations

from typing import NamedTuple

PAPER_SOURCE = "GPT-2 paper, Table 3 (zero-shot, 117M = 124M)"
LM_EVAL_SOURCE = "lm-evaluation-harness, model `gpt2`"

PAPER_124M: dict[str, dict[str, float]] = {
    "lambada_openai_paper": {"ppl": 35.13, "acc": 0.4599},
    "cbt_cn": {"acc": 0.8765},
    "cbt_ne": {"acc": 0.834},
    "wikitext2": {"word_perplexity": 29.41},
    "wikitext103": {"word_perplexity": 37.50},
    "ptb": {"word_perplexity": 65.85},
    "lm1b": {"word_perplexity": 75.20},
    "enwik8": {"bits_per_byte": 1.16},
    "text8": {"bits_per_char": 1.17},
}
"""The paper's Table 3 for the smallest model: all eight language-modelling columns (CBT on its validation split)."""

LM_EVAL_GPT2: dict[str, dict[str, float]] = {
    "lambada_openai": {"acc": 0.3256, "ppl": 40.06},
    "hellaswag": {"acc": 0.2892, "acc_norm": 0.3114},
}
"""lm-evaluation-harness on the same OpenAI `gpt2` weights (LAMBADA: whole last word; HellaSwag: multiple choice)."""


class Published(NamedTuple):
    """A GPT-2 124M number published outside the paper and lm-evaluation-harness, with where it comes from."""

    value: float
    source: str


OTHER_124M: dict[str, dict[str, Published]] = {
    "lambada_openai_paper": {"acc": Published(0.4667, "bflm eval_lambada.py")},
    "core": {
        "core": Published(0.1139, "nanochat; 1.5B: 0.2565"),
        "acc_hellaswag_zeroshot": Published(0.309, "nanochat"),
        "acc_lambada_openai": Published(0.323, "nanochat"),
        "acc_hellaswag": Published(0.308, "nanochat"),
        "acc_piqa": Published(0.623, "nanochat"),
        "acc_arc_easy": Published(0.412, "nanochat"),
        "acc_arc_challenge": Published(0.222, "nanochat"),
    },
}
"""Published reproductions on the same `gpt2` weights: cybertronai/bflm's ``eval_lambada.py`` (the paper's last-token
LAMBADA on OpenAI's file), and nanochat's CORE evaluation (the CORE score of GPT-2 124M and of GPT-2 1.5B, and the six
task accuracies its ``dev/estimate_gpt3_core.ipynb`` prints, to 0.1 %)."""
