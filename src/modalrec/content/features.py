"""Item features: what a content model reads about its items, computed here and handed to the model.

A content model says which frozen features it needs (:class:`FeatureNeed`: a modality, ``pooled`` or
``prefix``, and the tower that computes them); this module computes them and returns an
:class:`ItemFeatures` mapping, which the model receives (``attach``, ``add_domain``, ``add_items``).
Models themselves never call the feature store or run a frozen tower on a catalogue.

- :func:`catalogue_features`: every row of a data set's catalogue, through the feature store (cached
  on disk, encoded once; row 0 is padding);
- :func:`new_item_features`: items given as raw content (``texts``, decoded ``images`` and which are
  ``present``, e.g. added while serving), computed exactly as the store computes them (fp16), so an
  added item gets the features it would have had in the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

MODALITIES = ("text", "image")
KINDS = ("pooled", "prefix")


@dataclass(frozen=True)
class FeatureNeed:
    """One kind of frozen feature a model reads: ``modality`` "text" or "image", ``what`` "pooled" (the
    whole tower's vector) or "prefix" (the frozen layers' outputs), computed by ``tower``."""

    modality: str
    what: str
    tower: nn.Module
    lmdb: str = ""  # images: an LMDB of image bytes instead of the catalogue's image paths

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES or self.what not in KINDS:
            raise ValueError(f"a feature is one of {MODALITIES} x {KINDS}, not ({self.modality!r}, {self.what!r})")


@dataclass
class ModalityFeatures:
    """Features of one modality for ``n`` items: ``values`` fp16 ``[n, ...]``, ``present`` bool ``[n]``
    (the item has this content), ``lengths`` ``[n]`` tokens per row (text prefix only)."""

    values: torch.Tensor
    present: np.ndarray
    lengths: np.ndarray | None = None

    def tensor(self) -> torch.Tensor:
        """The values as a tensor (the feature store's ``Features`` has the same surface)."""
        return self.values

    def __len__(self) -> int:
        return len(self.present)


class ItemFeatures(dict):
    """modality -> features of every item (``ModalityFeatures`` or an opened feature store)."""


class RawItems(Protocol):
    """Items given as content: ``texts`` [n] (``""`` = none), ``images`` [n, S, S, 3] uint8 or None,
    ``present`` [n] bool (which images are real) or None (no images). ``NewItems`` is one."""

    texts: list[str]
    images: np.ndarray | None
    present: np.ndarray | None


def catalogue_features(
    needs: list[FeatureNeed], dataset, *, model: str = "the model", modalities: str = "", progress: bool = True
) -> ItemFeatures:
    """The features ``needs`` names for every row of ``dataset``'s catalogue, from the feature store
    (encoded now if not there yet). ``model``/``modalities`` only word the error of a missing image source."""
    from modalrec.content.image import ImageReader
    from modalrec.content.store import encode_images, encode_text

    cat, out = dataset.catalogue, ItemFeatures()
    for need in needs:
        if need.modality == "text":
            feats, _ = encode_text(
                need.tower, cat.item_ids, cat.text, dataset=dataset.name, what=need.what, progress=progress
            )
        else:
            reader = ImageReader.for_model(dataset, need.lmdb, model, modalities or need.modality)
            feats, _ = encode_images(need.tower, reader, dataset=dataset.name, what=need.what, progress=progress)
        out[need.modality] = feats
    return out


def new_item_features(needs: list[FeatureNeed], items: RawItems) -> ItemFeatures:
    """The features ``needs`` names for items given as raw content (no padding row): an empty text or
    an image not ``present`` gives zeros and ``present`` False."""
    from modalrec.content.store import image_rows, text_rows

    out, n = ItemFeatures(), len(items.texts)
    for need in needs:
        if need.modality == "text":
            values, present, lengths = text_rows(need.tower, items.texts, what=need.what)
            out["text"] = ModalityFeatures(values, present, lengths if need.what == "prefix" else None)
        else:
            present = np.zeros(n, bool) if items.present is None else np.asarray(items.present, dtype=bool)
            chunks = [
                image_rows(
                    need.tower,
                    None if items.images is None else items.images[i : i + IMAGE_CHUNK],
                    present[i : i + IMAGE_CHUNK],
                    what=need.what,
                )
                for i in range(0, max(n, 1), IMAGE_CHUNK)
            ]
            out["image"] = ModalityFeatures(torch.cat(chunks)[:n], present)
    return out


IMAGE_CHUNK = 8  # images through a tower at once: bounds the activations' memory (the store uses 32)
