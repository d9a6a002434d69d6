"""Golden values for HR/NDCG/MRR@K, computed by hand from 0-based ranks."""

from __future__ import annotations

import math

import pytest
import torch

from modalrec.evaluate.metrics import (
    compute_metrics,
    finalize,
    metric_names,
    metric_sums,
    rank_histogram,
    sums_from_histogram,
)


def test_single_ranks():
    m0 = compute_metrics(torch.tensor([0]), ks=[10])
    assert m0 == {"hr@10": 1.0, "ndcg@10": 1.0, "mrr@10": 1.0}
    m1 = compute_metrics(torch.tensor([1]), ks=[10])
    assert m1["hr@10"] == 1.0
    assert m1["ndcg@10"] == pytest.approx(1 / math.log2(3), abs=0, rel=1e-15)
    assert m1["ndcg@10"] == pytest.approx(0.6309297535714575, rel=1e-15)
    assert m1["mrr@10"] == 0.5


def test_ranks_at_the_cut_offs():
    ranks = torch.tensor([0, 9, 10, 49, 50])
    m = compute_metrics(ranks, ks=[10, 50])
    # K=10: ranks 0 and 9 are hits
    assert m["hr@10"] == pytest.approx(2 / 5, rel=1e-15)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(11)) / 5, rel=1e-15)
    assert m["mrr@10"] == pytest.approx((1.0 + 1 / 10) / 5, rel=1e-15)
    # K=50: ranks 0, 9, 10, 49 are hits; 50 is not
    assert m["hr@50"] == pytest.approx(4 / 5, rel=1e-15)
    ndcg50 = (1.0 + 1 / math.log2(11) + 1 / math.log2(12) + 1 / math.log2(51)) / 5
    assert m["ndcg@50"] == pytest.approx(ndcg50, rel=1e-15)
    assert m["mrr@50"] == pytest.approx((1.0 + 1 / 10 + 1 / 11 + 1 / 50) / 5, rel=1e-15)
    assert list(m) == ["hr@10", "hr@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50"]


def test_hr_equals_recall_and_miss_is_zero():
    m = compute_metrics(torch.tensor([10, 11, 1000]), ks=[10])
    assert m == {"hr@10": 0.0, "ndcg@10": 0.0, "mrr@10": 0.0}


def test_sums_add_exactly_and_finalize():
    g = torch.Generator().manual_seed(0)
    ranks = torch.randint(0, 80, (1001,), generator=g)
    ks = [10, 20, 50]
    whole = metric_sums(ranks, ks)
    assert whole["count"] == 1001.0
    a, b = metric_sums(ranks[:377], ks), metric_sums(ranks[377:], ks)
    # the sums come from an integer histogram, so shards combine bit-exactly via histograms
    h = rank_histogram(ranks[:377], 50) + rank_histogram(ranks[377:], 50)
    assert sums_from_histogram(h, ks) == whole
    for key in whole:
        assert a[key] + b[key] == pytest.approx(whole[key], rel=1e-12)
    assert finalize(whole, 1001) == finalize(whole)
    means = finalize(whole)
    assert set(means) == set(metric_names(ks))
    for k in ks:
        hit = (ranks < k).double()
        assert means[f"hr@{k}"] == pytest.approx(hit.mean().item(), rel=1e-12)
        ndcg = torch.where(ranks < k, 1 / torch.log2(ranks.double() + 2), 0.0)
        assert means[f"ndcg@{k}"] == pytest.approx(ndcg.mean().item(), rel=1e-12)
        mrr = torch.where(ranks < k, 1 / (ranks.double() + 1), 0.0)
        assert means[f"mrr@{k}"] == pytest.approx(mrr.mean().item(), rel=1e-12)


def test_histogram_bins():
    h = rank_histogram(torch.tensor([0, 0, 3, 5, 99]), max_k=5)
    assert h.tolist() == [2, 0, 0, 1, 0, 2]
    assert h.dtype == torch.int64


def test_errors():
    with pytest.raises(ValueError, match="no examples"):
        finalize({"hr@10": 0.0, "count": 0.0})
    with pytest.raises(ValueError, match="cut-offs"):
        metric_sums(torch.tensor([1]), ks=[0])
    with pytest.raises(ValueError, match=">= 0"):
        rank_histogram(torch.tensor([-1]), 10)
