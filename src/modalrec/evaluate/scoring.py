"""Chunked exact scoring of queries against every item: target ranks (evaluation) and top-k (exact index).

Both walk the item matrix ``items`` [N+1, d] (row 0 = padding, never a candidate) ``chunk`` rows at a
time, so one ``[B, chunk]`` score block is alive whatever N, and both take per-query exclusions as
(query row, item) pairs sorted by item: O(#pairs) per walk, never a dense ``[B, N+1]`` mask.

``score(queries [B, q], items [w, d]) -> [B, w]`` is the model's scorer: :func:`dot` by default, or
a model-specific one (``model.score`` when ``model.score_is_dot`` is False, e.g. MISSRec's dynamic
fusion, whose item rows are not plain vectors); both go through the same walk.

* :func:`target_ranks`: 0-based rank of each row's target among the other candidates, ties
  pessimistic (``#{j != target, j not excluded, j != 0 : score_j >= score_target}``).
* :func:`top_k`: the ``k`` best candidates per row, by descending score, ties by lower item index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_NEG_INF = float("-inf")
_FLOAT_EXACT = 2**24  # float32 holds every integer below this exactly


def dot(queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """[B, w] = queries [B, d] @ items [w, d].T"""
    return queries @ items.T


# --------------------------------------------------------------------------------------------
# Exclusions


class Exclusions(NamedTuple):
    """(query row, item index) pairs, both LongTensor [P], sorted by item then row, without duplicates."""

    rows: torch.Tensor
    cols: torch.Tensor

    @staticmethod
    def none(device="cpu") -> Exclusions:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return Exclusions(empty, empty)

    def bounds(self, edges: torch.Tensor) -> list[int]:
        """Positions where the items ``edges`` (ascending) start in ``cols``."""
        return torch.searchsorted(self.cols, edges.to(self.cols.device)).tolist()


def _np_long(x) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).cpu(), dtype=np.int64).reshape(-1)


def exclusions(rows, cols, n_rows: int, n_items: int, targets=None, device="cpu") -> Exclusions:
    """Clean :class:`Exclusions` from raw pairs ``rows``/``cols`` [P] (duplicates and padding allowed).

    Padding (item 0) is dropped, and so is each row's own target when ``targets`` [n_rows] is given
    (a target in its history still competes). Bookkeeping runs in NumPy: for ~1e5 pairs it is several
    times faster than torch's multi-threaded CPU sort.
    """
    rows, cols = _np_long(rows), _np_long(cols)
    if rows.shape != cols.shape:
        raise ValueError("exclusion pairs: rows and cols must have the same length")
    if cols.size and (cols.min() < 0 or cols.max() >= n_items):
        raise ValueError(f"excluded item indices must be in 0..{n_items - 1}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"exclusion rows must be in 0..{n_rows - 1}")
    keep = cols != 0
    if targets is not None:
        keep &= cols != _np_long(targets)[rows]
    width = max(n_rows, 1)
    key = np.sort(cols[keep] * width + rows[keep])  # by item, then row
    if key.size > 1:
        key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    return Exclusions(torch.from_numpy(key % width).to(device), torch.from_numpy(key // width).to(device))


def _positions(ex: Exclusions, candidates: torch.Tensor) -> Exclusions:
    """``ex`` with items replaced by their positions in ``candidates`` (sorted); items outside dropped."""
    n = candidates.numel()
    if not ex.cols.numel() or not n:
        return Exclusions.none(ex.cols.device)
    pos = torch.searchsorted(candidates, ex.cols).clamp_(max=n - 1)
    hit = candidates[pos] == ex.cols
    return Exclusions(ex.rows[hit], pos[hit])


# --------------------------------------------------------------------------------------------
# The walk over the catalogue


def check_no_nan(scores: torch.Tensor, labels: np.ndarray | None = None) -> None:
    """Raise a ValueError naming the rows (or the users ``labels[row]``) where ``scores`` [B, w] holds NaN."""
    if scores.numel() == 0 or bool(torch.isfinite(scores.sum())):
        return
    bad = torch.isnan(scores).any(dim=-1) if scores.dim() > 1 else torch.isnan(scores)
    if bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)[:5].tolist()
        if labels is None:
            unit, where = "rows", f"rows {rows}"
        else:
            unit, where = "examples", f"users {[labels[r].item() for r in rows]}"
        raise ValueError(
            f"The model returned NaN scores for {int(bad.sum())} of {len(bad)} {unit} (first: {where}). "
            f"NaN cannot be ranked: check the checkpoint and the embeddings (diverged training, NaN in "
            f"item features)."
        )


def walk(
    score: Scorer,
    queries: torch.Tensor,
    items: torch.Tensor,
    chunk: int,
    ex: Exclusions,
    candidates: torch.Tensor | None = None,
    labels: np.ndarray | None = None,
) -> Iterator[tuple[int, torch.Tensor, Exclusions]]:
    """Yield ``(c0, block [B, w], the chunk's exclusions)`` for consecutive chunks of ``chunk`` items.

    Columns ``c0..c0+w`` of the walk are item indices, or positions in ``candidates`` (sorted item
    indices) when given; ``ex`` uses the same columns. Every block is checked for NaN.
    """
    B = queries.shape[0]
    n = items.shape[0] if candidates is None else candidates.numel()
    bounds = ex.bounds(torch.arange(0, n + chunk, chunk)) if ex.cols.numel() else None
    for j, c0 in enumerate(range(0, n, chunk)):
        c1 = min(c0 + chunk, n)
        block = score(queries, items[c0:c1] if candidates is None else items[candidates[c0:c1]])
        if block.shape != (B, c1 - c0):
            raise ValueError(
                f"the scorer returned shape {tuple(block.shape)} for {B} queries and {c1 - c0} "
                f"items; it must return [queries, items]"
            )
        check_no_nan(block, labels)
        if bounds is None or bounds[j] == bounds[j + 1]:
            yield c0, block, Exclusions.none(ex.cols.device)
        else:
            yield c0, block, Exclusions(ex.rows[bounds[j] : bounds[j + 1]], ex.cols[bounds[j] : bounds[j + 1]])


# --------------------------------------------------------------------------------------------
# Rank counting


def _count_ge(block: torch.Tensor, t: torch.Tensor, buf: torch.Tensor | None = None) -> torch.Tensor:
    """int64 [B]: per row, how many entries of ``block`` [B, w] are >= ``t`` [B].

    The comparison is written as 0/1 into a float32 buffer (reused across chunks when given) and
    summed as floats: on CPU ~5x faster than summing a bool tensor, and exact while ``w < 2**24``.
    """
    B, w = block.shape
    if w >= _FLOAT_EXACT:
        return torch.ge(block, t[:, None]).sum(1)
    if buf is not None and buf.numel() >= B * w and buf.device == block.device:
        out = buf.view(-1)[: B * w].view(B, w)
    else:
        out = torch.empty(B, w, dtype=torch.float32, device=block.device)
    torch.ge(block, t[:, None], out=out)
    return out.sum(1).long()


def _excluded_ge(block: torch.Tensor, c0: int, t: torch.Tensor, ex: Exclusions) -> torch.Tensor:
    """int64 [B]: per row, excluded items of the block [B, w] (columns from ``c0``) that score >= ``t``.

    On CPU this runs in NumPy (zero-copy views): a few small multi-threaded torch ops per chunk
    can cost more than the counting itself when the cores are shared with other processes.
    """
    B, w = block.shape
    if block.device.type == "cpu" and torch.bfloat16 not in (block.dtype, t.dtype):
        r, c = ex.rows.numpy(), ex.cols.numpy()
        ge = block.numpy()[r, c - c0] >= t.numpy()[r]
        return torch.from_numpy(np.bincount(r[ge], minlength=B).astype(np.int64))
    ge = torch.take(block, ex.rows * w + (ex.cols - c0)) >= t[ex.rows]
    return torch.bincount(ex.rows[ge], minlength=B)


def count_before(
    block: torch.Tensor,
    c0: int,
    t: torch.Tensor,
    targets: torch.Tensor,
    ex: Exclusions,
    buf: torch.Tensor | None = None,
) -> torch.Tensor:
    """int64 [B]: candidates of items ``c0..c0+w`` placed before the target (pessimistic ties).

    ``block`` [B, w] scores; ``t`` [B] the targets' scores; ``targets`` [B] item indices; ``ex``
    the exclusions inside the block (from :func:`exclusions`, so never a target or padding).
    """
    B, w = block.shape
    rank = _count_ge(block, t, buf)
    if c0 == 0:  # padding never competes
        rank -= (block[:, 0] >= t).long()
    inside = (targets >= c0) & (targets < c0 + w)
    if bool(inside.any()):  # the target does not compete with itself
        r = torch.nonzero(inside).reshape(-1)
        rank[r] -= (block[r, targets[r] - c0] >= t[r]).long()
    if ex.rows.numel():
        rank -= _excluded_ge(block, c0, t, ex)
    return rank


def target_scores(
    score: Scorer, queries: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int
) -> torch.Tensor:
    """[B]: each row's score of its target, from ``score`` on the item chunk that holds the target.

    Each query is scored against one chunk only (its target's), so the cost is one chunk's worth,
    and the score is the one the walk will see (same chunk, same arithmetic).
    """
    t: torch.Tensor | None = None
    chunk_of = targets // chunk
    for c in torch.unique(chunk_of).tolist():
        r = torch.nonzero(chunk_of == c).reshape(-1)
        c0 = c * chunk
        block = score(queries[r], items[c0 : c0 + chunk])
        if t is None:
            t = torch.empty(len(targets), dtype=block.dtype, device=block.device)
        t[r] = block[torch.arange(len(r), device=block.device), targets[r] - c0]
    return queries.new_empty(0) if t is None else t  # no targets: no scores


def target_ranks(
    score: Scorer,
    queries: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    ex: Exclusions,
    chunk: int = 0,
    buf: torch.Tensor | None = None,
    labels: np.ndarray | None = None,
) -> torch.Tensor:
    """LongTensor [B]: 0-based rank of ``targets`` [B] (items 1..N) among all items of ``items`` [N+1, d].

    ``chunk`` items per block (0: the whole catalogue in one block). With several chunks the
    targets' scores are taken first (:func:`target_scores`), so every chunk is counted in one pass.
    ``buf``: a reusable float32 work buffer of at least ``B * chunk`` elements. ``labels`` [B]
    name the users in a NaN error.
    """
    n = items.shape[0]
    chunk = chunk if 0 < chunk < n else n
    t = None
    if chunk < n:
        t = target_scores(score, queries, items, targets, chunk)
        check_no_nan(t, labels)
    ranks = torch.zeros(len(targets), dtype=torch.long, device=targets.device)
    for c0, block, part in walk(score, queries, items, chunk, ex, labels=labels):
        if t is None:
            t = block.gather(1, targets[:, None]).squeeze(1)
        ranks += count_before(block, c0, t, targets, part, buf)
    return ranks


# --------------------------------------------------------------------------------------------
# Top-k


def sort_desc_then_index(vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder each row of ``vals``/``idx`` [B, m] by descending value, equal values by ascending index."""
    o = torch.argsort(idx, dim=1)
    vals, idx = vals.gather(1, o), idx.gather(1, o)
    o = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return vals.gather(1, o), idx.gather(1, o)


def _block_topk(block: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``kk`` of each row of ``block`` [B, w]: (values, column) [B, kk], ties by lower column.

    ``torch.topk`` picks arbitrarily among values tied at the kk-th place; one extra element tells
    when that happens, and only those rows are redone with a stable sort of the whole row.
    """
    w = block.shape[1]
    vals, idx = torch.topk(block, min(kk + 1, w), dim=1)
    if w > kk:
        t = vals[:, kk - 1]
        tied = (vals[:, kk] == t) & (t > _NEG_INF)
        vals, idx = vals[:, :kk], idx[:, :kk]
        if bool(tied.any()):
            rows = torch.nonzero(tied).reshape(-1)
            sv, si = torch.sort(block[rows], dim=1, descending=True, stable=True)
            vals, idx = vals.clone(), idx.clone()
            vals[rows], idx[rows] = sv[:, :kk], si[:, :kk]
    return sort_desc_then_index(vals, idx)


def _merge(
    best: tuple[torch.Tensor, torch.Tensor] | None, v: torch.Tensor, i: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of a running top-k and a later chunk's (every index in ``i`` is higher)."""
    if best is None:
        return v, i
    v, i = torch.cat([best[0], v], 1), torch.cat([best[1], i], 1)
    o = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]  # stable: ties stay by index
    return v.gather(1, o), i.gather(1, o)


def top_k(
    score: Scorer,
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    ex: Exclusions,
    chunk: int,
    keep: torch.Tensor | None = None,
    candidates: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` of ``score(queries [B, q], items [N+1, d])``: (float32 scores, int64 items) [B, <=k].

    Sorted by descending score, ties by lower item index. Padding (item 0), the pairs of ``ex`` and
    items outside ``keep`` (bool [N+1]) score -inf; ``candidates`` (sorted item indices without 0)
    restricts the walk to those items. Fewer than ``k`` columns come back when fewer items are walked.
    """
    if candidates is not None:
        ex = _positions(ex, candidates)
    best = None
    for c0, block, part in walk(score, queries, items, chunk, ex, candidates):
        block = block.float().contiguous()
        w = block.shape[1]
        if candidates is None and c0 == 0:
            block[:, 0] = _NEG_INF
        if keep is not None:
            block.masked_fill_(~keep[c0 : c0 + w], _NEG_INF)
        block[part.rows, part.cols - c0] = _NEG_INF
        v, i = _block_topk(block, min(k, w))
        best = _merge(best, v, i + c0, k)
    if best is None:
        empty = torch.zeros(queries.shape[0], 0, device=items.device)
        return empty, empty.long()
    vals, idx = best
    return vals, (idx if candidates is None else candidates[idx])
