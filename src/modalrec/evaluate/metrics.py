"""Ranking metrics for one target per example: HR@K, NDCG@K, MRR@K.

A rank is 0-based: the number of items placed before the target (ties counted pessimistically by
the ranking code). With one relevant item per example:

* HR@K   = 1 if rank < K            (equal to Recall@K)
* NDCG@K = 1 / log2(rank + 2) if rank < K (the ideal DCG is 1)
* MRR@K  = 1 / (rank + 1)     if rank < K

Every metric depends only on ``min(rank, K)``, so the evaluator accumulates an integer
histogram of ranks (bins ``0..max_k-1`` plus one bin for ``rank >= max_k``). Histograms add
exactly, across user chunks and across processes (all-reduce SUM), and the float64 sums are
computed from the final histogram in a fixed order: the metrics are bit-identical whatever the
batch size, item chunking or number of processes.
"""

from __future__ import annotations

from typing import Iterable

import torch

METRICS = ("hr", "ndcg", "mrr")


def _ks(ks: Iterable[int]) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or any(k <= 0 for k in ks):
        raise ValueError(f"ks={ks}: give positive cut-offs, e.g. (10, 20, 50)")
    return ks


def metric_names(ks: Iterable[int]) -> list[str]:
    """``["hr@10", "hr@20", ..., "ndcg@10", ..., "mrr@50"]`` in a fixed order."""
    ks = _ks(ks)
    return [f"{m}@{k}" for m in METRICS for k in ks]


def rank_histogram(ranks: torch.Tensor, max_k: int) -> torch.Tensor:
    """int64 [max_k + 1]: counts of ranks 0..max_k-1, last bin = ranks >= max_k."""
    ranks = torch.as_tensor(ranks).reshape(-1)
    if ranks.numel() and int(ranks.min()) < 0:
        raise ValueError("ranks must be >= 0 (0 = the target is placed first)")
    clipped = ranks.to(torch.int64).clamp(max=max_k)
    return torch.bincount(clipped, minlength=max_k + 1).to(torch.int64)


def sums_from_histogram(hist: torch.Tensor, ks: Iterable[int]) -> dict[str, float]:
    """Float64 metric sums (and ``"count"``) from a rank histogram of length >= max(ks) + 1."""
    ks = _ks(ks)
    hist = torch.as_tensor(hist).detach().to("cpu", torch.float64).reshape(-1)
    max_k = max(ks)
    if hist.numel() < max_k + 1:
        raise ValueError(f"histogram has {hist.numel()} bins, needs max(ks) + 1 = {max_k + 1}")
    r = torch.arange(max_k, dtype=torch.float64)
    gains = {"hr": torch.ones_like(r), "ndcg": 1.0 / torch.log2(r + 2.0), "mrr": 1.0 / (r + 1.0)}
    sums: dict[str, float] = {}
    for m in METRICS:
        for k in ks:
            sums[f"{m}@{k}"] = float((hist[:k] * gains[m][:k]).sum())
    sums["count"] = float(hist.sum())
    return sums


def metric_sums(ranks: torch.Tensor, ks: Iterable[int]) -> dict[str, float]:
    """Sums of HR/NDCG/MRR@K over examples (float64), plus ``"count"``; add them, then finalize."""
    ks = _ks(ks)
    return sums_from_histogram(rank_histogram(ranks, max(ks)), ks)


def finalize(sums: dict[str, float], count: float | None = None) -> dict[str, float]:
    """Means from sums: ``{"hr@10": ..., "ndcg@10": ..., ...}`` (``count`` defaults to sums["count"])."""
    n = float(sums["count"] if count is None else count)
    if n <= 0:
        raise ValueError("no examples to average over (count is 0)")
    return {k: float(v) / n for k, v in sums.items() if k != "count"}


def compute_metrics(ranks: torch.Tensor, ks: Iterable[int] = (10, 20, 50)) -> dict[str, float]:
    """Mean metrics of a set of 0-based ranks."""
    return finalize(metric_sums(ranks, ks))
