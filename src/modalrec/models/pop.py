"""Pop: recommend the items most often seen in training. A sanity floor for every result table."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modalrec.models.base import ModelConfig, Output, SequentialRecommender
from modalrec.models.registry import register_model


@dataclass
class PopConfig(ModelConfig):
    name: str = "pop"


@register_model("pop")
class Pop(SequentialRecommender):
    """Score of an item = its number of occurrences in the training sequences.

    Fits the contract with 1-d embeddings: the user vector is [1] and item i's vector is
    [count_i], so ``user @ items.T`` is the count. Items unseen in training all score 0.
    """

    config_class = PopConfig
    trainable = False
    counts: torch.Tensor  # buffer [N+1]: training occurrences per item

    def __init__(self, config: PopConfig, dataset):
        super().__init__(config, dataset)
        self.register_buffer("counts", torch.zeros(self.n_items + 1, dtype=torch.float32))

    def fit_statistics(self, dataset) -> None:
        self.counts.copy_(torch.as_tensor(dataset.train_item_counts(), dtype=torch.float32))

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        c = self.counts if items is None else self.counts[items]
        return c.unsqueeze(-1)

    def user_embeddings(self, batch: dict) -> torch.Tensor:
        items = batch["items"]
        return torch.ones(items.shape[0], 1, device=items.device, dtype=self.counts.dtype)

    def forward(self, batch: dict) -> Output:
        raise RuntimeError("pop has no trainable parameters: it is fitted by fit_statistics()")
