"""The popularity prior wrapper: exact scores, same evaluation path, beta chosen on validation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modalrec.evaluate.prior import PopularityPrior, choose_prior
from modalrec.evaluate.ranking import evaluate

from tests.conftest import make_loo_dataset


class FixedModel(nn.Module):
    """Item vectors fixed at random; a user is the mean of its history's vectors."""

    score_is_dot = True

    def __init__(self, n_items: int, d: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(n_items + 1, d, generator=g)
        table[0] = 0
        self.table = nn.Parameter(table, requires_grad=False)

    def item_embeddings(self, items=None):
        return self.table if items is None else self.table[items]

    def user_embeddings(self, batch):
        items = batch["items"]
        return self.table[items].sum(1) / (items != 0).sum(1, keepdim=True).clamp_min(1)

    def score(self, users, items):
        return users @ items.T


def _dataset():
    rng = np.random.default_rng(0)
    popular = [1, 2, 3]
    seqs = [
        [int(x) for x in rng.choice(popular + list(range(4, 13)), size=8, p=[0.2] * 3 + [0.4 / 9] * 9)]
        for _ in range(40)
    ]
    return make_loo_dataset(seqs, 12)


def test_scores_are_the_model_plus_the_weighted_log_count():
    ds = _dataset()
    base = FixedModel(ds.n_items)
    counts = ds.train_item_counts()
    wrapped = PopularityPrior(base, counts, 0.7)
    batch = {"items": torch.tensor([[0, 1, 4], [2, 3, 5]])}
    got = wrapped.score(wrapped.user_embeddings(batch), wrapped.item_embeddings(None))
    want = base.score(base.user_embeddings(batch), base.item_embeddings(None)) + 0.7 * torch.log1p(
        torch.as_tensor(counts, dtype=torch.float32)
    ) * (torch.arange(ds.n_items + 1) > 0)
    torch.testing.assert_close(got, want)


def test_zero_weight_evaluates_as_the_model_and_a_large_one_as_popularity():
    ds = _dataset()
    base = FixedModel(ds.n_items)
    run = lambda m: evaluate(m, ds.split.test, max_len=5, ks=[10], progress=False).metrics  # noqa: E731
    assert run(PopularityPrior(base, ds.train_item_counts(), 0.0)) == run(base)
    from modalrec.models.registry import build_model, model_config_class

    pop = build_model(model_config_class("pop")(), ds)  # the prior alone ranks by count, as Pop does
    pop.fit_statistics(ds)
    big = run(PopularityPrior(base, ds.train_item_counts(), 1e6))
    assert abs(big["hr@10"] - run(pop)["hr@10"]) < 0.05


def test_choose_prior_tries_every_beta_on_validation_and_keeps_the_best():
    ds = _dataset()
    base = FixedModel(ds.n_items)
    seen = []

    def evaluate_fn(model, seqset):
        seen.append(seqset is ds.split.valid)
        return evaluate(model, seqset, max_len=5, ks=[10], progress=False)

    choice = choose_prior(base, ds, evaluate_fn, betas=(0.0, 1.0, 4.0), max_len=5)
    assert all(seen) and len(seen) == 3
    assert set(choice.valid_ndcg) == {0.0, 1.0, 4.0}
    assert choice.valid_ndcg[choice.beta] == max(choice.valid_ndcg.values())
    assert choice.weight == choice.beta * choice.unit and choice.unit > 0
    # popular items dominate this data: some prior helps the random model on validation
    assert choice.beta > 0
