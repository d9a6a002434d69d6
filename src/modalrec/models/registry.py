"""Model registry: ``@register_model("name")`` on the class, looked up by name."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modalrec.data.dataset import PreparedDataset
    from modalrec.models.base import SequentialRecommender

_MODELS: dict[str, type] = {}
# Modules that hold the built-in models; imported on first lookup (keeps `modalrec --help` fast).
_BUILTIN_MODULES = ("modalrec.models.pop", "modalrec.models.sasrec", "modalrec.models.pmmrec",
                    "modalrec.models.missrec", "modalrec.models.unisrec")


def register_model(name: str):
    def deco(cls):
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name '{name}' is already registered by {_MODELS[name].__name__}")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def available_models() -> list[str]:
    _load_builtins()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    _load_builtins()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"Unknown model '{name}'.{hint} Available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def model_config_class(name: str) -> type:
    from modalrec.config import ConfigError

    try:
        return get_model_class(name).config_class
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None


def build_model(config, dataset: "PreparedDataset", features="compute") -> "SequentialRecommender":
    """The model named by ``config.name`` for ``dataset``. ``features``: "compute" (encode the catalogue's
    content features now) or None (a model rebuilt from a run folder: see
    ``SequentialRecommender.load_item_state``)."""
    cls = get_model_class(config.name)
    return cls(config, dataset, features=features)
