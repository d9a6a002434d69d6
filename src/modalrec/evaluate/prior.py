"""A popularity prior on top of any model: ``score + beta * log(1 + count)``, beta chosen on validation.

A model transferred zero-shot knows what items are like, not how popular they are on the target
platform. The prior adds that from the target's training statistics (interaction counts only: no
gradient step). ``beta`` is in units of ``std(scores) / std(log(1 + count))``, measured on the
validation histories, so one grid fits every model whatever the scale of its scores; ``beta = 0``
is the model alone. It is chosen on validation NDCG@10 and only then applied to the test split.

:class:`PopularityPrior` wraps a model behind the same contract (``item_embeddings``,
``user_embeddings``, ``score``), so the exact evaluator and the exact index use it unchanged: the
log-count rides along as one extra item column and ``beta`` as one extra user column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from modalrec.models.base import SequentialRecommender

BETAS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class PopularityPrior(nn.Module):
    """``model``'s scores plus ``weight * log(1 + counts[item])`` (``counts`` int [N+1], row 0 padding)."""

    score_is_dot = False  # the prior is not a dot product of the model's own vectors
    trainable = False
    prior: torch.Tensor  # buffer [N+1]: log(1 + count)

    def __init__(self, model: SequentialRecommender, counts, weight: float):
        super().__init__()
        self.model = model
        self.weight = float(weight)
        prior = torch.log1p(torch.as_tensor(np.asarray(counts), dtype=torch.float32))
        prior[0] = 0.0
        self.register_buffer("prior", prior, persistent=False)
        self.name = getattr(model, "name", "")
        self.id_free = getattr(model, "id_free", False)

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        table = self.model.item_embeddings(items)
        prior = self.prior if items is None else self.prior[items]
        return torch.cat([table, prior.to(table.dtype).unsqueeze(-1)], dim=-1)

    def user_embeddings(self, batch: dict) -> torch.Tensor:
        users = self.model.user_embeddings(batch)
        return torch.cat([users, users.new_full((users.shape[0], 1), self.weight)], dim=-1)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        base = self.model.score(users[:, :-1], items[:, :-1])
        return base + users[:, -1:] * items[:, -1].unsqueeze(0)


@dataclass
class PriorChoice:
    """The chosen ``beta``, the weight it stands for, and validation NDCG@10 per beta tried."""

    beta: float
    weight: float
    unit: float  # std(scores) / std(log(1 + count)) on validation histories
    valid_ndcg: dict[float, float]


def score_unit(model, histories: torch.Tensor, counts, *, sample_users: int = 256) -> float:
    """``std(scores) / std(log(1 + count))`` over up to ``sample_users`` histories and every real item."""
    model.eval()
    with torch.no_grad():
        table = model.item_embeddings(None)
        users = model.user_embeddings({"items": histories[:sample_users]})
        scores = model.score(users, table[1:]).float()
    logc = torch.log1p(torch.as_tensor(np.asarray(counts)[1:], dtype=torch.float32))
    spread = float(logc.std())
    return float(scores.std()) / spread if spread > 0 else 0.0


def choose_prior(model, dataset, evaluate_fn, *, betas=BETAS, max_len: int) -> PriorChoice:
    """Evaluate ``PopularityPrior(model, train counts, beta * unit)`` on validation for each beta; keep the best.

    ``evaluate_fn(model, seqset) -> EvalResult`` runs the exact evaluation with the run's settings.
    """
    from modalrec.evaluate.ranking import pad_histories

    counts = dataset.train_item_counts()
    valid = dataset.split.valid
    histories = pad_histories(valid.items, valid.start, valid.end, max_len)
    unit = score_unit(model, histories, counts)
    results = {}
    for beta in betas:
        res = evaluate_fn(PopularityPrior(model, counts, beta * unit), valid)
        results[float(beta)] = float(res.metrics["ndcg@10"])
    best = max(results, key=lambda b: (results[b], -b))  # ties: the smaller prior
    return PriorChoice(best, best * unit, unit, results)
