"""Exact full-ranking evaluation: every catalogue item competes with the target, in chunks.

Protocol (recorded in every :class:`EvalResult`):

* the target is ranked against all real items 1..N (padding index 0 never counts);
* items of the user's history are excluded when ``exclude_history`` is on. The *whole* history
  (``items[start:end]`` of the SeqSet) is excluded, not only the ``max_len`` window the model
  sees, so the candidate set does not depend on a model's window length. The target itself is
  never excluded, even when it occurs in the history (repeat consumption);
* ties are pessimistic: ``rank = #{j != target, j not excluded : score_j >= score_target}``.

The scoring itself (item chunks, exclusion pairs, pessimistic counting) is
:func:`modalrec.evaluate.scoring.target_ranks`, shared with the exact serving index; this module
adds the histories, the metrics, the cold-item breakdown and the sums across processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from modalrec.data.dataset import SeqSet, ranges_to_index
from modalrec.evaluate.metrics import finalize, rank_histogram, sums_from_histogram
from modalrec.evaluate.scoring import Exclusions, check_no_nan, count_before, exclusions, target_ranks


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


def _history_exclusions(
    seq_items: np.ndarray, start: np.ndarray, end: np.ndarray, targets: torch.Tensor, n_cols: int
) -> Exclusions:
    """Exclusions from the full CSR histories ``items[start[b]:end[b]]`` of B examples (vectorised)."""
    lens = (end - start).astype(np.int64)
    rows = np.repeat(np.arange(len(start), dtype=np.int64), lens)
    cols = np.asarray(seq_items)[ranges_to_index(start, end)]
    return exclusions(rows, cols, len(start), n_cols, targets, targets.device)


# --------------------------------------------------------------------------------------------
# Ranking a score matrix


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
    check_no_nan(scores)
    if exclude is None:
        ex = Exclusions.none(scores.device)
    elif isinstance(exclude, torch.Tensor):
        if exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError("exclude must be a BoolTensor shaped like scores, or (rows, cols) pairs")
        rows, cols = torch.nonzero(exclude, as_tuple=True)
        ex = exclusions(rows, cols, B, n_cols, targets, scores.device)
    else:
        ex = exclusions(exclude[0], exclude[1], B, n_cols, targets, scores.device)
    t = scores.gather(1, targets[:, None]).squeeze(1)
    return count_before(scores, 0, t, targets, ex)


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
    beyond: dict | None = None  # beyond-accuracy metrics and segments (modalrec.evaluate.beyond), when asked

    def to_dict(self, include_per_user: bool = True) -> dict:
        out = {
            "metrics": dict(self.metrics),
            "count": int(self.count),
            "cold_metrics": None if self.cold_metrics is None else dict(self.cold_metrics),
            "cold_count": int(self.cold_count),
            "protocol": dict(self.protocol),
        }
        if self.beyond is not None:
            out["beyond"] = self.beyond
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


def _item_matrix(model, seqset: SeqSet) -> tuple[torch.Tensor, int]:
    """The model's item matrix [N+1, d] and N, checked against the examples' targets."""
    V = model.item_embeddings(None)
    n_cols = V.shape[0]
    n_items = getattr(model, "n_items", n_cols - 1)
    if n_cols != n_items + 1:
        raise ValueError(
            f"item_embeddings(None) returned {n_cols} rows; expected n_items + 1 = {n_items + 1} (row 0 = padding)"
        )
    all_t = np.asarray(seqset.targets)
    if int(all_t.min()) < 1 or int(all_t.max()) > n_items:
        bad = int(np.nonzero((all_t < 1) | (all_t > n_items))[0][0])
        raise ValueError(
            f"example {bad} has target {int(all_t[bad])}, outside the model's items "
            f"1..{n_items}: was the model built for another data set?"
        )
    return V, int(n_items)


def _cold_mask(cold_items, n_cols: int, device) -> torch.Tensor | None:
    if cold_items is None:
        return None
    cold = torch.as_tensor(cold_items, dtype=torch.bool, device=device).reshape(-1)
    if len(cold) != n_cols:
        raise ValueError(f"cold_items has {len(cold)} entries, expected N + 1 = {n_cols}")
    return cold


def _batch_ranks(model, V, seqset: SeqSet, b0: int, b1: int, opts: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranks, targets), LongTensor [b1 - b0] each, of examples ``b0..b1`` (the shared chunked scorer)."""
    device = opts["device"]
    start, end = seqset.start[b0:b1], seqset.end[b0:b1]
    targets = torch.from_numpy(np.asarray(seqset.target_items()[b0:b1], dtype=np.int64)).to(device)
    labels = np.asarray(seqset.users[b0:b1])
    batch = {
        "items": pad_histories(seqset.items, start, end, opts["max_len"]).to(device),
        "users": torch.from_numpy(labels.astype(np.int64)).to(device),
    }
    users = model.user_embeddings(batch)
    if opts["exclude_history"]:
        ex = _history_exclusions(seqset.items, start, end, targets, V.shape[0])
    else:
        ex = Exclusions.none(device)
    ranks = target_ranks(model.score, users, V, targets, ex, opts["chunk"], opts["buf"], labels)
    return ranks, targets


