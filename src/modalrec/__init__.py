"""modalrec: ID-free, multi-modal, transferable sequential recommendation.

The names below are imported on first use (``modalrec --help`` stays instant)::

    import modalrec
    rec = modalrec.fit("sasrec", events, user_col="user", item_col="item", time_col="ts", out="runs/s")
    rec.recommend_users(["u1", "u2"], k=10)         # a DataFrame: user_id, item_id, score, rank
    modalrec.Recommender.load("runs/s")             # any run folder, however it was trained
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "fit": "modalrec.api",
    "Recommender": "modalrec.serve.recommender",
    "RequestError": "modalrec.serve.validation",
    "build_config": "modalrec.config",
    "ConfigError": "modalrec.config",
    "DataError": "modalrec.data.tables",
    "train": "modalrec.run.training",
    "load_run": "modalrec.run.store",
    "available_models": "modalrec.models.registry",
}
__all__ = [
    "__version__",
    "fit",
    "Recommender",
    "RequestError",
    "build_config",
    "ConfigError",
    "DataError",
    "train",
    "load_run",
    "available_models",
]

if TYPE_CHECKING:
    from modalrec.api import fit
    from modalrec.config import ConfigError, build_config
    from modalrec.data.tables import DataError
    from modalrec.models.registry import available_models
    from modalrec.run.store import load_run
    from modalrec.run.training import train
    from modalrec.serve.recommender import Recommender
    from modalrec.serve.validation import RequestError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modalrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
