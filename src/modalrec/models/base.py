"""The model contract shared by every recommender in modalrec.

Trainer, evaluator and server only use this surface, so they never ask which model they hold:

* ``item_embeddings(items=None) -> Tensor[N, d]``: item vectors (all items, row 0 = padding,
  when ``items`` is None). ID-free models compute them from content.
* ``user_embeddings(batch) -> Tensor[B, d]``: one vector per history in ``batch["items"]``.
* ``score(users, items) -> Tensor[B, N]``: ``users @ items.T`` unless a model documents otherwise.
* ``forward(batch) -> Output``: the training loss lives in ``forward`` (DDP/AMP friendly).
* ``feature_needs() -> [FeatureNeed]``, ``attach(dataset, ItemFeatures)``: content models say which
  frozen item features they read; :mod:`modalrec.content.features` computes them and the model
  receives them (models never run the feature store themselves). ID models need none.
* ``add_items(ItemFeatures) -> Tensor[n]`` / ``truncate_items(n)``: ID-free models append items they
  never saw (their features, e.g. from raw content via :func:`add_new_items`) to their catalogue, so
  serving can score and use them at once; ID models raise :class:`CapabilityError`.

Batches are dicts of tensors. Histories are **left-padded** with item 0, so the most recent item
is always at position ``L-1``:

* training: ``items`` [B, L] inputs, ``targets`` [B, L] next items (0 where there is none);
* evaluation/serving: ``items`` [B, L] histories and ``users`` [B]; never the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from modalrec.content.features import FeatureNeed, ItemFeatures
    from modalrec.data.dataset import PreparedDataset


@dataclass
class ModelConfig:
    """Base of every model config; ``name`` selects the registered model."""

    name: str = ""
    max_len: int = 50  # history window the model sees (longer training sequences are cut into windows)

    def train_defaults(self) -> dict:
        """``train.*`` defaults of this model (the user's train section and overrides still win). Default: none."""
        return {}

    def for_finetune(self) -> "ModelConfig":
        """The config to fine-tune a pre-trained model with (e.g. a pre-training stage switched to
        fine-tuning). Default: unchanged."""
        return self


def init_normal(module: nn.Module, std: float) -> None:
    """Initialise every Linear/Embedding below ``module``: weights N(0, std), biases and padding rows 0."""

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    module.apply(init)  # post-order, as nn.Module.apply always was here: same numbers for a seed


C = TypeVar("C", bound=ModelConfig)  # a model's own config class


class CapabilityError(ValueError):
    """A model asked for something its design cannot do (e.g. an ID model asked to encode a new item)."""


@dataclass
class NewItems:
    """Raw content of items a model never saw: ``texts`` [n] ("" = no text), ``images`` uint8
    ``[n, S, S, 3]`` already decoded at the image tower's size (or None), ``present`` [n] bool."""

    texts: list[str]
    images: np.ndarray | None = None
    present: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)


class Output(NamedTuple):
    loss: torch.Tensor
    logs: dict


