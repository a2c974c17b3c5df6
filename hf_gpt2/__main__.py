"""`python -m hf_gpt2` is the `hf-gpt2` command."""

from hf_gpt2.cli import main

raise SystemExit(main())