def _rank_histograms(model, V, seqset: SeqSet, lo: int, hi: int, max_k: int, cold, opts: dict, bar):
    """Rank histograms [max_k + 1] of examples ``lo..hi`` (all, cold targets) and their ranks per batch."""
    device, bs = opts["device"], opts["batch_size"]
    hist = torch.zeros(max_k + 1, dtype=torch.int64, device=device)
    cold_hist = torch.zeros(max_k + 1, dtype=torch.int64, device=device)
    out_ranks: list[np.ndarray] = []
    for b0 in range(lo, hi, bs):
        b1 = min(b0 + bs, hi)
        ranks, targets = _batch_ranks(model, V, seqset, b0, b1, opts)
        hist += rank_histogram(ranks, max_k).to(device)
        if cold is not None:
            cold_hist += rank_histogram(ranks[cold[targets]], max_k).to(device)
        if opts["per_user"]:
            out_ranks.append(ranks.cpu().numpy())
        if bar is not None:
            bar.update(b1 - b0)
    return hist, cold_hist, out_ranks


def _all_reduce(hist: torch.Tensor, cold_hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    import torch.distributed as dist

    both = torch.stack([hist, cold_hist])
    dist.all_reduce(both, op=dist.ReduceOp.SUM)
    return both[0], both[1]


def _per_user(seqset: SeqSet, out_ranks: list[np.ndarray], world: int) -> dict[str, np.ndarray]:
    """Users, targets and ranks [n_examples] in example order (gathered from every process)."""
    ranks = np.concatenate(out_ranks) if out_ranks else np.zeros(0, dtype=np.int64)
    if world > 1:
        import torch.distributed as dist

        gathered: list = [None] * world
        dist.all_gather_object(gathered, ranks)
        ranks = np.concatenate(gathered)
    return {
        "users": np.asarray(seqset.users).astype(np.int64),
        "targets": np.asarray(seqset.targets).astype(np.int64),
        "ranks": ranks.astype(np.int64),
    }


def _check_args(seqset: SeqSet, ks, batch_size: int, item_chunk: int) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] <= 0:
        raise ValueError(f"ks={ks}: give positive cut-offs, e.g. (10, 20, 50)")
    if seqset.targets is None:
        raise ValueError("this SeqSet has no targets: evaluate a validation or test set")
    if batch_size <= 0 or item_chunk < 0:
        raise ValueError("batch_size must be > 0 and item_chunk >= 0")
    if len(seqset) == 0:
        raise ValueError("nothing to evaluate: the SeqSet has no examples")
    return ks


def _progress(show: bool, total: int, split: str | None):
    from modalrec.utils import bars_on

    if not bars_on(show):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"evaluate{' ' + split if split else ''}", unit="user")


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
    catalogue size (see :func:`modalrec.evaluate.scoring.target_ranks`). ``cold_items`` (bool
    [N+1]) adds metrics over the examples whose target is cold. With ``distributed`` (and
    torch.distributed initialised) each process ranks a contiguous shard and the integer rank
    histograms are all-reduced: the metrics equal the single-process ones exactly.
    """
    ks = _check_args(seqset, ks, batch_size, item_chunk)
    device = torch.device(device)
    rank_id, world = _dist_info(distributed)
    lo, hi = len(seqset) * rank_id // world, len(seqset) * (rank_id + 1) // world
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            V, n_items = _item_matrix(model, seqset)
            cold = _cold_mask(cold_items, n_items + 1, device)
            chunk = item_chunk if 0 < item_chunk < n_items + 1 else n_items + 1
            buf = torch.empty(min(batch_size, hi - lo) * chunk, dtype=torch.float32, device=device)
            opts = dict(
                device=device,
                batch_size=batch_size,
                max_len=max_len,
                exclude_history=exclude_history,
                chunk=chunk,
                buf=buf,
                per_user=per_user,
            )
            bar = _progress(progress and rank_id == 0, hi - lo, split)
            hist, cold_hist, out_ranks = _rank_histograms(model, V, seqset, lo, hi, max(ks), cold, opts, bar)
            if bar is not None:
                bar.close()
    finally:
        model.train(was_training)
    if world > 1:
        hist, cold_hist = _all_reduce(hist, cold_hist)
    per_user_out = _per_user(seqset, out_ranks, world) if per_user else None
    protocol = _protocol(n_items, exclude_history, ks, max_len, split)
    return _result(hist, cold_hist if cold is not None else None, ks, protocol, per_user_out)


def _protocol(n_items: int, exclude_history: bool, ks: list[int], max_len: int, split: str | None) -> dict:
    return {
        "ranking": "full",
        "n_items": int(n_items),
        "exclude_history": bool(exclude_history),
        "exclude_scope": "full history" if exclude_history else "none",
        "ties": "pessimistic",
        "ks": ks,
        "max_len": int(max_len),
        "split": split,
    }


def _result(hist, cold_hist, ks: list[int], protocol: dict, per_user) -> EvalResult:
    """Metrics from the (all-reduced) rank histograms [max_k + 1]; ``protocol`` gets the example count."""
    sums = sums_from_histogram(hist, ks)
    count = int(sums["count"])
    cold_metrics, cold_count = None, 0
    if cold_hist is not None:
        cold_sums = sums_from_histogram(cold_hist, ks)
        cold_count = int(cold_sums["count"])
        cold_metrics = finalize(cold_sums) if cold_count else {}
    return EvalResult(
        metrics=finalize(sums),
        count=count,
        protocol={**protocol, "examples": count},
        cold_metrics=cold_metrics,
        cold_count=cold_count,
        per_user=per_user,
        sums=sums,
    )
