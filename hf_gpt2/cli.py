"""The `hf-gpt2` command line: parse, check the recipe, then run the command.

Parsing (:mod:`hf_gpt2.commands.arguments`) and the recipe's checks (:mod:`hf_gpt2.recipe`) import neither torch nor
transformers, so ``hf-gpt2 --help``, ``hf-gpt2 COMMAND --help`` and a recipe error answer at once. Only then is the
command's module, ``hf_gpt2.commands.<name>`` (which imports what the command needs), loaded by name and its
``run(args)`` called; for the commands that take a recipe, ``args.recipe`` is then the loaded :class:`Recipe`.
The project's own errors (:class:`hf_gpt2.errors.HfGPT2Error`), a bad option (checked while parsing, see
:mod:`hf_gpt2.commands.arguments`) and an ``OSError`` of the file system that names its path (a full or read-only
disk, no permission, a file in the way: :func:`hf_gpt2.folders.as_storage_error`) print as one line and exit 2;
anything unexpected keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from hf_gpt2.commands import arguments
from hf_gpt2.errors import HfGPT2Error
from hf_gpt2.folders import as_storage_error
from hf_gpt2.recipe import load_recipe


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, its arguments, the module whose ``run(args)`` does it, and whether it takes a
    recipe (loaded and checked before that module is imported)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    module: str
    takes_recipe: bool = False


COMMANDS: dict[str, Command] = {
    "train": Command(arguments.TRAIN_HELP, arguments.train_arguments, "hf_gpt2.commands.train", takes_recipe=True),
    "prepare": Command(
        arguments.PREPARE_HELP, arguments.prepare_arguments, "hf_gpt2.commands.prepare", takes_recipe=True
    ),
    "eval": Command(arguments.EVAL_HELP, arguments.eval_arguments, "hf_gpt2.commands.evaluate_cmd"),
    "generate": Command(arguments.GENERATE_HELP, arguments.generate_arguments, "hf_gpt2.commands.generate"),
    "convert": Command(arguments.CONVERT_HELP, arguments.convert_arguments, "hf_gpt2.commands.convert"),
    "push": Command(arguments.PUSH_HELP, arguments.push_arguments, "hf_gpt2.commands.push"),
    "cloud": Command(arguments.CLOUD_HELP, arguments.cloud_arguments, "hf_gpt2.commands.cloud"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand."""
    parser = arguments.CommandParser(prog="hf-gpt2", description="GPT-2, all in: train, evaluate, share.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit status (2 for a user error, printed as one line)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        args = build_parser().parse_args(argv)
    except arguments.UsageError as err:
        sys.stderr.write(f"{err.prog}: error: {err}\n")
        return 2
    except SystemExit as exit:  # --help, already printed
        return exit.code if isinstance(exit.code, int) else 0
    command = COMMANDS[args.command]
    try:
        if command.takes_recipe:
            args.recipe = load_recipe(args.recipe, args.overrides)
        return int(importlib.import_module(command.module).run(args) or 0)
    except arguments.UsageError as err:  # options a command parses itself (cloud launch, after the recipe)
        sys.stderr.write(f"{err.prog}: error: {err}\n")
        return 2
    except HfGPT2Error as err:
        sys.stderr.write(f"hf-gpt2 {args.command}: error: {err}\n")
        return 2
    except OSError as err:
        storage = as_storage_error(err)
        if storage is None:
            raise
        sys.stderr.write(f"hf-gpt2 {args.command}: error: {storage}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
