"""What every `hf-gpt2` subcommand accepts: its one-line help and its arguments (argparse only, so parsing is fast).

``hf_gpt2.cli`` builds the parser from these; the command itself is ``run(args)`` in ``hf_gpt2.commands.<name>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


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
    parser.add_argument("--model", required=True, help="an hf_gpt2 folder, any causal-LM folder, or a Hub id")
    parser.add_argument(
        "--tasks",
        required=True,
        help="comma-separated tasks or groups: gpt2-paper, all, lambada_openai, lambada_openai_paper, wikitext2, "
        "wikitext103, ptb, lm1b, cbt_cn, cbt_ne, hellaswag, enwik8, text8, val_loss",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="TASK=PATH",
        help="a local file or folder for a task instead of its Hub dataset (repeatable)",
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N documents/items per task")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per forward pass (default 8)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="weights dtype: float32, bfloat16, float16 (default: as saved)")
    parser.add_argument("--context", type=int, default=None, help="rolling tasks: tokens per window")
    parser.add_argument("--stride", type=int, default=None, help="rolling tasks: new tokens per window")
    parser.add_argument("--no-detokenize", action="store_true", help="score WikiText/CBT/PTB/1BW text as tokenized")
    parser.add_argument("--output", default=None, metavar="FILE.json", help="write the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


GENERATE_HELP = "generate text from a model folder or Hub id (streamed), or chat with an SFT model (--chat)"


def generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (a release, a stock GPT-2 folder) or Hub id")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--prompt", default="", help="text to continue (default: start from <|endoftext|>)")
    mode.add_argument("--chat", action="store_true", help="interactive Human/Assistant chat (an empty line quits)")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="tokens to generate per answer (100)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 is greedy (0.8)")
    parser.add_argument("--top-k", type=int, default=200, help="sample from the k most likely tokens; 0 is off (200)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (off)")
    parser.add_argument("--repetition-penalty", type=float, default=None, help="penalise repeated tokens, e.g. 1.2")
    parser.add_argument("--num-return-sequences", type=int, default=1, help="samples for --prompt (1)")
    parser.add_argument("--seed", type=int, default=None, help="seed for repeatable sampling")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda when available)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="weights dtype (auto: as saved)")  # fmt: skip
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model folder's own code")


CONVERT_HELP = "convert between stock transformers GPT-2 (e.g. openai-community/gpt2) and hf_gpt2"


def convert_arguments(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--from-gpt2",
        action="store_true",
        help="SRC is a stock GPT-2 folder or Hub id; DST becomes an hf_gpt2 release",
    )
    direction.add_argument(
        "--to-gpt2", action="store_true", help="SRC is an hf_gpt2 folder; DST becomes a stock GPT2LMHeadModel folder"
    )
    parser.add_argument("src", metavar="SRC", help="model folder or Hub id")
    parser.add_argument("dst", metavar="DST", help="new output folder (must not exist or be empty)")


PUSH_HELP = "push a model folder (a release, or a run folder's final/) to the Hugging Face Hub"


def push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, metavar="FOLDER", help="a release folder, or a run folder that has final/"
    )
    parser.add_argument(
        "--repo-id", required=True, metavar="USER/NAME", help="the Hub model repo (created if missing)"
    )
    parser.add_argument(
        "--private", action="store_true", help="create the repo as private (an existing repo keeps its visibility)"
    )
    parser.add_argument("--revision", metavar="BRANCH", help="branch to push to (created from main if missing)")
    parser.add_argument("--commit-message", metavar="TEXT", help="commit message")
    parser.add_argument(
        "--license", metavar="ID", help="license for a newly written card (default: the recipe's hub.license or mit)"
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
    board.add_argument("--port", type=int, default=6006, help="local port (default 6006)")
    sync = sub.add_parser("sync", help="pull the run folder from the cluster (rsync)")
    sync.add_argument("name", nargs="?", help=_NAME_HELP)
    sync.add_argument("--dest", type=Path, default=None, help="local folder (default runs/<run name>)")
    sync.add_argument("--no-checkpoints", action="store_true", help="skip checkpoints/ (large optimizer states)")


def cloud_launch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", default="H100:8", help="GPU type and count per node (default H100:8)")
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--infra", default=None, help="lambda, lambda/us-east-1, aws, k8s, ... (default: any)")
    parser.add_argument("--name", default=None, help="cluster and run name (default: recipe name + date)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster when the run ends")
    parser.add_argument("--managed", action="store_true", help="managed job: relaunched after preemption")
    parser.add_argument("--detach", action="store_true", help="return once submitted instead of streaming logs")
    parser.add_argument(
        "--mount", action="append", default=[], metavar="REMOTE=LOCAL", help="copy a local file or folder"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the rendered task and change nothing")
