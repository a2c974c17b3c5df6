"""notebooks/demo.ipynb, the guided tour: committed with outputs cleared, and it runs top to bottom.

The notebook is executed with nbclient on the tiny config (``HF_GPT2_NOTEBOOK_TINY=1``, read in its parameters cell)
in a temporary copy of the repository layout (``notebooks/`` and ``recipes/``), so its run folder and token shards
are written there, never into the repository.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "demo.ipynb"
TINY_ENV = "HF_GPT2_NOTEBOOK_TINY"


def read_notebook():
    import nbformat

    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_committed_with_outputs_cleared():
    nb = read_notebook()
    dirty = [
        i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and (cell.outputs or cell.execution_count)
    ]
    assert not dirty, f"{NOTEBOOK.name}: clear the outputs of cells {dirty} before committing"


def test_notebook_has_a_parameters_cell_that_reads_the_tiny_switch():
    nb = read_notebook()
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert "parameters" in code_cells[0].metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert TINY_ENV in code_cells[0].source


@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copytree(REPO / "recipes", root / "recipes")
    nb = read_notebook()
    # Prove the kernel is this interpreter's environment (the .venv), not another python3 on the machine.
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    nbformat.write(nb, root / "notebooks" / NOTEBOOK.name)

    for name, value in {
        TINY_ENV: "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(root / "notebooks")}}
    )
    client.execute()  # raises CellExecutionError, naming the cell and the traceback, if any cell fails

    assert nb.cells[-1].outputs[0]["text"].strip() == sys.prefix
    assert list((root / "runs").iterdir()), "the training run should be written under the copy's runs/"
    assert not any(cell.get("outputs") and _errors(cell) for cell in nb.cells)
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the loss plot should be displayed"


def _errors(cell) -> bool:
    return any(output.get("output_type") == "error" for output in cell.outputs)
