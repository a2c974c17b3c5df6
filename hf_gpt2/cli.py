"""The `hf-gpt2` command line: one subcommand per module in ``hf_gpt2.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``, and imports
heavy libraries (torch, transformers) inside ``run`` so that ``hf-gpt2 --help`` starts fast.
The project's own errors (:class:`hf_gpt2.errors.HfGPT2Error`) print as one line and exit 2; anything unexpected
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hf_gpt2.errors import HfGPT2Error

COMMANDS: dict[str, str] = {
    "train": "hf_gpt2.commands.train",
    "prepare": "hf_gpt2.commands.prepare",
    "eval": "hf_gpt2.commands.evaluate_cmd",
    "generate": "hf_gpt2.commands.generate",
    "convert": "hf_gpt2.commands.convert",
    "push": "hf_gpt2.commands.push",
    "cloud": "hf_gpt2.commands.cloud",
}


def add_recipe_arguments(parser: argparse.ArgumentParser, example_overrides: str) -> None:
    """The positional ``RECIPE [section.key=value ...]`` shared by the commands that run a recipe."""
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help=f"recipe overrides, e.g. {example_overrides}"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="hf-gpt2", description="GPT-2, all in: train, evaluate, share.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit status (2 for a user error, printed as one line)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except HfGPT2Error as err:
        sys.stderr.write(f"hf-gpt2 {args.command}: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
