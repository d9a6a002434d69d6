"""The shared chunked exact scorer: ranks and top-k against brute force, with and without item chunks,
with exclusions and many ties, through a dot product and a model-specific scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalrec.evaluate.scoring import Exclusions, dot, exclusions, target_ranks, top_k

CHUNKS = [0, 1, 7, 40, 41, 1000]  # 0: one block; 41 = N + 1


def _fused(users, items):
    """Not a dot product (like MISSRec's fusion): items hold two 3-d parts, the better one counts."""
    return torch.maximum(users @ items[:, :3].T, users @ items[:, 3:].T)


def _case(seed=0, n_items=40, n_users=25, width=3):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(-2, 3, (n_items + 1, width), generator=g).float()  # integers: exact, many ties
    users = torch.randint(-2, 3, (n_users, 3), generator=g).float()
    users[0] = 0  # every item ties for this user
    targets = torch.randint(1, n_items + 1, (n_users,), generator=g)
    hist = [
        torch.randint(0, n_items + 1, (int(n),), generator=g).tolist()
        for n in torch.randint(0, 12, (n_users,), generator=g)
    ]
    hist[1] = hist[1] + [int(targets[1])]  # a target in its own history still competes
    return items, users, targets, hist


def _pairs(hist):
    rows = [b for b, h in enumerate(hist) for _ in h]
    return torch.tensor(rows, dtype=torch.long), torch.tensor([j for h in hist for j in h], dtype=torch.long)


def _brute_scores(score, users, items, hist):
    """Dense [B, N+1] float64 scores with padding and excluded items at -inf."""
    s = score(users, items).double()
    s[:, 0] = -np.inf
    for b, h in enumerate(hist):
        s[b, h] = -np.inf
    return s


def _brute_ranks(score, users, items, targets, hist):
    s = score(users, items).double()
    out = []
    for b, t in enumerate(targets.tolist()):
        others = set(range(1, items.shape[0])) - {t} - (set(hist[b]) - {t})
        out.append(sum(1 for j in others if s[b, j] >= s[b, t]))
    return out


def _brute_topk(score, users, items, k, hist):
    s = _brute_scores(score, users, items, hist).numpy()
    cols = np.arange(s.shape[1])
    order = np.stack([np.lexsort((cols, -row))[:k] for row in s])
    return np.where(np.isinf(np.take_along_axis(s, order, 1)), -1, order)


@pytest.mark.parametrize("score,width", [(dot, 3), (_fused, 6)])
@pytest.mark.parametrize("exclude", [False, True])
def test_target_ranks_equal_brute_force_with_and_without_chunks(score, width, exclude):
    items, users, targets, hist = _case(width=width)
    hist = hist if exclude else [[] for _ in hist]
    ex = exclusions(*_pairs(hist), len(users), items.shape[0], targets)
    expected = _brute_ranks(score, users, items, targets, hist)
    assert expected[0] == items.shape[0] - 2 - len(set(hist[0]) - {0, int(targets[0])})  # all tie: last
    for chunk in CHUNKS:
        assert target_ranks(score, users, items, targets, ex, chunk).tolist() == expected, chunk


@pytest.mark.parametrize("score,width", [(dot, 3), (_fused, 6)])
@pytest.mark.parametrize("exclude", [False, True])
def test_top_k_equals_brute_force_with_and_without_chunks(score, width, exclude):
    items, users, _, hist = _case(width=width)
    hist = hist if exclude else [[] for _ in hist]
    ex = exclusions(*_pairs(hist), len(users), items.shape[0])
    for k in (1, 5, 40):
        expected = _brute_topk(score, users, items, k, hist)
        for chunk in [c for c in CHUNKS if c]:
            vals, idx = top_k(score, users, items, k, ex, chunk)
            idx = torch.where(vals == -np.inf, -1, idx)
            assert np.array_equal(idx.numpy(), expected), (k, chunk)


def test_top_k_with_a_mask_and_with_candidates_equal_brute_force():
    items, users, _, hist = _case(seed=1)
    ex = exclusions(*_pairs(hist), len(users), items.shape[0])
    keep = torch.rand(items.shape[0], generator=torch.Generator().manual_seed(2)) < 0.5
    keep[0] = False
    masked = [h + torch.nonzero(~keep).reshape(-1).tolist() for h in hist]
    expected = _brute_topk(dot, users, items, 6, masked)
    for chunk in (1, 7, 41):
        vals, idx = top_k(dot, users, items, 6, ex, chunk, keep=keep)
        assert np.array_equal(torch.where(vals == -np.inf, -1, idx).numpy(), expected)
        vals, idx = top_k(dot, users, items, 6, ex, chunk, candidates=torch.nonzero(keep).reshape(-1))
        got = torch.where(vals == -np.inf, -1, idx).numpy()
        assert np.array_equal(got, expected[:, : got.shape[1]])


def test_ranks_and_top_k_agree():
    """The rank of a target is the number of items the full top-k list places at or above its score."""
    items, users, targets, hist = _case(seed=3)
    ranks = target_ranks(dot, users, items, targets, exclusions(*_pairs(hist), len(users), 41, targets), 7)
    plain = exclusions(*_pairs(hist), len(users), 41, targets)  # the target is a candidate in both
    vals, idx = top_k(dot, users, items, 40, plain, 7)
    t = (users @ items.T).gather(1, targets[:, None])
    at_or_above = ((vals >= t) & (idx != targets[:, None])).sum(1)
    assert ranks.tolist() == at_or_above.tolist()


def test_exclusions_are_clean_sorted_pairs():
    ex = exclusions([0, 0, 1, 1, 1, 0], [3, 3, 0, 2, 1, 1], n_rows=2, n_items=5, targets=[1, 2])
    # duplicates go, padding goes, each row's own target goes (row 1's 2); sorted by item, then row
    assert ex.rows.tolist() == [1, 0] and ex.cols.tolist() == [1, 3]
    empty = exclusions([], [], 3, 5)
    assert empty.rows.numel() == 0 and empty.cols.dtype == torch.long
    with pytest.raises(ValueError, match="0..4"):
        exclusions([0], [5], 1, 5)
    with pytest.raises(ValueError, match="rows must be in 0..0"):
        exclusions([1], [2], 1, 5)


def test_nan_is_an_error_in_both_modes():
    items, users, targets, _ = _case()
    items[5, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN scores"):
        target_ranks(dot, users, items, targets, Exclusions.none(), 7)
    with pytest.raises(ValueError, match="NaN scores"):
        top_k(dot, users, items, 3, Exclusions.none(), 7)
