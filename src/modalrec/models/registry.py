"""Model lookup by name (:mod:`modalrec.core.registry`) and construction for a data set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modalrec.core.registry import UnknownModelError, available_models, get_model_class, register_model

if TYPE_CHECKING:
    from modalrec.data.dataset import PreparedDataset
    from modalrec.models.base import SequentialRecommender

__all__ = ["UnknownModelError", "available_models", "build_model", "get_model_class", "model_config_class",
           "register_model"]


def model_config_class(name: str) -> type:
    """The config class of model ``name`` (a ConfigError naming the closest model if unknown)."""
    from modalrec.config import model_config_class as lookup

    return lookup(name)


def build_model(config, dataset: "PreparedDataset", features="compute") -> "SequentialRecommender":
    """The model named by ``config.name`` for ``dataset``. ``features``: "compute" (encode the catalogue's
    content features now) or None (a model rebuilt from a run folder: see
    ``SequentialRecommender.load_item_state``)."""
    cls = get_model_class(config.name)
    return cls(config, dataset, features=features)
