"""Fusion of per-modality item tokens into one item vector (PMMRec's item tower head).

Every fusion module takes a list of ``(tokens [U, T_m, d], mask [U, T_m])``, one pair per
modality in a fixed order (text = 0, image = 1; the ``type_ids`` say which), and returns
``[U, d]``. A modality an item lacks has an all-False mask; such an item falls back to its other
modalities, and an item with none gets a zero vector.

- ``merged_attention`` (PMMRec's default): modality-type embeddings are added to the tokens, the
  concatenated sequence goes through Transformer layers (padding masked), then a masked mean.
  (The reference code builds the type embeddings but never adds them; we do.)
- ``mean``: mean of the per-modality masked-mean vectors over the modalities an item has.
- ``concat``: per-modality vectors (zeros when missing) concatenated, then an MLP.
- ``gated``: softmax gates over modalities from the concatenated vectors, then a weighted sum.
"""

from __future__ import annotations

import torch
from torch import nn

from modalrec.nn.transformer import TransformerBlock

FUSIONS = ("merged_attention", "mean", "concat", "gated")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class Fusion(nn.Module):
    def __init__(
        self,
        kind: str,
        d: int,
        type_ids: list[int],
        n_layers: int = 1,
        n_heads: int = 2,
        dropout: float = 0.1,
        n_types: int = 2,
    ):
        super().__init__()
        if kind not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {kind!r}")
        self.kind = kind
        self.type_ids = list(type_ids)
        self.type_embedding = nn.Embedding(n_types, d)
        if kind == "merged_attention":
            self.layers = nn.ModuleList(
                TransformerBlock(d, n_heads, 4 * d, dropout, dropout, norm_first=False) for _ in range(n_layers)
            )
        elif kind == "concat":
            self.mlp = nn.Sequential(nn.Linear(n_types * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        elif kind == "gated":
            self.gate = nn.Linear(n_types * d, n_types)

    def forward(self, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        if self.kind == "merged_attention":
            xs, ms = [], []
            for (x, m), t in zip(parts, self.type_ids):
                xs.append(x + self.type_embedding.weight[t])
                ms.append(m.bool())
            x, m = torch.cat(xs, 1), torch.cat(ms, 1)
            eye = torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
            allowed = m[:, None, None, :] | eye  # a row of an item with no tokens attends to itself only
            for layer in self.layers:
                x = layer(x, allowed)
            return masked_mean(x, m)
        vecs = [masked_mean(x, m) for x, m in parts]
        has = torch.stack([m.any(1) for _, m in parts], 1).to(vecs[0].dtype)  # [U, M]
        if self.kind == "mean":
            return (torch.stack(vecs, 1) * has.unsqueeze(-1)).sum(1) / has.sum(1, keepdim=True).clamp_min(1.0)
        full = vecs[0].new_zeros(vecs[0].shape[0], self.type_embedding.num_embeddings, vecs[0].shape[1])
        for v, t, k in zip(vecs, self.type_ids, range(len(vecs))):
            full[:, t] = v * has[:, k : k + 1]
        if self.kind == "concat":
            return self.mlp(full.flatten(1))
        present = full.new_zeros(full.shape[0], full.shape[1], dtype=torch.bool)
        for t, k in zip(self.type_ids, range(len(vecs))):
            present[:, t] = has[:, k].bool()
        w = self.gate(full.flatten(1)).masked_fill(~present, float("-inf"))
        w = torch.nan_to_num(torch.softmax(w, 1), nan=0.0)  # items with no modality: all -inf
        return (w.unsqueeze(-1) * full).sum(1)
