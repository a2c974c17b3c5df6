"""`python -m hf_gpt2.recipe recipes/README.md` rewrites the recipe reference from the field docstrings."""

import sys

from hf_gpt2.recipe.reference import update_reference

update_reference(sys.argv[1] if len(sys.argv) > 1 else "recipes/README.md")