class SequentialRecommender(nn.Module):
    """Base class: subclasses set ``name``/``config_class`` through ``@register_model``."""

    name: str = ""
    config_class: type = ModelConfig
    trainable: bool = True  # False for statistics-only models (pop): no optimizer, no epochs
    id_free: bool = False  # True when items are encoded from content (unseen items can be scored)
    score_is_dot: bool = True  # score() is a positive multiple of users @ items.T (approximate MIPS indexes apply)
    supports_domains: bool = False  # can train on several data sets at once (data.extra_sources, add_domain)
    modalities: tuple[str, ...] | list[str] = ()  # content the model reads: "text", "image"

    @property
    def image_size(self) -> int | None:
        """Side in pixels of the images the model reads (new items' images are decoded to it); None: no images."""
        return None

    def add_domain(self, dataset: "PreparedDataset", features: "ItemFeatures") -> int:
        """Another training data set (with its catalogue's features) and its own item space; returns its
        domain index (batches carry it)."""
        raise CapabilityError(
            f"{self.name} cannot train on several data sets at once (it has no item "
            "representation shared across catalogues); use a content model such as pmmrec"
        )

    def __init__(self, config: ModelConfig, dataset: "PreparedDataset"):
        """The architecture for ``dataset``'s catalogue. A content model's item features come next, from
        :meth:`attach` (``build_model`` does it) or, rebuilt from a run folder, :meth:`load_item_state`."""
        super().__init__()
        self.config = config
        self.n_items = dataset.n_items

    # -- the contract ------------------------------------------------------------------------
    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def user_embeddings(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return users @ items.T

    def forward(self, batch: dict) -> Output:
        raise NotImplementedError

    def feature_needs(self) -> list["FeatureNeed"]:
        """The frozen item features this model reads (:mod:`modalrec.content.features`). Default: none."""
        return []

    def attach(self, dataset: "PreparedDataset", features: "ItemFeatures") -> None:
        """Point the model at ``dataset``'s catalogue, given the features :meth:`feature_needs` names for
        every row. Default (a model that reads no features): nothing to do."""
        if features:
            raise ValueError(f"{self.name} reads no item features, but got {sorted(features)}")

    def add_items(self, features: "ItemFeatures") -> torch.Tensor:
        """Append new items, given their features, to the catalogue (indices ``n_items+1 ..``) and return
        their indices."""
        raise CapabilityError(
            f"{self.name} learns one ID embedding per training item, so it cannot score or use an item it "
            "never saw; use an ID-free model (pmmrec, missrec or unisrec in inductive mode) for new items"
        )

    def truncate_items(self, n_items: int) -> None:
        """Forget items above ``n_items`` (undoes :meth:`add_items`)."""
        raise CapabilityError(f"{self.name} cannot add or remove items")

    def similarity_vectors(self, table: torch.Tensor) -> torch.Tensor:
        """Rows of ``item_embeddings()`` as vectors whose cosine means item similarity (default: as is)."""
        return table

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each training epoch (1-based). Default: nothing."""

    def fit_statistics(self, dataset: "PreparedDataset") -> None:
        """Non-gradient fitting from the training split (e.g. popularity counts). Default: none."""

    # -- what a run folder needs to rebuild the model without its data (modalrec.run) ---------------
    def item_state(self) -> dict[str, torch.Tensor]:
        """Per-item tensors, beyond ``state_dict()``, needed to score and use the catalogue when the model
        is rebuilt without item features (e.g. a content model's item table). Default: none."""
        return {}

    def load_item_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`item_state` returned, on a model built with ``features=None`` (no :meth:`attach`)."""
        if state:
            raise ValueError(f"{self.name} keeps no item state, but got {sorted(state)}")

    def save_assets(self, folder) -> None:
        """Write the non-weight files (tokenizer, tower architecture) needed to rebuild this model's
        architecture without downloads. Default: nothing to write."""

    @classmethod
    def config_from_assets(cls, config: ModelConfig, folder) -> ModelConfig:
        """A copy of ``config`` whose parts are built from the files :meth:`save_assets` wrote. Default: as is."""
        return config

    @classmethod
    def own_config(cls, config: ModelConfig, kind: type[C]) -> C:
        """``config``, checked to be of this model's config class ``kind`` (a TypeError names both otherwise)."""
        if not isinstance(config, kind):
            raise TypeError(f"{cls.__name__} takes a {kind.__name__}, not a {type(config).__name__}")
        return config

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def add_new_items(model: SequentialRecommender, items: NewItems) -> torch.Tensor:
    """Add items given as raw content: their features computed by :mod:`modalrec.content.features` with
    the towers the model names, then :meth:`SequentialRecommender.add_items`."""
    from modalrec.content.features import new_item_features

    return model.add_items(new_item_features(model.feature_needs(), items))
