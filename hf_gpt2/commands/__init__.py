"""Subcommands of `hf-gpt2`: ``arguments`` holds what each accepts; ``<name>.run(args) -> int`` does it."""
