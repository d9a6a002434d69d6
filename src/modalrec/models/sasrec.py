"""SASRec: self-attentive sequential recommendation with ID embeddings.

Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. Trained here with
cross-entropy over the full catalogue instead of the paper's one sampled negative, as in
Klenitskiy and Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?",
RecSys 2023 (SASRec+): this is the stronger, standard variant.

The ID baseline: it can only score items it has an embedding for, so it cannot transfer to a
new catalogue nor recommend items that never occurred in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from modalrec.losses import full_softmax_ce
from modalrec.models.base import ModelConfig, Output, SequentialRecommender, init_normal
from modalrec.models.registry import register_model
from modalrec.nn.transformer import SequenceEncoder


@dataclass
class SASRecConfig(ModelConfig):
    name: str = "sasrec"
    max_len: int = 50
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.2
    norm_first: bool = True  # pre-LN blocks (post-LN as in RecBole with false)
    init_std: float = 0.02


@register_model("sasrec")
class SASRec(SequentialRecommender):
    config_class = SASRecConfig
    config: SASRecConfig

    def __init__(self, config: SASRecConfig, dataset):
        super().__init__(config, dataset)
        c = config
        self.item_embedding = nn.Embedding(self.n_items + 1, c.hidden_size, padding_idx=0)
        self.user_encoder = SequenceEncoder(
            c.hidden_size,
            c.max_len,
            c.n_layers,
            c.n_heads,
            c.inner_size,
            c.dropout,
            c.attn_dropout,
            norm_first=c.norm_first,
        )
        init_normal(self, c.init_std)

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        w = self.item_embedding.weight
        return w if items is None else w[items]

    def _hidden(self, items: torch.Tensor) -> torch.Tensor:
        return self.user_encoder(self.item_embedding(items), items)

    def user_embeddings(self, batch: dict) -> torch.Tensor:
        return self._hidden(batch["items"])[:, -1]

    def forward(self, batch: dict) -> Output:
        h = self._hidden(batch["items"])
        targets = batch["targets"]
        real = targets != 0
        loss = full_softmax_ce(h[real], self.item_embedding.weight, targets[real])
        return Output(loss, {"ce": loss.detach()})
