"""Registering ``model_type: hf_gpt2`` with transformers' Auto classes without importing transformers to do it.

``import hf_gpt2`` must stay cheap (the CLI's ``--help`` and recipe errors do not pay for torch), yet
``import hf_gpt2; AutoModelForCausalLM.from_pretrained(folder)`` must find the model without ``trust_remote_code``.
So the package installs an import hook: the registration runs once transformers' Auto modules or hf_gpt2's own
configuration / modeling modules have loaded, whichever comes first (at once when they are loaded already):

- after ``transformers.models.auto.configuration_auto`` or ``hf_gpt2.configuration_hf_gpt2``:
  ``AutoConfig.register("hf_gpt2", HfGPT2Config)`` and ``HfGPT2Config.register_for_auto_class()``;
- after ``transformers.models.auto.modeling_auto`` or ``hf_gpt2.modeling_hf_gpt2``: that, and every model class of
  the table ``hf_gpt2.AUTO_CLASSES`` with its Auto class (``register`` + ``register_for_auto_class``, so saved folders
  get an ``auto_map`` and copies of the model files for ``trust_remote_code``).

A trigger can fire in the middle of a transformers import (``transformers.modeling_layers`` loads the Auto modules
half-way through its own code), when the model classes cannot be imported yet; the registration then waits until no
transformers module is loading any more, which the hook sees because it follows every ``transformers.*`` import
until the models are registered. The modules are loaded by name (:func:`importlib.import_module`): this is the one
place that decides when torch and transformers are imported for the Auto classes.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

CONFIG_MODULE = "hf_gpt2.configuration_hf_gpt2"
MODELING_MODULE = "hf_gpt2.modeling_hf_gpt2"
CONFIG_AUTO = "transformers.models.auto.configuration_auto"
MODELING_AUTO = "transformers.models.auto.modeling_auto"
_TRIGGERS = {CONFIG_AUTO: "config", CONFIG_MODULE: "config", MODELING_AUTO: "models", MODELING_MODULE: "models"}
_AUTO_CLASSES: dict[str, str] = {}
_STATE: dict[str, Any] = {"pending": set(), "done": set(), "registering": False}


def install(auto_classes: Mapping[str, str]) -> None:
    """Register ``auto_classes`` (model class name in ``modeling_hf_gpt2`` → Auto class name) with transformers as soon
    as it can be, now or after the next import of a trigger module."""
    _AUTO_CLASSES.clear()
    _AUTO_CLASSES.update(auto_classes)
    if not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
    for name, what in _TRIGGERS.items():
        if name in sys.modules:
            _STATE["pending"].add(what)
    _register_when_quiet(done=None)


def _after_import(name: str) -> None:
    """Called when the module ``name`` (a trigger or any ``transformers.*`` module) has just run."""
    if name in _TRIGGERS:
        _STATE["pending"].add(_TRIGGERS[name])
    _register_when_quiet(done=name)


def _register_when_quiet(done: str | None) -> None:
    """Register what is pending unless a module it may need is still half-way through its import."""
    pending, finished = _STATE["pending"], _STATE["done"]
    if not pending - finished or _STATE["registering"] or _loading_other_than(done):
        return
    _STATE["registering"] = True
    try:
        _register_config()
        finished.add("config")
        if "models" in pending:
            _register_models()
            finished.add("models")
    finally:
        _STATE["registering"] = False


def _register_config() -> None:
    config = importlib.import_module(CONFIG_MODULE).HfGPT2Config
    importlib.import_module(CONFIG_AUTO).AutoConfig.register(config.model_type, config, exist_ok=True)
    config.register_for_auto_class()


def _register_models() -> None:
    config = importlib.import_module(CONFIG_MODULE).HfGPT2Config
    modeling = importlib.import_module(MODELING_MODULE)
    auto = importlib.import_module(MODELING_AUTO)
    for class_name, auto_name in _AUTO_CLASSES.items():
        model_class = getattr(modeling, class_name)
        getattr(auto, auto_name).register(config, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_name)


def _loading_other_than(done: str | None) -> bool:
    """Whether a transformers or hf_gpt2 model module other than ``done`` is half-way through its import."""
    return any(
        name != done and _followed(name) and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))
        for name, module in list(sys.modules.items())
    )


def _followed(name: str) -> bool:
    return name in _TRIGGERS or name == "transformers" or name.startswith("transformers.")


class _RegisterAfterImport:
    """A ``sys.meta_path`` finder that wraps the loaders of the modules it follows; it finds nothing itself."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if not _followed(fullname) or _STATE["done"] >= {"config", "models"}:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _NotifyingLoader(spec.loader)
                return spec
        return None


class _NotifyingLoader:
    """Runs the real loader, then :func:`_after_import`; everything else is the real loader's."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _after_import(module.__name__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
