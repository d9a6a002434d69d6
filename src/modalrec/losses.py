"""Losses shared by the models: full softmax cross-entropy, masked in-batch softmax and InfoNCE."""

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
    queries: torch.Tensor,
    keys: torch.Tensor,
    temperature: float = 1.0,
    positive_mask: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
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


class _MaskedSoftmaxCE(torch.autograd.Function):
    """Forward and backward of :func:`masked_softmax_ce` written out: the ``[R, U]`` logits are filled in
    place in the forward and the gradient made in place from the softmax in the backward (autograd's
    version keeps the logits, the log-softmax and a masked copy of each gradient)."""

    @staticmethod
    def forward(ctx, hidden, items, bias, banned, labels):
        dtype = hidden.dtype  # under autocast the inputs may be half precision: the softmax is in the wider type
        ctx.dtypes = (hidden.dtype, items.dtype, bias.dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            wide = torch.promote_types(dtype, torch.float32)
            logits = torch.addmm(bias.to(dtype), hidden, items.to(dtype).T).to(wide).masked_fill_(banned, float("-inf"))
            lse = torch.logsumexp(logits, 1)
            rows = torch.arange(len(labels), device=labels.device)
            loss = (lse - logits[rows, labels]).mean()
        ctx.save_for_backward(hidden, items, logits, lse, labels)
        return loss

    @staticmethod
    def backward(ctx, grad):
        hidden, items, logits, lse, labels = ctx.saved_tensors
        p = (logits - lse[:, None]).exp_()  # softmax; banned columns exp(-inf) = 0
        p[torch.arange(len(labels), device=labels.device), labels] -= 1.0
        p.mul_(grad / len(labels))
        need, (_, di, db) = ctx.needs_input_grad, ctx.dtypes
        q = p.to(hidden.dtype)
        return (
            q @ items.to(hidden.dtype) if need[0] else None,
            (q.T @ hidden).to(di) if need[1] else None,
            p.sum(0).to(db) if need[2] else None,
            None,
            None,
        )


def masked_softmax_ce(
    hidden: torch.Tensor, items: torch.Tensor, bias: torch.Tensor, banned: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of ``softmax(hidden @ items.T + bias)`` with ``banned`` classes left out.

    hidden [R, d], items [U, d], bias [U] (e.g. minus log popularity), banned [R, U] bool (never the
    label), labels [R] in 0..U-1. Equal to ``F.cross_entropy((hidden @ items.T + bias)
    .masked_fill(banned, -inf), labels)`` with less memory traffic; the softmax is computed in at least
    float32 under autocast.
    """
    return _MaskedSoftmaxCE.apply(hidden, items, bias, banned, labels)
