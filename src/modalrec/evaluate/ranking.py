"""Exact full-ranking evaluation: every catalogue item competes with the target, in chunks.

Protocol (recorded in every :class:`EvalResult`):

* the target is ranked against all real items 1..N (padding index 0 never counts);
* items of the user's history are excluded when ``exclude_history`` is on. The *whole* history
  (``items[start:end]`` of the SeqSet) is excluded, not only the ``max_len`` window the model
  sees, so the candidate set does not depend on a model's window length. The target itself is
  never excluded, even when it occurs in the history (repeat consumption);
* ties are pessimistic: ``rank = #{j != target, j not excluded : score_j >= score_target}``.

Cost: one ``[B, w]`` score block at a time, where ``w`` is the catalogue size (``item_chunk=0``)
or ``item_chunk``. Counting is ``(scores >= t).sum``, a cheaper pass than a top-k; history
exclusion works on (row, item) pairs, O(history length), never on a dense ``[B, N]`` mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from modalrec.data.dataset import SeqSet, ranges_to_index
from modalrec.evaluate.metrics import finalize, rank_histogram, sums_from_histogram


# --------------------------------------------------------------------------------------------
# Histories


def pad_histories(seqset_items, start, end, max_len: int) -> torch.Tensor:
    """LongTensor [B, max_len]: the last ``max_len`` items of ``items[start[b]:end[b]]``, left-padded with 0.

    ``seqset_items`` is the flat item array of a :class:`SeqSet`; ``start``/``end`` are [B].
    """
    if max_len <= 0:
        raise ValueError(f"max_len={max_len}: must be positive")
    items = np.asarray(seqset_items)
    start = np.asarray(start, dtype=np.int64).reshape(-1)
    end = np.asarray(end, dtype=np.int64).reshape(-1)
    if start.shape != end.shape:
        raise ValueError("start and end must have the same length")
    if len(start) == 0 or items.size == 0:
        return torch.zeros(len(start), max_len, dtype=torch.long)
    idx = end[:, None] - max_len + np.arange(max_len, dtype=np.int64)[None, :]  # [B, L]
    valid = idx >= start[:, None]
    out = np.where(valid, items[np.where(valid, idx, 0)], 0).astype(np.int64, copy=False)
    return torch.from_numpy(out)


def history_mask(items: torch.Tensor, num_items: int) -> torch.Tensor:
    """BoolTensor [B, num_items]: True where item j occurs in the padded history ``items`` [B, L].

    ``num_items`` counts the padding column (``N + 1``); column 0 is always False.
    """
    items = torch.as_tensor(items)
    if items.dim() != 2:
        raise ValueError(f"items must be [B, L] padded histories, got shape {tuple(items.shape)}")
    items = items.long()
    if items.numel() and (int(items.min()) < 0 or int(items.max()) >= num_items):
        raise ValueError(f"history item indices must be in 0..{num_items - 1}")
    mask = torch.zeros(items.shape[0], num_items, dtype=torch.bool, device=items.device)
    mask.scatter_(1, items, True)
    mask[:, 0] = False
    return mask


def _clean_pairs(rows, cols, targets, num_items: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique (row, item) exclusion pairs without padding or the row's own target, sorted by item.

    Index bookkeeping runs in NumPy: for the ~1e5 pairs of a user chunk it is several times
    faster than torch's multi-threaded CPU sort, and it is negligible next to the scoring.
    """
    rows = np.asarray(torch.as_tensor(rows).cpu(), dtype=np.int64).reshape(-1)
    cols = np.asarray(torch.as_tensor(cols).cpu(), dtype=np.int64).reshape(-1)
    targets = np.asarray(torch.as_tensor(targets).cpu(), dtype=np.int64).reshape(-1)
    B = len(targets)
    if rows.shape != cols.shape:
        raise ValueError("exclusion pairs: rows and cols must have the same length")
    if cols.size and (cols.min() < 0 or cols.max() >= num_items):
        raise ValueError(f"excluded item indices must be in 0..{num_items - 1}")
    if rows.size and (rows.min() < 0 or rows.max() >= B):
        raise ValueError(f"exclusion rows must be in 0..{B - 1}")
    keep = (cols != 0) & (cols != targets[rows])
    key = np.sort(cols[keep] * B + rows[keep])  # by item, then row
    if key.size > 1:
        key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    return torch.from_numpy(key % B).to(device), torch.from_numpy(key // B).to(device)


def _history_pairs(
    seq_items: np.ndarray, start: np.ndarray, end: np.ndarray, targets: torch.Tensor, num_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exclusion pairs from the full CSR histories of B examples (vectorised)."""
    lens = (end - start).astype(np.int64)
    rows = np.repeat(np.arange(len(start), dtype=np.int64), lens)
    cols = np.asarray(seq_items)[ranges_to_index(start, end)]
    return _clean_pairs(rows, cols, targets, num_items, targets.device)


# --------------------------------------------------------------------------------------------
# Ranking


def _check_no_nan(scores: torch.Tensor, labels: np.ndarray | None = None) -> None:
    """Raise a ValueError naming the rows if ``scores`` holds NaN (cheap sum first)."""
    if scores.numel() == 0 or bool(torch.isfinite(scores.sum())):
        return
    bad = torch.isnan(scores).any(dim=-1) if scores.dim() > 1 else torch.isnan(scores)
    if bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)[:5].tolist()
        where = (
            f"users {[labels[r].item() for r in rows]}" if labels is not None else f"rows {rows}"
        )
        raise ValueError(
            f"The model returned NaN scores for {int(bad.sum())} of {len(bad)} examples "
            f"(first: {where}). NaN cannot be ranked: check the checkpoint and the embeddings "
            f"(diverged training, NaN in item features)."
        )


_FLOAT_EXACT = 2**24  # float32 holds every integer below this exactly


def _count_ge(block: torch.Tensor, t: torch.Tensor, buf: torch.Tensor | None = None) -> torch.Tensor:
    """int64 [B]: per row, how many entries of ``block`` [B, w] are >= ``t`` [B].

    The comparison is written as 0/1 into a float32 buffer (reused across chunks when given) and
    summed as floats: on CPU this is ~5x faster than summing a bool tensor, and exact while
    ``w < 2**24``.
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


def _chunk_rank(
    block: torch.Tensor,
    c0: int,
    t: torch.Tensor,
    targets: torch.Tensor,
    ex_rows: torch.Tensor,
    ex_cols: torch.Tensor,
    buf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Items of columns [c0, c0 + w) placed before the target, per row (pessimistic ties).

    ``ex_rows``/``ex_cols`` are clean exclusion pairs (see :func:`_clean_pairs`) inside the chunk.
    """
    B, w = block.shape
    rank = _count_ge(block, t, buf)
    if c0 == 0:  # padding never competes
        rank -= (block[:, 0] >= t).long()
    inside = (targets >= c0) & (targets < c0 + w)
    if bool(inside.any()):  # the target does not compete with itself
        r = torch.nonzero(inside).reshape(-1)
        rank[r] -= (block[r, targets[r] - c0] >= t[r]).long()
    if ex_rows.numel():
        rank -= _excluded_ge(block, c0, t, ex_rows, ex_cols)
    return rank


def _excluded_ge(block, c0, t, ex_rows, ex_cols) -> torch.Tensor:
    """int64 [B]: per row, excluded items of the chunk that score >= the target.

    On CPU this runs in NumPy (zero-copy views): a few small multi-threaded torch ops per chunk
    can cost more than the counting itself when the cores are shared with other processes.
    """
    B, w = block.shape
    if block.device.type == "cpu" and block.dtype != torch.bfloat16 and t.dtype != torch.bfloat16:
        r, c = ex_rows.numpy(), ex_cols.numpy()
        vals = block.numpy()[r, c - c0]
        ge = vals >= t.numpy()[r]
        return torch.from_numpy(np.bincount(r[ge], minlength=B).astype(np.int64))
    ge = torch.take(block, ex_rows * w + (ex_cols - c0)) >= t[ex_rows]
    return torch.bincount(ex_rows[ge], minlength=B)


def rank_targets(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """LongTensor [B]: 0-based rank of each target among items 1..N (pessimistic ties).

    ``scores`` [B, N+1] (column 0 = padding, never counted); ``targets`` [B] in 1..N.
    ``exclude``: a BoolTensor [B, N+1] (True = not a candidate) or index pairs ``(rows, cols)``;
    duplicates are fine, and the target itself is never excluded.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, N+1], got shape {tuple(scores.shape)}")
    B, n_cols = scores.shape
    targets = torch.as_tensor(targets, device=scores.device).reshape(-1).long()
    if len(targets) != B:
        raise ValueError(f"{len(targets)} targets for {B} score rows")
    if B and (int(targets.min()) < 1 or int(targets.max()) >= n_cols):
        raise ValueError(f"targets must be real items in 1..{n_cols - 1} (0 is padding)")
    _check_no_nan(scores)
    if exclude is None:
        rows = cols = torch.zeros(0, dtype=torch.long, device=scores.device)
    elif isinstance(exclude, torch.Tensor):
        if exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError("exclude must be a BoolTensor shaped like scores, or (rows, cols) pairs")
        rows, cols = torch.nonzero(exclude, as_tuple=True)
    else:
        rows, cols = exclude
    rows, cols = _clean_pairs(rows, cols, targets, n_cols, scores.device)
    t = scores.gather(1, targets[:, None]).squeeze(1)
    return _chunk_rank(scores, 0, t, targets, rows, cols)


# --------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class EvalResult:
    """Mean metrics over the examples, the protocol that produced them, optional per-user ranks."""

    metrics: dict[str, float]
    count: int
    protocol: dict
    cold_metrics: dict[str, float] | None = None  # examples whose target is a cold item
    cold_count: int = 0
    per_user: dict[str, np.ndarray] | None = None  # "users", "targets", "ranks" (example order)
    sums: dict[str, float] = field(default_factory=dict, repr=False)  # float64 sums behind metrics

    def to_dict(self, include_per_user: bool = True) -> dict:
        out = {
            "metrics": dict(self.metrics),
            "count": int(self.count),
            "cold_metrics": None if self.cold_metrics is None else dict(self.cold_metrics),
            "cold_count": int(self.cold_count),
            "protocol": dict(self.protocol),
        }
        if include_per_user and self.per_user is not None:
            out["per_user"] = {k: np.asarray(v).tolist() for k, v in self.per_user.items()}
        return out


def _dist_info(distributed: bool) -> tuple[int, int]:
    if not distributed:
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _target_scores(model, users: torch.Tensor, V: torch.Tensor, targets: torch.Tensor, chunk: int):
    """Score of each row's target, taken from ``model.score`` on the item chunk that holds it.

    Each user is scored against one chunk only (its target's), so the cost is one chunk's worth.
    """
    t = None
    chunk_of = targets // chunk
    for c in torch.unique(chunk_of).tolist():
        r = torch.nonzero(chunk_of == c).reshape(-1)
        c0 = c * chunk
        block = model.score(users[r], V[c0 : c0 + chunk])
        if t is None:
            t = torch.empty(len(targets), dtype=block.dtype, device=block.device)
        t[r] = block[torch.arange(len(r), device=block.device), targets[r] - c0]
    return t


def evaluate(
    model,
    seqset: SeqSet,
    *,
    max_len: int,
    ks: Iterable[int] = (10, 20, 50),
    exclude_history: bool = True,
    batch_size: int = 1024,
    item_chunk: int = 0,
    device: str | torch.device = "cpu",
    per_user: bool = False,
    cold_items: torch.Tensor | None = None,
    progress: bool = True,
    distributed: bool = False,
    split: str | None = None,
) -> EvalResult:
    """Exact full-ranking metrics of ``model`` on the examples (history -> target) of ``seqset``.

    The model must already be on ``device``; it is put in eval mode (and restored afterwards).
    Item embeddings are computed once; users go in chunks of ``batch_size``; with
    ``item_chunk > 0`` scores are computed ``item_chunk`` items at a time, so peak memory is
    two ``batch_size x item_chunk`` blocks (the scores and a float32 work buffer) whatever the
    catalogue size. The chunked path first scores each user against the chunk holding its
    target (one extra chunk's worth of work) so that every chunk can be counted in one pass. ``cold_items`` (bool [N+1])
    adds metrics over the examples whose target is cold. With ``distributed`` (and
    torch.distributed initialised) each process ranks a contiguous shard and the integer rank
    histograms are all-reduced: the metrics equal the single-process ones exactly.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] <= 0:
        raise ValueError(f"ks={ks}: give positive cut-offs, e.g. (10, 20, 50)")
    if seqset.targets is None:
        raise ValueError("this SeqSet has no targets: evaluate a validation or test set")
    if batch_size <= 0 or item_chunk < 0:
        raise ValueError("batch_size must be > 0 and item_chunk >= 0")
    n_examples = len(seqset)
    if n_examples == 0:
        raise ValueError("nothing to evaluate: the SeqSet has no examples")
    device = torch.device(device)
    max_k = max(ks)
    rank_id, world = _dist_info(distributed)
    lo, hi = n_examples * rank_id // world, n_examples * (rank_id + 1) // world

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            V = model.item_embeddings(None)
            n_cols = V.shape[0]
            n_items = getattr(model, "n_items", n_cols - 1)
            if n_cols != n_items + 1:
                raise ValueError(
                    f"item_embeddings(None) returned {n_cols} rows; expected n_items + 1 = "
                    f"{n_items + 1} (row 0 = padding)"
                )
            all_t = np.asarray(seqset.targets)
            if int(all_t.min()) < 1 or int(all_t.max()) > n_items:
                bad = int(np.nonzero((all_t < 1) | (all_t > n_items))[0][0])
                raise ValueError(
                    f"example {bad} has target {int(all_t[bad])}, outside the model's items "
                    f"1..{n_items}: was the model built for another data set?"
                )
            cold = None
            if cold_items is not None:
                cold = torch.as_tensor(cold_items, dtype=torch.bool, device=device).reshape(-1)
                if len(cold) != n_cols:
                    raise ValueError(f"cold_items has {len(cold)} entries, expected N + 1 = {n_cols}")
            chunk = item_chunk if 0 < item_chunk < n_cols else n_cols

            hist = torch.zeros(max_k + 1, dtype=torch.int64, device=device)
            cold_hist = torch.zeros(max_k + 1, dtype=torch.int64, device=device)
            buf = torch.empty(min(batch_size, hi - lo) * chunk, dtype=torch.float32, device=device)
            out_ranks = []
            bar = None
            if progress and rank_id == 0:
                from tqdm import tqdm

                bar = tqdm(total=hi - lo, desc=f"evaluate{' ' + split if split else ''}", unit="user")
            for b0 in range(lo, hi, batch_size):
                b1 = min(b0 + batch_size, hi)
                start, end = seqset.start[b0:b1], seqset.end[b0:b1]
                targets = torch.from_numpy(all_t[b0:b1].astype(np.int64)).to(device)
                batch = {
                    "items": pad_histories(seqset.items, start, end, max_len).to(device),
                    "users": torch.from_numpy(np.asarray(seqset.users[b0:b1], dtype=np.int64)).to(device),
                }
                users = model.user_embeddings(batch)
                labels = np.asarray(seqset.users[b0:b1])
                if exclude_history:
                    ex_rows, ex_cols = _history_pairs(seqset.items, start, end, targets, n_cols)
                else:
                    ex_rows = ex_cols = torch.zeros(0, dtype=torch.long, device=device)

                if chunk == n_cols:
                    scores = model.score(users, V)
                    _check_no_nan(scores, labels)
                    t = scores.gather(1, targets[:, None]).squeeze(1)
                    ranks = _chunk_rank(scores, 0, t, targets, ex_rows, ex_cols, buf)
                    del scores
                else:
                    t = _target_scores(model, users, V, targets, chunk)
                    _check_no_nan(t, labels)
                    bounds = torch.searchsorted(
                        ex_cols, torch.arange(0, n_cols + chunk, chunk, device=ex_cols.device)
                    ).tolist()
                    ranks = torch.zeros(len(targets), dtype=torch.long, device=device)
                    for i, c0 in enumerate(range(0, n_cols, chunk)):
                        block = model.score(users, V[c0 : c0 + chunk])
                        _check_no_nan(block, labels)
                        p0, p1 = bounds[i], bounds[i + 1]
                        ranks += _chunk_rank(block, c0, t, targets, ex_rows[p0:p1], ex_cols[p0:p1], buf)
                        del block

                hist += rank_histogram(ranks, max_k).to(device)
                if cold is not None:
                    cold_hist += rank_histogram(ranks[cold[targets]], max_k).to(device)
                if per_user:
                    out_ranks.append(ranks.cpu().numpy())
                if bar is not None:
                    bar.update(b1 - b0)
            if bar is not None:
                bar.close()
    finally:
        model.train(was_training)

    if world > 1:
        import torch.distributed as dist

        both = torch.stack([hist, cold_hist])
        dist.all_reduce(both, op=dist.ReduceOp.SUM)
        hist, cold_hist = both[0], both[1]

    sums = sums_from_histogram(hist, ks)
    count = int(sums["count"])
    cold_metrics, cold_count = None, 0
    if cold is not None:
        cold_sums = sums_from_histogram(cold_hist, ks)
        cold_count = int(cold_sums["count"])
        cold_metrics = finalize(cold_sums) if cold_count else {}

    per_user_out = None
    if per_user:
        ranks_np = np.concatenate(out_ranks) if out_ranks else np.zeros(0, dtype=np.int64)
        if world > 1:
            import torch.distributed as dist

            gathered: list = [None] * world
            dist.all_gather_object(gathered, ranks_np)
            ranks_np = np.concatenate(gathered)
        per_user_out = {
            "users": np.asarray(seqset.users).astype(np.int64),
            "targets": all_t.astype(np.int64),
            "ranks": ranks_np.astype(np.int64),
        }

    protocol = {
        "ranking": "full",
        "n_items": int(n_items),
        "exclude_history": bool(exclude_history),
        "exclude_scope": "full history" if exclude_history else "none",
        "ties": "pessimistic",
        "ks": ks,
        "max_len": int(max_len),
        "split": split,
        "examples": count,
    }
    return EvalResult(
        metrics=finalize(sums),
        count=count,
        protocol=protocol,
        cold_metrics=cold_metrics,
        cold_count=cold_count,
        per_user=per_user_out,
        sums=sums,
    )
