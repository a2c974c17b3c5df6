"""What every `hf-gpt2` subcommand accepts: its one-line help and its arguments (argparse only, so parsing is fast).

``hf_gpt2.cli`` builds the parser from these; the command itself is ``run(args)`` in ``hf_gpt2.commands.<name>``.
Every option is checked while parsing, before torch or transformers is imported: numbers against their range
(:mod:`hf_gpt2.ranges`), a model that is neither an existing folder nor a Hub id, a folder that does not exist, a
malformed repo id, branch, license or ``KEY=VALUE`` pair. A bad value is one line on stderr that names it and what
is allowed (:class:`CommandParser` raises a :class:`UsageError`), and the exit status is 2. What needs torch or the
model (a ``--device`` that is not on this machine, a prompt longer than the model's context) is checked by the
command, before any work.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.locations import missing_source_problem, repo_id_problem
from hf_gpt2.ranges import SAMPLING, SEED, Range

POSITIVE = Range(1, integer=True)
NON_NEGATIVE = Range(0, integer=True)
PORT = Range(1, 65535, integer=True)
DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:\d+)?")
LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]*")
BRANCH = re.compile(r"(?!/)(?!.*(\.\.|//|@\{|\.lock$|/$|\.$))[^\s~^:?*\[\\\x00-\x1f\x7f]+")
"""A git branch name the Hub accepts: no spaces, ``~^:?*[\\``, ``..``, ``//`` or ``@{``; not ending in ``/``, ``.`` or
``.lock``."""


class UsageError(HfGPT2Error):
    """A bad option or argument; ``prog`` is the command it was given to (``hf-gpt2 generate``)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a :class:`UsageError`, which the command line prints as one line
    (``hf-gpt2 generate: error: argument --top-k: ...``) with exit status 2, instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, f"{message}; see {self.prog} --help")


def ranged(bounds: Range) -> Callable[[str], int | float]:
    """An argparse ``type`` that reads a number and checks it against ``bounds``."""

    def parse(text: str) -> int | float:
        try:
            return bounds.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = "integer" if bounds.integer else "number"
    return parse


def model_source(text: str) -> str:
    """An existing model folder, or a Hub id; a missing local path is reported as one."""
    problem = missing_source_problem(text, "")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give the folder that holds config.json")
    return text


def existing_folder(text: str) -> str:
    """A folder that exists."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist (no such file or folder)")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return text


def repo_id(text: str) -> str:
    """A Hub repo id to push to: ``USER/NAME`` or ``ORG/NAME``."""
    problem = repo_id_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """An argparse ``type`` that accepts text matching ``pattern`` whole; ``what`` says what it should be."""

    def parse(text: str) -> str:
        if not pattern.fullmatch(text):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return text

    return parse


def non_empty(text: str) -> str:
    """Text with something in it besides spaces."""
    if not text.strip():
        raise argparse.ArgumentTypeError("it is empty; give some text")
    return text


def key_value(form: str) -> Callable[[str], str]:
    """An argparse ``type`` for ``KEY=VALUE`` items (``form`` names them, e.g. ``TASK=PATH``)."""

    def parse(text: str) -> str:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value:
            raise argparse.ArgumentTypeError(f"{text!r} is not {form}")
        return text

    return parse


DEVICE_HELP = "cpu, cuda, cuda:1, mps (default: cuda when available); one this machine does not have is an error"


def add_recipe_arguments(parser: argparse.ArgumentParser, example_overrides: str) -> None:
    """The positional ``RECIPE [section.key=value ...]`` shared by the commands that run a recipe."""
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help=f"recipe overrides, e.g. {example_overrides}"
    )


TRAIN_HELP = "train (or finetune) a model from a recipe; add section.key=value overrides after the recipe"


def train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the recipe path and the overrides."""
    add_recipe_arguments(parser, "train.max_steps=100 run.name=test train.resume_from=latest")


PREPARE_HELP = "tokenize a recipe's data into train/val token shards (reused by later runs)"


def prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the recipe path, the overrides and --force."""
    add_recipe_arguments(parser, "data.num_proc=8 data.max_documents=1000 data.cache_dir=/scratch/data")
    parser.add_argument("--force", action="store_true", help="prepare again even if a valid cache exists")


EVAL_HELP = (
    "Benchmark a model (hf_gpt2 folder, any causal-LM folder, or Hub id) on the GPT-2 paper's suite and HellaSwag."
)


def eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `hf-gpt2 eval`."""
    parser.add_argument(
        "--model", required=True, type=model_source, help="an hf_gpt2 folder, any causal-LM folder, or a Hub id"
    )
    parser.add_argument(
        "--tasks",
        required=True,
        type=non_empty,
        help="comma-separated tasks or groups: gpt2-paper, all, lambada_openai, lambada_openai_paper, wikitext2, "
        "wikitext103, ptb, lm1b, cbt_cn, cbt_ne, hellaswag, enwik8, text8, val_loss, core",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        type=key_value("TASK=PATH"),
        metavar="TASK=PATH",
        help="a local file or folder for a task instead of its Hub dataset (repeatable); core also takes "
        "hf://datasets/OWNER/REPO",
    )
    parser.add_argument(
        "--limit", type=ranged(POSITIVE), default=None, help="score only the first N documents/items per task"
    )
    parser.add_argument("--batch-size", type=ranged(POSITIVE), default=8, help="requests per forward pass (default 8)")
    parser.add_argument(
        "--device", type=matching(DEVICE, "a device (cpu, cuda, cuda:N, mps, xpu)"), default=None, help=DEVICE_HELP
    )
    parser.add_argument(
        "--dtype", default=None, choices=("float32", "bfloat16", "float16"), help="weights dtype (default: as saved)"
    )
    protocol = parser.add_argument_group("protocol (every default is lm-evaluation-harness's choice)")
    protocol.add_argument(
        "--max-length",
        type=ranged(POSITIVE),
        default=None,
        help="tokens per forward pass (default: the config's n_positions/max_position_embeddings/n_ctx, else the "
        "tokenizer's model_max_length)",
    )
    protocol.add_argument(
        "--context", type=ranged(POSITIVE), default=None, help="rolling tasks: tokens per window (default: all)"
    )
    protocol.add_argument(
        "--stride",
        type=ranged(POSITIVE),
        default=None,
        help="rolling tasks: new tokens per window (default: --context, disjoint windows; enwik8/text8: half of it)",
    )
    protocol.add_argument(
        "--prefix-token-id",
        type=ranged(NON_NEGATIVE),
        default=None,
        help="the token before documents and empty contexts (default: BOS, else EOS)",
    )
    protocol.add_argument(
        "--add-special-tokens",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="encode documents and contexts with the tokenizer's special tokens (default: the tokenizer's own "
        "choice; GPT-2's BPE adds none)",
    )
    protocol.add_argument("--no-detokenize", action="store_true", help="score WikiText/CBT/PTB/1BW text as tokenized")
    protocol.add_argument(
        "--cbt-split", choices=("validation", "test"), default=None, help="CBT split (default validation, the paper's)"
    )
    protocol.add_argument(
        "--test-bytes",
        type=ranged(NON_NEGATIVE),
        default=None,
        help="enwik8/text8: score the file's last N bytes (default 5,000,000, the standard test split; 0 = the "
        "whole file)",
    )
    parser.add_argument("--output", default=None, metavar="FILE.json", help="write the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


GENERATE_HELP = "generate text from a model folder or Hub id (streamed), or chat with an SFT model (--chat)"


GENERATE_SAMPLING = {
    "max_new_tokens": (100, "tokens to generate per answer (100); prompt + these must fit in the model's context"),
    "temperature": (0.8, "sampling temperature; 0 is greedy (0.8)"),
    "top_k": (200, "sample from the k most likely tokens; 0 is off (200)"),
    "top_p": (None, "nucleus sampling threshold in (0, 1] (off)"),
    "repetition_penalty": (None, "penalise repeated tokens, e.g. 1.2 (off)"),
    "num_return_sequences": (1, "samples for --prompt (1)"),
}
"""`hf-gpt2 generate`'s sampling flags: default and help; their ranges are :data:`hf_gpt2.ranges.SAMPLING`."""


def generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `hf-gpt2 generate`."""
    parser.add_argument(
        "--model", required=True, type=model_source, help="model folder (a release, a stock GPT-2 folder) or Hub id"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--prompt", default="", help="text to continue (default: start from <|endoftext|>)")
    mode.add_argument("--chat", action="store_true", help="interactive Human/Assistant chat (an empty line quits)")
    for name, (default, text) in GENERATE_SAMPLING.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=ranged(SAMPLING[name]), default=default, help=text)
    parser.add_argument("--seed", type=ranged(SEED), default=None, help="seed for repeatable sampling (0 to 2**32-1)")
    parser.add_argument(
        "--device", type=matching(DEVICE, "a device (cpu, cuda, cuda:N, mps, xpu)"), default=None, help=DEVICE_HELP
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="weights dtype (auto: as saved)",
    )
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model folder's own code")


CONVERT_HELP = "convert between stock transformers GPT-2 (e.g. openai-community/gpt2) and hf_gpt2"


def convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the direction, SRC and DST of `hf-gpt2 convert`."""
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--from-gpt2",
        action="store_true",
        help="SRC is a stock GPT-2 folder or Hub id; DST becomes an hf_gpt2 release",
    )
    direction.add_argument(
        "--to-gpt2", action="store_true", help="SRC is an hf_gpt2 folder; DST becomes a stock GPT2LMHeadModel folder"
    )
    parser.add_argument("src", metavar="SRC", type=model_source, help="model folder or Hub id")
    parser.add_argument("dst", metavar="DST", help="new output folder (must not exist or be empty)")


