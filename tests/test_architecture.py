"""The package's shape, checked like code: no import cycles, imports at the top of modules (an optional dependency
excepted), training as a leaf, and a command line whose parsing and recipe checks import neither torch nor
transformers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hf_gpt2"
OPTIONAL_DEPENDENCIES = {"sky"}
"""Imported inside a function because they may be missing: SkyPilot lives in its own environment."""
LOADS_BY_NAME = {
    "hf_gpt2",
    "hf_gpt2.cli",
    "hf_gpt2.auto_registration",
    "hf_gpt2.data.prepare",
    "hf_gpt2.commands.prepare",
}
"""The only modules that import with ``importlib.import_module``: the lazy package attributes, the command dispatch,
the Auto-class registration, and data preparation, which loads transformers' tokenizers only for tokenizers other
than GPT-2's and for SFT data, so that ``hf-gpt2 prepare`` with GPT-2's BPE imports neither torch nor transformers.
The module names they load are string literals, counted as imports below."""
HEAVY = ("torch", "transformers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py")}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, tree: ast.Module) -> tuple[set[str], list[tuple[int, str]]]:
    """(modules imported at module level, (line, module) of each import inside a function)."""
    top: set[str] = set()
    inner: list[tuple[int, str]] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = _resolve(module, node)
        return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base for alias in node.names]

    def walk(body: list[ast.stmt], in_function: bool) -> None:
        for node in body:
            if _is_type_checking(node):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if in_function:
                    inner.extend((node.lineno, target) for target in targets(node))
                else:
                    top.update(targets(node))
                continue
            function = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    walk(children, function)

    walk(tree.body, False)
    if module in LOADS_BY_NAME:
        names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        top |= {name for name in names if name in modules()}
    return top, inner


def _internal(target: str) -> str | None:
    """The deepest module of the package that ``target`` names (``hf_gpt2.x.y.Name`` → ``hf_gpt2.x.y``)."""
    parts = target.split(".")
    while parts and ".".join(parts) not in modules():
        parts.pop()
    return ".".join(parts) if parts else None


@cache
def graph() -> dict[str, set[str]]:
    """module → the package's modules it imports when it loads, with the packages whose ``__init__`` that runs
    (a package that contains the importer is already loading, so it is left out)."""
    edges: dict[str, set[str]] = {}
    for module, tree in modules().items():
        found = {_internal(target) for target in _imports(module, tree)[0]} - {None, module}
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        implied = set()
        for target in found:
            parts = target.split(".")
            implied |= {".".join(parts[:i]) for i in range(1, len(parts))} - ancestors
        edges[module] = (found | implied) - {module}
    return edges


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for target in graph()[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_import_graph_has_no_cycle():
    cycles = sorted(m for m in modules() if m in closure(m))
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_imports_are_at_the_top_except_optional_dependencies():
    inside = [
        f"{module}:{line} imports {target}"
        for module, tree in sorted(modules().items())
        for line, target in _imports(module, tree)[1]
        if target.split(".")[0] not in OPTIONAL_DEPENDENCIES
    ]
    assert not inside, "imports inside functions (move them to the top of the module):\n" + "\n".join(inside)


def test_only_the_dispatch_modules_load_modules_by_name():
    loaders = {
        module
        for module, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("import_module", "__import__")
    }
    assert loaders <= LOADS_BY_NAME, sorted(loaders - LOADS_BY_NAME)


def test_training_is_a_leaf():
    for module in (m for m in modules() if m.startswith("hf_gpt2.training")):
        downstream = {
            m for m in closure(module) if m.startswith(("hf_gpt2.release", "hf_gpt2.evaluation", "hf_gpt2.hub"))
        }
        downstream |= {m for m in closure(module) if m == "hf_gpt2.pipeline"}
        assert not downstream, f"{module} imports {sorted(downstream)}"


def test_the_graph_sees_real_imports():
    """The checks above would pass on an empty graph: make sure the parsing finds what is there."""
    assert "hf_gpt2.training.loop" in closure("hf_gpt2.pipeline")
    assert "hf_gpt2.commands.train" in graph()["hf_gpt2.cli"]  # loaded by name
    assert "hf_gpt2.data" in graph()["hf_gpt2.tokenization"]  # a package's __init__ runs first
    assert "hf_gpt2.recipe.sections" not in graph()["hf_gpt2.recipe.rules"]  # TYPE_CHECKING only


def _imported_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return its exit code, stderr and whether torch / transformers loaded."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps({{name: name in sys.modules for name in {HEAVY!r}}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import hf_gpt2",
        "import hf_gpt2.cli",
        "from hf_gpt2.cli import build_parser\nbuild_parser()",
        "from hf_gpt2.recipe import load_recipe\nfor p in __import__('pathlib').Path('recipes').glob('*.yaml'): "
        "load_recipe(p)",
    ],
    ids=["package", "cli", "parser", "recipes"],
)
def test_parsing_and_recipes_import_neither_torch_nor_transformers(code):
    assert _imported_after(code) == dict.fromkeys(HEAVY, False)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["cloud", "launch", "--help"],
        ["train", "recipes/quickstart.yaml", "model.activation_function=mish"],
        ["prepare", "recipes/quickstart.yaml", "train.max_stesp=3"],
        ["train", "recipes/quickstart.yaml", "optim.lr=fast"],
        ["generate", "--model", "gpt2", "--top-k", "-5"],
        ["push", "--model", "runs/missing/final", "--repo-id", "user/x"],
        ["prepare", "recipes/quickstart.yaml", "data.max_documents=40", "data.cache_dir=.cache/architecture-test"],
    ],
    ids=[
        "help",
        "train-help",
        "eval-help",
        "cloud-launch-help",
        "bad-model-field",
        "typo",
        "bad-value",
        "bad-option",
        "missing-folder",
        "prepare",
    ],
)
def test_help_and_recipe_errors_answer_before_any_heavy_import(argv):
    code = f"""
        import contextlib, io, sys
        from hf_gpt2.cli import main
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main({argv!r})
            except SystemExit as exit:
                code = exit.code
        assert code in (0, 2), (code, err.getvalue())
        assert (out.getvalue() if code == 0 else err.getvalue()).strip(), "nothing was printed"
        if code == 2:
            assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    """
    assert _imported_after(code) == dict.fromkeys(HEAVY, False)


def test_a_bad_model_field_is_refused_by_the_recipe_in_the_configs_words():
    from hf_gpt2.errors import RecipeError
    from hf_gpt2.recipe import load_recipe

    with pytest.raises(RecipeError) as err:
        load_recipe(REPO / "recipes" / "quickstart.yaml", ["model.activation_function=mish"])
    assert "model.activation_function='mish' is not one of ['gelu_new', 'gelu_pytorch_tanh'" in str(err.value)
    from hf_gpt2 import HfGPT2Config

    with pytest.raises(
        ValueError, match=r"activation_function='mish' is not one of \['gelu_new', 'gelu_pytorch_tanh'"
    ):
        HfGPT2Config(activation_function="mish")
