"""transformers' own common model tests, fetched from the transformers source distribution on PyPI.

The sdist of the installed transformers version carries ``tests/test_modeling_common.py`` (``ModelTesterMixin``),
``tests/test_configuration_common.py`` (``ConfigTester``) and ``tests/test_pipeline_mixin.py``. They are downloaded
once with ``pip download --no-binary :all: --no-deps transformers==<version>`` and unpacked under
``.cache/transformers-tests/<version>/transformers_tests/`` (ignored by git), so later runs read them from there.

Three modules those files import are not in the sdist: ``generation/test_utils.py`` (``GenerationTesterMixin``),
``exporters/test_export.py`` (``ExportTesterMixin``) and ``utils/test_configuration_utils.py``
(``config_common_kwargs``). They are written here as stand-ins: the two mixins as empty classes (those tests are not
run; ``tests/test_transformers_common.py`` runs its own generation parity checks against stock GPT-2 instead) and
``config_common_kwargs`` as non-default values of every field a transformers 5 ``PreTrainedConfig`` has.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "transformers-tests"
PACKAGE = "transformers_tests"
FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_pipeline_mixin.py")
STAND_INS = {
    "generation/test_utils.py": (
        '"""Stand-in: tests/generation/test_utils.py is not in the transformers sdist."""\n\n\n'
        "class GenerationTesterMixin:\n    pass\n"
    ),
    "exporters/test_export.py": (
        '"""Stand-in: tests/exporters/test_export.py is not in the transformers sdist."""\n\n\n'
        "class ExportTesterMixin:\n    pass\n"
    ),
    "utils/test_configuration_utils.py": (
        '"""Stand-in: tests/utils/test_configuration_utils.py is not in the transformers sdist.\n'
        'Non-default values of the fields every transformers 5 PreTrainedConfig has."""\n\n'
        "config_common_kwargs = {\n"
        '    "return_dict": False,\n'
        '    "output_hidden_states": True,\n'
        '    "output_attentions": True,\n'
        '    "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5,\n'
        '    "architectures": ["SomeModel"],\n'
        '    "id2label": {0: "label"},\n'
        '    "label2id": {"label": "0"},\n'
        '    "problem_type": "regression",\n'
        "}\n"
    ),
}


def suite_root(version: str = transformers.__version__) -> Path:
    """The folder holding the ``transformers_tests`` package for ``version``, downloaded on first use.

    Raises:
        RuntimeError: if pip cannot download the sdist (no access to PyPI) or it lacks the common test files.
    """
    root = CACHE / version
    package = root / PACKAGE
    if not all((package / name).is_file() for name in FILES):
        _download(version, package)
    for relative, text in STAND_INS.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return root


def _download(version: str, package: Path) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:  # same file system: the final rename is atomic
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
        done = subprocess.run(
            [*command, f"transformers=={version}", "-d", scratch], capture_output=True, text=True, timeout=600
        )
        archives = list(Path(scratch).glob("transformers-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RuntimeError(
                f"could not download the transformers {version} sdist from PyPI for its common model tests: "
                f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}"
            )
        staged = Path(scratch) / PACKAGE
        staged.mkdir()
        with tarfile.open(archives[0]) as archive:
            for name in FILES:
                member = archive.extractfile(f"transformers-{version}/tests/{name}")
                if member is None:
                    raise RuntimeError(f"the transformers {version} sdist has no tests/{name}")
                (staged / name).write_bytes(member.read())
        (staged / "__init__.py").touch()
        package.parent.mkdir(parents=True, exist_ok=True)
        if package.exists():
            shutil.rmtree(package)
        staged.rename(package)  # whole or not at all: a failed download leaves nothing half-written


def load(name: str) -> ModuleType:
    """Import ``transformers_tests.<name>`` (e.g. ``test_modeling_common``) from the cached suite."""
    root = str(suite_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"{PACKAGE}.{name}")
