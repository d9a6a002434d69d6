"""Model lookup by name (:mod:`modalrec.core.registry`) and construction for a data set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modalrec.core.registry import UnknownModelError, available_models, get_model_class, register_model

if TYPE_CHECKING:
    from modalrec.data.dataset import PreparedDataset
    from modalrec.models.base import SequentialRecommender

__all__ = [
    "UnknownModelError",
    "available_models",
    "build_model",
    "get_model_class",
    "model_config_class",
    "register_model",
]


def model_config_class(name: str) -> type:
    """The config class of model ``name`` (a ConfigError naming the closest model if unknown)."""
    from modalrec.config import model_config_class as lookup

    return lookup(name)


def build_model(
    config, dataset: "PreparedDataset", features="compute", *, progress: bool = False
) -> "SequentialRecommender":
    """The model named by ``config.name`` for ``dataset``, attached to its catalogue's item features.

    ``features``: "compute" (from the feature store, encoded now if needed), an ``ItemFeatures`` already
    computed, or None (a model rebuilt from a run folder: see ``SequentialRecommender.load_item_state``)."""
    model = get_model_class(config.name)(config, dataset)
    if isinstance(features, str) and features == "compute":
        features = catalogue_features_for(model, dataset, progress=progress)
    if features is not None:
        model.attach(dataset, features)
    return model


def catalogue_features_for(model: "SequentialRecommender", dataset: "PreparedDataset", *, progress: bool = False):
    """The item features ``model`` reads, for every row of ``dataset``'s catalogue."""
    from modalrec.content.features import catalogue_features

    return catalogue_features(
        model.feature_needs(),
        dataset,
        model=model.name,
        modalities=getattr(model.config, "modalities", ""),
        progress=progress,
    )
