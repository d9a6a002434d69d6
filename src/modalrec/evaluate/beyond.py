"""Beyond accuracy: what the top-k lists look like, and accuracy per segment of users.

- **catalogue coverage@k**: the share of the catalogue's items that appear in at least one list;
- **average popularity@k**: mean training count of the recommended items; **novelty@k**: their mean
  self-information ``-log2((count + 1) / (events + N))`` (higher = less popular items);
- **intra-list diversity@k**: mean pairwise ``1 - cosine`` inside each list, from the model's own item
  vectors (``model.similarity_vectors``), averaged over lists;
- **segments**: HR@k and NDCG@k of the exact evaluator's per-example ranks, for examples whose history is
  shorter or longer than the median, and for targets that are cold (never in training) or warm.

The lists are the exact top-k of the shared chunked scorer (:mod:`modalrec.evaluate.scoring`), history
excluded as in the evaluation; item 0 (padding) never appears.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from modalrec.data.dataset import SeqSet
from modalrec.evaluate.ranking import _history_exclusions, pad_histories
from modalrec.evaluate.scoring import Exclusions, top_k


@torch.no_grad()
def top_k_lists(
    model,
    seqset: SeqSet,
    k: int,
    *,
    max_len: int,
    exclude_history: bool = True,
    batch_size: int = 256,
    item_chunk: int = 0,
) -> torch.Tensor:
    """LongTensor [B, k]: each example's exact top-``k`` items (ties: lower index first)."""
    model.eval()
    V = model.item_embeddings(None)
    chunk = item_chunk or V.shape[0]
    out = []
    for b0 in range(0, len(seqset), batch_size):
        b1 = min(b0 + batch_size, len(seqset))
        start, end = seqset.start[b0:b1], seqset.end[b0:b1]
        users = model.user_embeddings(
            {
                "items": pad_histories(seqset.items, start, end, max_len),
                "users": torch.from_numpy(np.asarray(seqset.users[b0:b1], dtype=np.int64)),
            }
        )
        targets = torch.from_numpy(np.asarray(seqset.target_items()[b0:b1], dtype=np.int64))
        ex = (
            _history_exclusions(seqset.items, start, end, torch.zeros_like(targets), V.shape[0])
            if exclude_history
            else Exclusions.none("cpu")
        )
        out.append(top_k(model.score, users, V, k, ex, chunk)[1])
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)


def list_metrics(lists: torch.Tensor, counts: np.ndarray, vectors: torch.Tensor, k: int) -> dict[str, float]:
    """Coverage, average popularity, novelty and intra-list diversity of top-``k`` lists [B, k]."""
    n_items = len(counts) - 1
    items = lists.reshape(-1).numpy()
    counts = np.asarray(counts, dtype=np.float64)
    self_info = -np.log2((counts + 1.0) / (counts[1:].sum() + n_items))
    v = torch.nn.functional.normalize(vectors.detach().float(), dim=-1)[lists]  # [B, k, d]
    sim = v @ v.transpose(1, 2)  # [B, k, k]
    pairs = k * (k - 1)
    ild = float((1.0 - (sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(1)) / pairs).mean()) if k > 1 else 0.0
    return {
        f"coverage@{k}": len(np.unique(items)) / n_items,
        f"avg_popularity@{k}": float(counts[items].mean()),
        f"novelty@{k}": float(self_info[items].mean()),
        f"diversity@{k}": ild,
    }


def segment_metrics(ranks: np.ndarray, history_lengths: np.ndarray, cold_target: np.ndarray, k: int) -> dict[str, dict]:
    """HR@k and NDCG@k (from 0-based pessimistic ranks) for short / long histories (split at the median)
    and cold / warm targets; each with its number of examples."""
    ranks = np.asarray(ranks)
    median = float(np.median(history_lengths)) if len(history_lengths) else 0.0
    groups = {
        f"history <= {median:g}": history_lengths <= median,
        f"history > {median:g}": history_lengths > median,
        "cold targets": cold_target,
        "warm targets": ~cold_target,
    }
    out = {}
    for name, mask in groups.items():
        r = ranks[mask]
        hit = r < k
        ndcg = np.where(hit, 1.0 / np.log2(np.minimum(r, k) + 2.0), 0.0)
        out[name] = {
            "count": int(mask.sum()),
            f"hr@{k}": float(hit.mean()) if len(r) else math.nan,
            f"ndcg@{k}": float(ndcg.mean()) if len(r) else math.nan,
        }
    return out


def mean_cosine(vectors: torch.Tensor) -> float:
    """Mean cosine over every pair of distinct rows, exactly: ``(|sum of unit rows|^2 - N) / (N (N - 1))``.

    The baseline for intra-list diversity: a model whose item vectors share one dominant direction
    (mean cosine near 1) has lists that look alike by cosine whatever it recommends, though a dot-product
    score ignores the shared part. Rows of zeros (padding) are left out."""
    v = vectors.detach().double()
    v = torch.nn.functional.normalize(v[v.norm(dim=-1) > 0], dim=-1)
    n = v.shape[0]
    if n < 2:
        return math.nan
    return float((v.sum(0).square().sum() - n) / (n * (n - 1)))