PUSH_HELP = "push a model folder (a release, or a run folder's final/) to the Hugging Face Hub"


def push_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `hf-gpt2 push`."""
    parser.add_argument(
        "--model",
        required=True,
        type=existing_folder,
        metavar="FOLDER",
        help="a release folder, or a run folder that has final/",
    )
    parser.add_argument(
        "--repo-id", required=True, type=repo_id, metavar="USER/NAME", help="the Hub model repo (created if missing)"
    )
    parser.add_argument(
        "--private", action="store_true", help="create the repo as private (an existing repo keeps its visibility)"
    )
    parser.add_argument(
        "--revision",
        type=matching(BRANCH, "a branch name (no spaces, ~^:?*[\\ or '..')"),
        metavar="BRANCH",
        help="branch to push to (created from main if missing)",
    )
    parser.add_argument("--commit-message", type=non_empty, metavar="TEXT", help="commit message")
    parser.add_argument(
        "--license",
        type=matching(LICENSE, "a Hub license id such as mit, apache-2.0, cc-by-4.0 or other (lowercase)"),
        metavar="ID",
        help="license for a newly written card (default: the recipe's hub.license or mit)",
    )
    parser.add_argument(
        "--rewrite-card",
        action="store_true",
        help="rewrite README.md even if it was edited by hand (a card hf_gpt2 wrote is always rewritten)",
    )


CLOUD_HELP = (
    "train on remote GPUs with SkyPilot (Lambda and other clouds): launch, status, logs, tensorboard, sync, down"
)


_NAME_HELP = "cluster or managed-job name (default: the latest launch from this machine)"


def cloud_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the cloud subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)
    launch = sub.add_parser(
        "launch",
        help="render a SkyPilot task from a recipe and launch it",
        usage="hf-gpt2 cloud launch RECIPE [--gpus H100:8] [--nodes N] [--infra INFRA] [--name NAME] [--keep] "
        "[--managed] [--detach] [--mount REMOTE=LOCAL] [--dry-run] [section.key=value ...]",
        description="Render a SkyPilot task from RECIPE (+ section.key=value overrides) and launch it. Options may "
        "come before or after the recipe; overrides come after it.",
    )
    cloud_launch_options(launch)
    launch.add_argument("recipe", help="recipe YAML, e.g. recipes/full.yaml")
    launch.add_argument("rest", nargs=argparse.REMAINDER, metavar="[OPTIONS] [OVERRIDES]", help=argparse.SUPPRESS)

    for action, text in (("status", "show the cluster or managed job"), ("down", "tear the cluster down")):
        sub.add_parser(action, help=text, description=text).add_argument("name", nargs="?", help=_NAME_HELP)
    logs = sub.add_parser("logs", help="print the run's logs", description="print the run's logs")
    logs.add_argument("name", nargs="?", help=_NAME_HELP)
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    board = sub.add_parser("tensorboard", help="forward the remote TensorBoard to a local port")
    board.add_argument("name", nargs="?", help=_NAME_HELP)
    board.add_argument("--port", type=ranged(PORT), default=6006, help="local port, 1 to 65535 (default 6006)")
    sync = sub.add_parser("sync", help="pull the run folder from the cluster (rsync)")
    sync.add_argument("name", nargs="?", help=_NAME_HELP)
    sync.add_argument("--dest", type=Path, default=None, help="local folder (default runs/<run name>)")
    sync.add_argument("--no-checkpoints", action="store_true", help="skip checkpoints/ (large optimizer states)")


def cloud_launch_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of `hf-gpt2 cloud launch` (also parsed after the recipe, see hf_gpt2.commands.cloud)."""
    parser.add_argument("--gpus", default="H100:8", help="GPU type and count per node (default H100:8)")
    parser.add_argument("--nodes", type=ranged(POSITIVE), default=1, help="number of nodes (default 1)")
    parser.add_argument("--infra", default=None, help="lambda, lambda/us-east-1, aws, k8s, ... (default: any)")
    parser.add_argument("--name", default=None, help="cluster and run name (default: recipe name + date)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster when the run ends")
    parser.add_argument("--managed", action="store_true", help="managed job: relaunched after preemption")
    parser.add_argument("--detach", action="store_true", help="return once submitted instead of streaming logs")
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        type=key_value("REMOTE=LOCAL"),
        metavar="REMOTE=LOCAL",
        help="copy a local file or folder",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the rendered task and change nothing")
