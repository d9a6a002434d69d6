"""Losses shared by the models: full softmax cross-entropy and in-batch InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_ce(hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the whole catalogue.

    hidden [M, d] (one row per real target), item_emb [N+1, d] (row 0 = padding, never a
    class), targets [M] in 1..N. Mean over the M targets.
    """
    logits = hidden @ item_emb.T
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits.float(), targets)


def info_nce(
    queries: torch.Tensor, keys: torch.Tensor, temperature: float = 1.0,
    positive_mask: torch.Tensor | None = None, log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch InfoNCE: row i's positive is key i; other keys are negatives.

    ``positive_mask`` [M, M] (True = not a negative, e.g. same target item) removes false
    negatives except the diagonal; ``log_q`` [M] subtracts the log sampling probability of
    each key (logQ correction for popularity-biased in-batch negatives).
    """
    logits = queries @ keys.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    if positive_mask is not None:
        off_diag = positive_mask & ~torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(off_diag, float("-inf"))
    labels = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits.float(), labels)

