"""The model registry: ``@register_model("name")`` on the class, looked up by name.

It lives in the lowest layer so that the config (which needs a model's config class) and the models
(which register themselves) can both use it; the built-in models are imported by module name on the
first lookup, which keeps ``modalrec --help`` fast.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:  # for the types only: the models sit layers above
    from modalrec.models.base import SequentialRecommender

    M = TypeVar("M", bound=type[SequentialRecommender])

_MODELS: dict[str, type[SequentialRecommender]] = {}
_BUILTIN_MODULES = (
    "modalrec.models.pop",
    "modalrec.models.sasrec",
    "modalrec.models.pmmrec",
    "modalrec.models.missrec",
    "modalrec.models.unisrec",
)


class UnknownModelError(KeyError):
    """No model is registered under this name (the message suggests the closest one)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def register_model(name: str) -> Callable[[M], M]:
    def deco(cls: M) -> M:
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


def get_model_class(name: str) -> type[SequentialRecommender]:
    _load_builtins()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownModelError(f"Unknown model '{name}'.{hint} Available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]
